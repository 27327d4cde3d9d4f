"""The live front in the real frontend: while SRSoup samples, the node's preview is one grid of all
chains (a server started with --preview-method latent2rgb, as a user with previews on runs it)."""

from __future__ import annotations

import shutil

import harness
import pytest
from digit_checkpoint import CHECKPOINT_NAME, write_digit_checkpoint
from server_harness import ComfyServer
from test_frontend import build_graph, focus_node

pytestmark = pytest.mark.browser

#: build_graph's run: grid 2, three chains in a 2 x 2 grid of square cells, each with a caption
#: under it; the server scales a preview to fit 512 x 512 (ComfyUI's --preview-size).
PREVIEW_SIZE = 512


@pytest.fixture(scope="module")
def server(ui):
    """The module's own server for the UI's frontend, previews on (the shared one runs without,
    ComfyUI's default)."""
    cache = write_digit_checkpoint(harness.PACK_ROOT / ".host" / "cache")
    running = ComfyServer(extra_args=("--preview-method", "latent2rgb"), front_end_root=ui.front_end_root())
    checkpoints = running.base_dir / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / CHECKPOINT_NAME).symlink_to(cache)  # the name App.checkpoint gives build_graph
    with running:
        yield running
    shutil.rmtree(running.base_dir, ignore_errors=True)


RECORD_PREVIEWS = """() => {
    window.__previews = [];
    window.comfyAPI.api.api.addEventListener('b_preview_with_metadata', async ({detail}) => {
        const bitmap = await createImageBitmap(detail.blob);
        window.__previews.push({node: String(detail.displayNodeId), width: bitmap.width, height: bitmap.height});
    });
}"""

SHOWN_ON_NODE = """(id) => {
    const img = app.graph.getNodeById(id).imgs?.[0];
    return img && img.complete ? {width: img.naturalWidth, height: img.naturalHeight} : null;
}"""


@pytest.mark.ui_configs("one")
def test_the_node_shows_all_chains_as_one_grid_while_it_runs(app):
    node_id = build_graph(app)
    app.evaluate(
        "(id) => { const w = app.graph.getNodeById(id).widgets.find((w) => w.name === 'steps'); w.value = 8; }",
        node_id,
    )
    app.evaluate(RECORD_PREVIEWS)
    successes = app.evaluate("() => window.__mr.successes")
    app.run_button().click()
    # Seen on the node while it samples: the image the canvas draws there is the grid.
    app.wait(f"([id, n]) => ({SHOWN_ON_NODE})(id) || window.__mr.successes > n", arg=[node_id, successes])
    still_running = app.evaluate("(n) => window.__mr.successes === n", successes)
    shown = app.evaluate(SHOWN_ON_NODE, node_id)
    app.screenshot("srsoup_live_front.png", clip=focus_node(app, node_id))
    assert still_running and shown, shown
    # Two square cells across, two captioned rows down: taller than wide, unlike one chain's
    # square preview (what ComfyUI's own preview would show).
    assert shown["height"] == PREVIEW_SIZE and 0.66 < shown["width"] / shown["height"] < 0.99, shown
    app.wait("(n) => window.__mr.successes > n || window.__mr.errors.length", timeout=240, arg=successes)
    assert app.evaluate("() => window.__mr.errors") == []

    previews = app.evaluate("() => window.__previews")
    ours = [p for p in previews if p["node"] == str(node_id)]
    assert len(ours) == 8, previews  # one per step
    assert all(preview == {"node": str(node_id), **shown} for preview in ours), ours
