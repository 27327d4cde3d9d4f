"""A real ComfyUI server and Debian's chromium driven by playwright: one of each per test module.

Chromium comes from apt (`/usr/bin/chromium`), never from `playwright install`. The machines these
tests run on have two shared cores, so a module boots the server and the app once and its tests
share the page; each test starts from an empty or freshly loaded graph.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import harness
import pytest
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
FAKE_LORAS = ("style_a.safetensors", "style_b.safetensors", "style_c.safetensors")
# The README's screenshots are rewritten only on request (MULTIREWARD_UPDATE_IMAGES=1), so that a
# plain test run leaves the tracked PNGs alone; otherwise they go to .host/screenshots to look at.
IMAGES_DIR = (
    harness.PACK_ROOT / "docs" / "images"
    if os.environ.get("MULTIREWARD_UPDATE_IMAGES") == "1"
    else harness.PACK_ROOT / ".host" / "screenshots"
)


@pytest.fixture(scope="module")
def server():
    """A real server whose checkpoints folder holds the learned digits checkpoint (the runs' previews
    and the README's screenshots show digits, not noise)."""
    import tiny_models

    cache = write_digit_checkpoint(harness.PACK_ROOT / ".host" / "cache")
    running = ComfyServer()
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
    with running:
        yield running
    shutil.rmtree(running.base_dir, ignore_errors=True)


@pytest.fixture(scope="module")
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


class App:
    """The booted frontend on one page, and what happened while it booted."""

    def __init__(self, page, server: ComfyServer):
        self.page, self.server = page, server
        self.checkpoint = CHECKPOINT_NAME
        self.page_errors: list[str] = []
        self.templates_dialog = None  # how the first-run templates dialog was closed
        page.on("pageerror", lambda error: self.page_errors.append(f"{error}\n{error.stack}"))

    def boot(self) -> App:
        page = self.page
        page.goto(self.server.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90_000)
        dialog = page.locator('[aria-labelledby="global-workflow-template-selector"]')
        try:
            dialog.wait_for(state="visible", timeout=20_000)
        except Exception:
            self.templates_dialog = "did not open"
            return self
        page.keyboard.press("Escape")
        try:
            dialog.wait_for(state="hidden", timeout=2_000)
            self.templates_dialog = "Escape"
        except Exception:
            # Frontend 1.32 opens it as a non-closable layout dialog, which ignores Escape; its
            # own close button (the "x") is what a user clicks there.
            dialog.locator("button:has(.pi-times)").first.click()
            dialog.wait_for(state="hidden", timeout=10_000)
            self.templates_dialog = "close button"
        # The api object the frontend itself uses: record run errors for the tests.
        page.evaluate(
            """() => {
                window.__mr = { errors: [], successes: 0 };
                const api = window.comfyAPI.api.api;
                api.addEventListener('execution_error', (e) => window.__mr.errors.push(e.detail));
                api.addEventListener('execution_success', () => window.__mr.successes++);
            }"""
        )
        return self

    def evaluate(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def wait(self, condition: str, timeout: float = 240.0, arg=None):
        return self.page.wait_for_function(condition, arg=arg, timeout=timeout * 1000)

    def run_button(self):
        return self.page.get_by_role("button", name="Run").first

    def screenshot(self, name: str, clip: dict | None = None) -> Path:
        IMAGES_DIR.mkdir(parents=True, exist_ok=True)
        path = IMAGES_DIR / name
        self.page.screenshot(path=str(path), clip=clip)
        return path

    def settle(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)


@pytest.fixture(scope="module")
def app(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    booted = App(page, server).boot()
    yield booted
    page.close()
