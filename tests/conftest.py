"""Shared fixtures: a real in-process ComfyUI with the pack loaded, and tiny test models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import harness  # noqa: E402

# Cheap: ComfyUI on sys.path with CPU arguments, and `multireward.*` importable. Maths tests import
# only sampling_math, which never imports ComfyUI (a test checks that in a clean interpreter).
harness.prepare_comfy_imports()
harness.install_pack_alias()


@pytest.fixture(scope="session")
def comfy() -> harness.ComfyHost:
    host = harness.ComfyHost()
    import test_nodes

    test_nodes.register(host)
    return host


@pytest.fixture(scope="session")
def tiny_checkpoint(comfy) -> str:
    """File name of the stock-detectable SD1.5 checkpoint in the host's checkpoints folder.

    Built once per machine (about 250 MB, mostly the fixed-size CLIP-L text encoder) and cached
    outside the temporary host so later runs only link it.
    """
    import tiny_models

    cache = harness.PACK_ROOT / ".host" / "cache" / "tiny_sd15_checkpoint.safetensors"
    tiny_models.write_sd15_checkpoint(cache)
    link = comfy.models_dir("checkpoints") / "tiny_sd15.safetensors"
    if not link.exists():
        link.symlink_to(cache)
    return link.name
