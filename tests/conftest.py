"""The test tiers, and the shared fixtures: a real in-process ComfyUI with the pack loaded, tiny models.

Tiers, by folder (each test gets its tier's marker): tests/math (`math`: the maths alone, no ComfyUI;
`pytest tests/math` runs in any Python with torch), tests/browser, tests/server and tests/serving
(`browser`, `server`, `serving`), and the rest (`comfy`: nodes in a ComfyUI in this process).
"""

from __future__ import annotations

import sys
from pathlib import Path

import harness
import pytest
from support import pack_alias

TESTS_DIR = Path(__file__).resolve().parent
TIER_FOLDERS = {"math": "math", "browser": "browser", "server": "server", "serving": "serving"}

# `multireward.*` importable in every tier: the maths tier needs nothing else.
pack_alias.install_pack_alias()


def _maths_only(config: pytest.Config) -> bool:
    """Whether this run asked only for tests/math (then ComfyUI is never put on the path)."""
    asked = [Path(arg.split("::")[0]).resolve() for arg in config.args] or [Path.cwd()]
    return all(path.is_relative_to(TESTS_DIR / "math") for path in asked)


def pytest_configure(config):
    if not _maths_only(config):
        # Cheap: ComfyUI on sys.path with CPU arguments, before any test module imports comfy.
        harness.prepare_comfy_imports()


# The order tiers run in. The browser tier goes last: playwright's sync API keeps an event loop
# running in the main thread for as long as its session-wide browser lives, and every in-process
# ComfyUI test after it would fail on asyncio.run ("cannot be called from a running event loop").
TIER_ORDER = ("math", "comfy", "server", "serving", "browser")


def _tier(item: pytest.Item) -> str:
    folder = Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
    return TIER_FOLDERS.get(folder, "comfy")


@pytest.hookimpl(trylast=True)  # after tests/browser's own grouping, which this sort keeps
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(_tier(item))
    items.sort(key=lambda item: TIER_ORDER.index(_tier(item)))


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
    return harness.tiny_checkpoint_file()


@pytest.fixture(scope="session")
def tiny_checkpoint(comfy, tiny_checkpoint_file) -> str:
    """File name of the tiny checkpoint in the in-process host's checkpoints folder."""
    link = comfy.models_dir("checkpoints") / "tiny_sd15.safetensors"
    if not link.exists():
        link.symlink_to(tiny_checkpoint_file)
    return link.name


@pytest.fixture(scope="session")
def digit_checkpoint_file() -> Path:
    return harness.digit_checkpoint_file()


@pytest.fixture(scope="session")
def digit_checkpoint(comfy, digit_checkpoint_file) -> str:
    """File name of the digits checkpoint in the in-process host's checkpoints folder."""
    link = comfy.models_dir("checkpoints") / digit_checkpoint_file.name
    if not link.exists():
        link.symlink_to(digit_checkpoint_file)
    return link.name


def pytest_terminal_summary(terminalreporter, config):
    """Which ComfyUI this run tested, and the frontends its servers served."""
    if _maths_only(config):
        terminalreporter.write_line("tested: the maths alone, without ComfyUI")
        return
    terminalreporter.write_line(f"tested on: {harness.HOST.describe()}")
    import comfy_server

    for served in sorted(comfy_server.SERVED):
        terminalreporter.write_line(f"servers ran: {served}")


def pytest_unconfigure(config):
    """The process is ending: skip ComfyUI's detach-on-collect of model patchers. Run during
    interpreter shutdown, after ComfyUI's module globals are cleared, it only prints a traceback per
    patcher ("'NoneType' object has no attribute 'ON_DETACH'") that reads like a failure."""
    patcher_module = sys.modules.get("comfy.model_patcher")
    if patcher_module is None:
        return
    pending = [patcher_module.ModelPatcher]
    while pending:
        patcher_type = pending.pop()
        pending.extend(patcher_type.__subclasses__())
        if "__del__" in vars(patcher_type):
            patcher_type.__del__ = _nothing_to_release


def _nothing_to_release(self):
    pass
