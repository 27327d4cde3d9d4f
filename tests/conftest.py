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


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The in-process tests run many tiny models; on 2 cores two torch threads mostly wait on each
    other (measured: 10 s instead of 0.15 s for one tiny image under load), so use one, then restore."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def comfy() -> harness.ComfyHost:
    host = harness.ComfyHost()
    import test_nodes

    test_nodes.register(host)
    return host


@pytest.fixture(scope="session")
def tiny_checkpoint_file() -> Path:
    """A stock-detectable SD1.5 checkpoint (320 channels, the fixed-size CLIP-L text encoder, a
    TAESD VAE). Built once per machine (about 250 MB) and cached in the host folder."""
    import tiny_models

    return tiny_models.write_sd15_checkpoint(
        harness.PACK_ROOT / ".host" / "cache" / "tiny_sd15_checkpoint.safetensors"
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(comfy, tiny_checkpoint_file) -> str:
    """File name of the tiny checkpoint in the in-process host's checkpoints folder."""
    link = comfy.models_dir("checkpoints") / "tiny_sd15.safetensors"
    if not link.exists():
        link.symlink_to(tiny_checkpoint_file)
    return link.name


@pytest.fixture(scope="session")
def digit_checkpoint_file() -> Path:
    """The learned digits checkpoint (docs/digit_model.md), assembled once per machine from the
    committed compact weights (seconds) and cached in the host folder."""
    from digit_checkpoint import write_digit_checkpoint

    return write_digit_checkpoint(harness.PACK_ROOT / ".host" / "cache")


@pytest.fixture(scope="session")
def digit_checkpoint(comfy, digit_checkpoint_file) -> str:
    """File name of the digits checkpoint in the in-process host's checkpoints folder."""
    link = comfy.models_dir("checkpoints") / digit_checkpoint_file.name
    if not link.exists():
        link.symlink_to(digit_checkpoint_file)
    return link.name


def pytest_terminal_summary(terminalreporter):
    """Which ComfyUI this run tested, and the frontends its servers served."""
    terminalreporter.write_line(f"tested on: {harness.HOST.describe()}")
    import comfy_server

    for served in sorted(comfy_server.SERVED):
        terminalreporter.write_line(f"servers ran: {served}")
