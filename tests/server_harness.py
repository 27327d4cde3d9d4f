"""The real ComfyUI server for end-to-end tests: the pack plus the test-only pack of tiny models."""

from __future__ import annotations

from pathlib import Path

from comfy_server import ComfyServer as _ComfyServer
from comfy_server import error_message

SERVER_TEST_PACK = Path(__file__).resolve().parent / "server_test_pack"


class ComfyServer(_ComfyServer):
    def __init__(
        self,
        base_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        front_end_root: Path | None = None,
    ):
        super().__init__(
            base_dir,
            extra_args,
            packs={"multireward_testing": SERVER_TEST_PACK},
            front_end_root=front_end_root,
        )


__all__ = ["ComfyServer", "error_message"]
