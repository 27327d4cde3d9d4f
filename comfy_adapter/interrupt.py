"""ComfyUI's interrupt (Cancel in the UI, /interrupt on the server), checked inside every long loop."""

from __future__ import annotations

import comfy.model_management


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel / the server was interrupted."""
    comfy.model_management.throw_exception_if_processing_interrupted()
