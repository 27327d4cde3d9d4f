"""A real ComfyUI server and Debian's chromium driven by playwright, in every way the frontend is shown.

A UI configuration is a frontend and a node view: the classic LiteGraph canvas, and "Nodes 2.0",
where Vue renders the nodes as DOM. The frontends are the selected host's pinned
`comfyui-frontend-package` (1.48.7 on ComfyUI 0.33.0, 1.32.9 on 0.3.75) and, on the primary host,
the newest one too (installed beside the hosts by scripts/install_frontend.py and served with
`--front-end-root`). A test takes the `ui` it runs under from its `ui_configs` marker:

- "every" (the default): each configuration, for what differs between them: boot, example loading,
  the estimate following value changes, the invalid-row marking, Run, deprecated APIs;
- "each_mode": one configuration per node view (classic on the pinned frontend, Nodes 2.0 on the
  newest), for interaction tests whose code path depends on the view, not the version;
- "one": the pinned frontend's classic canvas, for checks of the extension's own maths.

Chromium comes from apt (`/usr/bin/chromium`), never from `playwright install`. The machines these
tests run on have two shared cores, so the tests are grouped by configuration: one server per
frontend, one page boot per configuration, shared by that configuration's tests; each test starts
from an empty or freshly loaded graph.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import install_frontend  # scripts/ (pytest pythonpath)
import pytest
from comfy_hosts import PRIMARY, frontend_version
from digit_checkpoint import CHECKPOINT_NAME, write_digit_checkpoint
from server_harness import ComfyServer

from example_workflows import LORA_A, LORA_B, STANDARD_CHECKPOINT

CHROMIUM = os.environ.get("MULTIREWARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The frontend setting that switches to Nodes 2.0 (Vue) rendering, and the version that added it.
NODES_2_SETTING = "Comfy.VueNodes.Enabled"
NODES_2_SINCE = (1, 27, 1)


@dataclass(frozen=True)
class UI:
    """One way the frontend is shown: a comfyui-frontend-package version and the node view."""

    frontend: str
    nodes_2: bool
    pinned: bool  # the host's own frontend (else one installed by scripts/install_frontend.py)

    def __str__(self) -> str:
        return f"{self.frontend}-{'nodes2' if self.nodes_2 else 'classic'}"

    def front_end_root(self) -> Path | None:
        if self.pinned:
            return None
        root = install_frontend.static_root(self.frontend)
        if not install_frontend.installed(self.frontend):
            pytest.fail(f"frontend {self.frontend} is not installed: python3 scripts/install_frontend.py")
        return root


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _uis() -> dict[str, list[UI]]:
    pinned = frontend_version(harness.HOST.frontend_root())
    frontends = [(pinned, True)]
    if harness.HOST.version == PRIMARY and pinned != install_frontend.NEWEST:
        frontends.append((install_frontend.NEWEST, False))
    every = [
        UI(version, nodes_2, is_pinned)
        for version, is_pinned in frontends
        for nodes_2 in (False, True)
        if not nodes_2 or _version(version) >= NODES_2_SINCE
    ]
    classic = next(ui for ui in every if not ui.nodes_2)
    newest_nodes_2 = [ui for ui in every if ui.nodes_2][-1:]
    return {"every": every, "each_mode": [classic, *newest_nodes_2], "one": [classic]}


UIS = _uis()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ui_configs(which): the UI configurations a browser test runs in: every, each_mode or one"
    )


def pytest_generate_tests(metafunc):
    if "ui" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("ui_configs")
    which = marker.args[0] if marker else "every"
    metafunc.parametrize("ui", UIS[which], ids=str, indirect=True, scope="module")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Group the browser tests by configuration (stable: file order within one), so that each
    server and each page boots once."""
    order = {ui: rank for rank, ui in enumerate(UIS["every"])}
    slots = [
        i for i, item in enumerate(items) if "ui" in getattr(getattr(item, "callspec", None), "params", ())
    ]
    ranked = sorted((items[i] for i in slots), key=lambda item: order[item.callspec.params["ui"]])
    for i, item in zip(slots, ranked, strict=True):
        items[i] = item


FAKE_LORAS = ("style_a.safetensors", "style_b.safetensors", "style_c.safetensors")
# The README's screenshots are rewritten only on request (MULTIREWARD_UPDATE_IMAGES=1), so that a
# plain test run leaves the tracked PNGs alone; otherwise they go to .host/screenshots to look at.
IMAGES_DIR = (
    harness.PACK_ROOT / "docs" / "images"
    if os.environ.get("MULTIREWARD_UPDATE_IMAGES") == "1"
    else harness.PACK_ROOT / ".host" / "screenshots"
)


def start_server(front_end_root: Path | None) -> ComfyServer:
    """A real server whose checkpoints folder holds the learned digits checkpoint (the runs' previews
    and the README's screenshots show digits, not noise)."""
    import tiny_models

    cache = write_digit_checkpoint(harness.PACK_ROOT / ".host" / "cache")
    running = ComfyServer(front_end_root=front_end_root)
    checkpoints = running.base_dir / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    # The examples' own file names too: newer frontends mark a node naming a missing file as broken.
    for name in (CHECKPOINT_NAME, STANDARD_CHECKPOINT):
        (checkpoints / name).symlink_to(cache)
    # Names for the Diffusion Blend LoRA lists; the editor tests only choose them, never load them.
    loras = running.base_dir / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    for name in FAKE_LORAS:
        (loras / name).write_bytes(b"")
    for seed, name in enumerate((LORA_A, LORA_B), start=1):
        tiny_models.write_checkpoint_lora(cache, loras / name, seed)
    return running.__enter__()


class Servers:
    """One running server at a time: the tests come grouped by frontend, so each starts once."""

    def __init__(self):
        self.frontend: str | None = None
        self.running: ComfyServer | None = None

    def serving(self, ui: UI) -> ComfyServer:
        if self.frontend != ui.frontend:
            self.stop()
            self.running, self.frontend = start_server(ui.front_end_root()), ui.frontend
        return self.running

    def stop(self) -> None:
        if self.running:
            self.running.stop()
            shutil.rmtree(self.running.base_dir, ignore_errors=True)
        self.running = self.frontend = None


@pytest.fixture(scope="session")
def servers():
    started = Servers()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def ui(request) -> UI:
    return request.param


@pytest.fixture(scope="module")
def server(ui, servers) -> ComfyServer:
    return servers.serving(ui)


@pytest.fixture(scope="session")
def browser():
    missing = None if Path(CHROMIUM).exists() else f"no chromium at {CHROMIUM}: apt-get install -y chromium"
    try:
        from playwright import sync_api
    except ImportError:
        missing = missing or "playwright is not installed: pip install -r tests/requirements.txt"
    if missing:
        # The test command installs both; a missing browser is a failure, never a silent skip.
        pytest.fail(missing)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


# Recorded from the first script on: every deprecation warning the frontend gives, with the stack
# that led to it (the frontend warns once per message unless told to repeat: see boot()).
RECORD_DEPRECATIONS = """(() => {
    window.__mrDeprecations = [];
    const warn = console.warn;
    console.warn = function (...args) {
        if (/deprecat/i.test(String(args[0]))) {
            window.__mrDeprecations.push({ message: String(args[0]), stack: String(new Error().stack) });
        }
        return warn.apply(this, args);
    };
})();"""


class App:
    """The booted frontend on one page (one UI configuration), and what happened while it booted."""

    def __init__(self, page, server: ComfyServer, ui: UI):
        self.page, self.server, self.ui = page, server, ui
        self.checkpoint = CHECKPOINT_NAME
        self.page_errors: list[str] = []
        self.templates_dialog = None  # how the first-run templates dialog was closed
        page.on("pageerror", lambda error: self.page_errors.append(f"{error}\n{error.stack}"))
        page.add_init_script(RECORD_DEPRECATIONS)

    def boot(self) -> App:
        page = self.page
        # The node view is a user setting the frontend reads at start-up; a first run every time
        # (the tutorial not completed), so that each configuration opens the templates dialog.
        status, _ = self.server.post(
            "/settings", {NODES_2_SETTING: self.ui.nodes_2, "Comfy.TutorialCompleted": False}
        )
        assert status == 200, status
        page.goto(self.server.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        page.evaluate(
            """() => {
                // Repeat deprecation warnings (once per message by default) so that none of ours
                // hides behind the same one from elsewhere.
                LiteGraph.alwaysRepeatWarnings = true;
                // The api object the frontend itself uses: record run errors for the tests.
                window.__mr = { errors: [], successes: 0 };
                const api = window.comfyAPI.api.api;
                api.addEventListener('execution_error', (e) => window.__mr.errors.push(e.detail));
                api.addEventListener('execution_success', () => window.__mr.successes++);
            }"""
        )
        self.close_templates_dialog()
        return self

    def close_templates_dialog(self) -> None:
        """The first-run templates dialog, found by what a user sees (a dialog headed "Templates"),
        closed with Escape or else its own close button. Frontend 1.48 labels it by an id and 1.58
        by a data key, and 1.32 opens it as a layout dialog that ignores Escape."""
        page = self.page
        dialog = page.get_by_role("dialog").filter(
            has=page.get_by_role("heading", name="Templates", exact=True)
        )
        try:
            dialog.wait_for(state="visible", timeout=20_000)
        except Exception:
            self.templates_dialog = "did not open"
            return
        page.keyboard.press("Escape")
        try:
            dialog.wait_for(state="hidden", timeout=2_000)
            self.templates_dialog = "Escape"
        except Exception:
            named = dialog.get_by_role("button", name=re.compile("close", re.IGNORECASE))
            dialog.locator("button:has(.pi-times)").or_(named).first.click()  # 1.32: an unnamed "x"
            dialog.wait_for(state="hidden", timeout=10_000)
            self.templates_dialog = "close button"

    def evaluate(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def wait(self, condition: str, timeout: float = 240.0, arg=None):
        return self.page.wait_for_function(condition, arg=arg, timeout=timeout * 1000)

    def run_button(self):
        return self.page.get_by_role("button", name="Run").first

    def screenshot(self, name: str, clip: dict | None = None) -> Path:
        """The README's pictures come from the primary host's pinned classic view; the other
        configurations' go to .host/screenshots, named by configuration."""
        if self.ui == UIS["one"][0] and harness.HOST.version == PRIMARY:
            path = IMAGES_DIR / name
        else:
            path = harness.PACK_ROOT / ".host" / "screenshots" / f"{Path(name).stem}-{self.ui}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), clip=clip)
        return path

    def settle(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)


@pytest.fixture(scope="module")
def app(ui, server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    booted = App(page, server, ui).boot()
    yield booted
    page.close()
