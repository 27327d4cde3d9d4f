"""The real frontend (comfyui-frontend-package) in Debian's chromium against a real server.

Checks what a user sees: the app boots with our nodes, every example workflow loads with no missing
nodes, an SRSoup workflow with the digits checkpoint runs from the Run button, the weights editor keeps
rows on the simplex, the live cost estimate equals the report's numbers, and a bad weights row is
marked on the node with the server's own words before it is queued.
"""

from __future__ import annotations

import io
import json
import math
import re
import time

import harness
import pytest
import torch

from multireward.sampling_math.guidance import GuidanceError, GuidanceSettings, validate_settings
from multireward.sampling_math.ledger import weighted_sum_cost
from multireward.sampling_math.report import final_scoring_queries, planned_cost
from multireward.sampling_math.weights import WeightsError, parse_weight_rows, resolve_weights

pytestmark = pytest.mark.browser
EXTENSION_URL = "/extensions/multireward/"

EXAMPLES = sorted((harness.PACK_ROOT / "example_workflows").glob("*.json"))
WEIGHT_FREE_REWARDS = ("jpeg_compressibility", "colorfulness", "sharpness")
SRSOUP = "MultiReward_SRSoupKSampler"
BLEND_TYPES = (
    "MultiReward_DiffusionBlend",
    "MultiReward_DiffusionBlendSampler",
    "MultiReward_LoRAStochasticMixer",
)

# Node ids never used before on the page: a cleared graph starts counting again, and Nodes 2.0 may
# keep showing a removed node's field values on a new node of the same id.
FRESH_ID = "const freshId = () => (window.__mrNextId = (window.__mrNextId ?? 1000) + 1);"
# A two- or three-reward SRSoup graph built through LiteGraph as a user would wire it.
BUILD_GRAPH = (
    """([checkpoint, rewards]) => {
    """
    + FRESH_ID
    + """
    app.graph.clear();
    const add = (type, pos, values = {}) => {
        const node = LiteGraph.createNode(type);
        node.id = freshId();
        node.pos = pos;
        app.graph.add(node);
        for (const [name, value] of Object.entries(values)) node.widgets.find((w) => w.name === name).value = value;
        return node;
    };
    const ckpt = add('CheckpointLoaderSimple', [10, 10], {ckpt_name: checkpoint});
    const pos = add('CLIPTextEncode', [10, 160], {text: 'a handwritten digit 3'});
    const neg = add('CLIPTextEncode', [10, 400], {text: ''});
    const latent = add('EmptyLatentImage', [10, 640], {width: 64, height: 64});
    const sampler = add('MultiReward_SRSoupKSampler', [780, 10], {
        steps: 4, candidates: 4, soup_steps: 1, grid_divisions: 2, prompt: 'a handwritten digit 3',
        control_after_generate: 'fixed',
    });
    ckpt.connect(0, sampler, 'model'); ckpt.connect(1, pos, 'clip'); ckpt.connect(1, neg, 'clip');
    ckpt.connect(2, sampler, 'vae'); pos.connect(0, sampler, 'positive'); neg.connect(0, sampler, 'negative');
    latent.connect(0, sampler, 'latent_image');
    rewards.forEach((name, i) => {
        const loader = add('MultiReward_RewardLoader', [440, 10 + 180 * i], {reward_name: name});
        loader.connect(0, sampler, i ? `reward_${i + 1}` : 'reward');
    });
    app.canvas.ds.offset = [70, 160];
    app.canvas.ds.scale = 0.75;
    app.graph.setDirtyCanvas(true, true);
    window.__sampler = sampler;
    return sampler.id;
}"""
)

WIDGET = "([id, name]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name).value"


def build_graph(app, rewards=WEIGHT_FREE_REWARDS[:2]) -> int:
    node_id = app.evaluate(BUILD_GRAPH, [app.checkpoint, list(rewards)])
    app.settle(0.5)
    return node_id


def in_panel(app, node_id, selector):
    """An element of the panel of node `node_id` (stale panels of removed nodes never match)."""
    return app.page.locator(f'.multireward-panel[data-node-id="{node_id}"] {selector}')


PAN = """([dx, dy]) => {
    const ds = app.canvas.ds;
    ds.offset[0] -= dx / ds.scale;
    ds.offset[1] -= dy / ds.scale;
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
}"""


def into_view(app, locator):
    """Pan the canvas (as a user drags it) until `locator`'s element sits in the middle of the
    window, clear of the app's bars and side panels; panels and Nodes 2.0 nodes move with it."""
    box = locator.bounding_box()
    size = app.page.viewport_size
    if box:
        centre = (
            box["x"] + box["width"] / 2 - size["width"] / 2,
            box["y"] + box["height"] / 2 - size["height"] / 2,
        )
        app.evaluate(PAN, list(centre))
        app.settle(0.3)
    return locator


def weights_field(app, node_id):
    """The weights box on screen. Classic canvas: the multiline widget's DOM element. Nodes 2.0:
    the field Vue draws inside the node, found by its accessible name, as a user would."""
    if app.ui.nodes_2:
        return node_element(app, node_id).get_by_label("weights", exact=True)
    app.evaluate(
        "(id) => { app.graph.getNodeById(id).widgets.find((w) => w.name === 'weights').element"
        ".dataset.mrTest = 'weights-' + id; }",
        node_id,
    )
    return app.page.locator(f'textarea[data-mr-test="weights-{node_id}"]')


def node_element(app, node_id):
    """Nodes 2.0: the node's own element (our panel carries the node id too)."""
    return app.page.locator(f'[data-node-id="{node_id}"]:not(.multireward-panel)')


def red_pixels(app, box) -> int:
    """Pixels on screen inside `box` in the error red (#ff6b6b, blended by scaling and edges)."""
    import numpy as np
    from PIL import Image

    png = app.page.screenshot(clip=box)
    r, g, b = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).transpose(2, 0, 1)
    return int(((r > 170) & (r - g > 60) & (r - b > 60)).sum())


def assert_marked_red(app, field):
    """The box is outlined in red where a user looks: in the viewport, uncovered, red pixels drawn."""
    box = field.bounding_box()
    viewport = app.page.viewport_size
    assert box and box["width"] > 20 and box["height"] > 10, box
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= viewport["width"] and box["y"] + box["height"] <= viewport["height"], (
        box
    )
    style = field.evaluate(
        """(e) => { const s = getComputedStyle(e), r = e.getBoundingClientRect();
            const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            return {style: s.outlineStyle, color: s.outlineColor, invalid: e.getAttribute('aria-invalid'),
                    uncovered: top === e || e.contains(top)}; }"""
    )
    assert style == {"style": "solid", "color": "rgb(255, 107, 107)", "invalid": "true", "uncovered": True}
    assert red_pixels(app, box) >= box["width"] + box["height"], box  # about half the 2-pixel frame at least


FOCUS = """(id) => {
    // The whole node just under the app's top bar, as large as fits (LiteGraph draws no text
    // below scale 0.6).
    const node = app.graph.getNodeById(id);
    const ds = app.canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT, rect = app.canvas.canvas.getBoundingClientRect();
    const room = window.innerHeight - rect.top - 160;
    ds.scale = Math.max(0.6, Math.min(1, room / (node.size[1] + title)));
    ds.offset = [80 / ds.scale - node.pos[0], (150 / ds.scale) + title - node.pos[1]];
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
    return {x: rect.left + 80 - 4, y: rect.top + 150 - 4, width: node.size[0] * ds.scale + 8,
            height: Math.min((node.size[1] + title) * ds.scale + 8, room + 6)};
}"""


def focus_node(app, node_id) -> dict:
    clip = app.evaluate(FOCUS, node_id)
    app.settle(0.5)
    return {k: round(v) for k, v in clip.items()}


def panel(app, node_id):
    return app.evaluate("(id) => app.graph.getNodeById(id).multireward", node_id)


def python_estimate(text, num_rewards, grid, mode, n, k, steps, start, end, schedule=("fixed", 0.05, 0.8)):
    """The Python side of the same numbers: resolve_weights, validate_settings, chain_soup_steps,
    planned_cost, final_scoring_queries (schedule: soup_schedule, soup_centre, soup_edge)."""
    weights = resolve_weights(text, num_rewards, grid)
    soup_schedule, centre, edge = schedule
    settings = GuidanceSettings(
        weights=weights,
        mode=mode,
        candidates=n,
        soup_steps=k,
        soup_schedule=soup_schedule,
        soup_centre=centre,
        soup_edge=edge,
        guided_start=start,
        guided_end=end,
    )
    sigmas = torch.linspace(10.0, 0.0, steps + 1)  # steps + 1 sigmas ending at 0, as the schedulers give
    guided = len(validate_settings(settings, sigmas, flow=False))
    queries, passes = planned_cost(settings, guided)
    ws_queries, ws_passes = weighted_sum_cost(weights, n, guided)
    fixed = mode == "srsoup" and soup_schedule == "fixed"
    return {
        "images": settings.chain_weights().shape[0],
        "guided_steps": guided,
        "queries": queries,
        "lookahead_passes": passes,
        "weighted_sum_queries": ws_queries,
        "weighted_sum_lookahead_passes": ws_passes,
        "final_scoring_queries": final_scoring_queries(settings),
        "total_queries": queries + final_scoring_queries(settings),
        "chain_soup_steps": settings.chain_soup_steps(guided),
        "soup_steps_K": settings.fixed_soup_steps(guided) if fixed else None if mode == "srsoup" else 0,
    }


def js_estimate(app, cases):
    """window.MultiReward.estimate of each case (python_estimate's arguments), or the error it throws."""
    return app.evaluate(
        """(cases) => cases.map(([t, m, g, mode, n, k, steps, s, e, [schedule, centre, edge]]) => {
            try {
                return window.MultiReward.estimate({weightsText: t, numRewards: m, gridDivisions: g, mode,
                    candidates: n, soupSteps: k, steps, guidedStart: s, guidedEnd: e, soupSchedule: schedule,
                    soupCentre: centre, soupEdge: edge});
            } catch (error) { return {error: error.message}; }
        })""",
        cases,
    )


def python_estimate_or_error(*case):
    try:
        return python_estimate(*case)
    except (GuidanceError, WeightsError) as error:
        return {"error": str(error)}


def python_error(text, num_rewards) -> str:
    try:
        parse_weight_rows(text, num_rewards)
    except WeightsError as error:
        return str(error)
    return ""


def test_app_boots_with_our_node_types_and_extension(app, server):
    assert app.templates_dialog in ("Escape", "close button", "did not open")
    templates = app.page.get_by_role("dialog").filter(has=app.page.get_by_role("heading", name="Templates"))
    assert templates.count() == 0 or not templates.first.is_visible()
    info = server.get("/object_info")
    ours = sorted(
        name
        for name, spec in info.items()
        if "multireward" in spec.get("python_module", "")
        and "multireward_testing" not in spec["python_module"]
    )
    assert SRSOUP in ours and len(ours) >= 5, ours
    registered = app.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
    assert set(ours) <= set(registered), set(ours) - set(registered)
    assert app.evaluate("() => typeof window.MultiReward.estimate") == "function"
    # The node view is the one asked for: Nodes 2.0 draws each node as an element of its own.
    node_id = build_graph(app)
    assert node_element(app, node_id).count() == (1 if app.ui.nodes_2 else 0)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_loads_with_no_missing_nodes(app, path):
    workflow = json.loads(path.read_text())
    result = app.evaluate(
        """async (workflow) => {
            await app.loadGraphData(workflow, true, true, null,
                {showMissingNodesDialog: false, showMissingModelsDialog: false});
            const types = workflow.nodes.map((n) => n.type);
            return {
                missing: types.filter((t) => !(t in LiteGraph.registered_node_types)),
                loaded: app.graph.nodes.length,
                broken: app.graph.nodes.filter((n) => n.has_errors).map((n) => n.type),
            };
        }""",
        workflow,
    )
    assert result["missing"] == [], f"{path.name}: missing node types {result['missing']}"
    assert result["broken"] == [], f"{path.name}: nodes marked broken {result['broken']}"
    assert result["loaded"] == len(workflow["nodes"])
    prompt = app.evaluate("async () => (await app.graphToPrompt()).output")
    assert prompt, f"{path.name}: the frontend made an empty prompt"
    # The loaded SRSoup nodes show the cost of their saved settings, as Python computes it.
    app.settle(0.3)
    panels = app.evaluate(
        f"() => app.graph.nodes.filter((n) => n.type === '{SRSOUP}').map((n) => n.multireward)"
    )
    assert len(panels) == sum(n["type"] == SRSOUP for n in workflow["nodes"])
    for shown in panels:
        s = shown["settings"]
        assert shown["error"] is None, shown
        if s["scheduler"] != "ddim_uniform":
            args = (s["weightsText"], s["numRewards"], s["gridDivisions"], s["mode"], s["candidates"])
            schedule = (s["soupSchedule"], s["soupCentre"], s["soupEdge"])
            expected = python_estimate(
                *args, s["soupSteps"], s["steps"], s["guidedStart"], s["guidedEnd"], schedule
            )
            assert shown["estimate"] == expected, (path.name, s)


SCHEDULES = (
    ("fixed", 0.05, 0.8),
    ("per_chain", 0.05, 0.8),  # the node's default
    ("per_chain", 0.0, 1.0),
    ("per_chain", 0.6, 0.3),  # centre above edge
    ("per_chain", 0.0, 0.0),  # never soups
    ("per_chain", 0.15000000000000002, 0.35000000000000003),  # what a 0.05-step widget holds
)


@pytest.mark.ui_configs("one")
def test_estimate_matches_the_python_formulas(app):
    """estimate == planned_cost (and each chain's K, the final scoring, the total) for both
    schedules, 2-4 rewards, sparse and near-one-hot rows, and a fixed K above the guided steps."""
    cases = []
    for mode in ("srsoup", "weighted_sum", "single"):
        for text, m, grid in (
            ("", 2, 5),
            ("", 2, 10),
            ("", 3, 2),
            ("", 4, 3),
            ("1,0; 0.5,0.5; 0,1", 2, 5),
            ("0.5,0.5", 2, 5),
            ("2 1 0\n0 0 1; 1,1,1", 3, 4),
            ("0.8,0.2,0; 0.6,0,0.4; 0.2,0.4,0.4; 1,1,1; 0.9999999999,1e-10,0", 3, 2),
        ):
            for steps, start, end, k in (
                (50, 0, 10000, 20),
                (10, 2, 7, 3),
                (4, 0, 10000, 0),
                (30, 5, 30, 24),
                (12, 0, 10000, 20),  # K = 20 with 11 guided steps: all of them
            ):
                for schedule in SCHEDULES if mode == "srsoup" else SCHEDULES[:2]:
                    cases.append([text, m, grid, mode, 7, k, steps, start, end, list(schedule)])
    got = js_estimate(app, cases)
    for case, estimate in zip(cases, got, strict=True):
        assert estimate == python_estimate(*case), case
    per_chain = [e["chain_soup_steps"] for c, e in zip(cases, got, strict=True) if c[-1][0] == "per_chain"]
    assert len({k for steps in per_chain for k in steps}) > 10  # many different K were compared


@pytest.mark.ui_configs("one")
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"k": -1}, "soup_steps (K) is -1"),
        ({"centre": 1.5}, "soup_centre is 1.5"),
        ({"edge": -0.5}, "soup_edge"),
    ],
)
def test_estimate_refuses_what_the_server_refuses_in_its_words(app, overrides, field):
    values = {"k": 3, "centre": 0.05, "edge": 0.8, **overrides}
    schedule = "fixed" if "k" in overrides else "per_chain"
    case = ["", 2, 5, "srsoup", 7, values["k"], 10, 0, 10000, [schedule, values["centre"], values["edge"]]]
    got = js_estimate(app, [case])[0]
    assert got == python_estimate_or_error(*case) and got["error"].startswith(field), got


@pytest.mark.ui_configs("one")
def test_scheduler_step_counts_match_comfyui(app):
    import comfy.model_sampling
    import comfy.samplers

    class Discrete(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
        pass

    sampling = Discrete()
    cases = [(name, steps) for name in comfy.samplers.SCHEDULER_NAMES for steps in (2, 4, 7, 20, 30, 50)]
    got = app.evaluate("(cases) => cases.map(([s, n]) => window.MultiReward.schedulerSteps(s, n))", cases)
    want = [len(comfy.samplers.calculate_sigmas(sampling, name, steps)) - 1 for name, steps in cases]
    assert got == want


def test_estimate_follows_every_kind_of_change(app):
    """Widget callbacks (what the canvas calls), a value set by another extension (no callback),
    a link removed and made again, typing into the weights box on screen, an editor slider."""
    node_id = build_graph(app, WEIGHT_FREE_REWARDS)

    def shown():
        return panel(app, node_id)["estimate"]

    # a new node runs the per-chain schedule at the benchmark's fractions
    assert shown() == python_estimate("", 3, 2, "srsoup", 4, 1, 4, 0, 10000, ("per_chain", 0.05, 0.8))
    changes = [
        ("soup_edge", 0.35),
        ("soup_centre", 0.2),
        ("steps", 12),
        ("grid_divisions", 3),
    ]
    for name, value in changes:
        set_widget(app, node_id, name, value)
    assert shown() == python_estimate("", 3, 3, "srsoup", 4, 1, 12, 0, 10000, ("per_chain", 0.2, 0.35))
    assert "K per image (soup steps): " + ", ".join(map(str, shown()["chain_soup_steps"])) in (
        in_panel(app, node_id, ".mr-estimate").text_content()
    )
    set_widget(app, node_id, "soup_schedule", "fixed")
    set_widget(app, node_id, "soup_steps", 20)
    assert shown() == python_estimate("", 3, 3, "srsoup", 4, 20, 12, 0, 10000)
    assert "K = 20 is more than the 11 guided steps" in in_panel(app, node_id, ".mr-estimate").text_content()
    changes = [
        ("soup_steps", 1),
        ("mode", "weighted_sum"),
        ("candidates", 9),
        ("guided_start", 3),
    ]
    for name, value in changes:
        set_widget(app, node_id, name, value)
    assert shown() == python_estimate("", 3, 3, "weighted_sum", 9, 1, 12, 3, 10000)
    app.evaluate(
        "(id) => { const n = app.graph.getNodeById(id); n.disconnectInput(n.findInputSlot('reward_3')); }",
        node_id,
    )
    app.settle()
    assert shown() == python_estimate("", 2, 3, "weighted_sum", 9, 1, 12, 3, 10000)
    text = in_panel(app, node_id, ".mr-estimate").text_content()
    assert text.startswith(f"estimate: {shown()['queries']} reward queries")
    assert (
        f"in all, with the final scoring: {shown()['total_queries']} (+ {shown()['final_scoring_queries']}"
        in text
    )

    # Another extension (or undo, or paste) sets a value and calls nothing.
    app.evaluate(
        "(id) => { app.graph.getNodeById(id).widgets.find((w) => w.name === 'candidates').value = 5; }",
        node_id,
    )
    wait_shown(app, node_id, python_estimate("", 2, 3, "weighted_sum", 5, 1, 12, 3, 10000))
    app.evaluate(
        """(id) => { const sampler = app.graph.getNodeById(id);
            const loader = app.graph.nodes.find((n) => n.type === 'MultiReward_RewardLoader' && !n.isOutputConnected(0));
            loader.connect(0, sampler, 'reward_3'); }""",
        node_id,
    )
    wait_shown(app, node_id, python_estimate("", 3, 3, "weighted_sum", 5, 1, 12, 3, 10000))

    # Typed, key by key, into the box on screen.
    focus_node(app, node_id)
    field = weights_field(app, node_id)
    field.click()
    field.press_sequentially("1,0,0; 0.5,0.5,0")
    typed = python_estimate("1,0,0; 0.5,0.5,0", 3, 3, "weighted_sum", 5, 1, 12, 3, 10000)
    wait_shown(app, node_id, typed)

    # An editor slider makes row 2 one-hot: it merges with the one-hot row, one image fewer.
    into_view(app, in_panel(app, node_id, ".mr-toggle")).click()
    app.settle()
    into_view(app, in_panel(app, node_id, ".mr-row").nth(1)).locator(".mr-slider").nth(0).fill("1")
    text = app.evaluate(WIDGET, [node_id, "weights"])
    slid = python_estimate(text, 3, 3, "weighted_sum", 5, 1, 12, 3, 10000)
    assert slid["images"] == typed["images"] - 1, text
    wait_shown(app, node_id, slid)


def wait_shown(app, node_id, expected, timeout: float = 5.0):
    """The estimate the node shows becomes `expected` (changes without a callback are seen by a
    poll, four times a second)."""
    deadline = time.monotonic() + timeout
    while (shown := panel(app, node_id)["estimate"]) != expected and time.monotonic() < deadline:
        app.settle(0.1)
    assert shown == expected


def set_widget(app, node_id, name, value):
    """What the canvas does when a widget is edited: set the value, then call its callback."""
    app.evaluate(
        "([id, name, value]) => { const w = app.graph.getNodeById(id).widgets.find((w) => w.name === name);"
        " w.value = value; w.callback?.(value); }",
        [node_id, name, value],
    )


@pytest.mark.ui_configs("one")
@pytest.mark.parametrize(
    "text",
    [
        "1,0; 0.5,abc; 0,1",
        "1,0\n0,1,0",
        "1,0; -1,2",
        "0,0; 1,0; 0,1",
        "1,0; inf,1",
        "1,0; 0x10,1",
        "1_0,1; 0,1",
        "1,0",
        "0.5,0.5",
        " ; ;",
        "1e-3 2 | 0 1",
        "\n".join(f"{i},1" for i in range(15_360)),  # issue 10: 15,360 rows, over 100k characters
        "\n".join(f"{i},1" for i in range(2049)),
    ],
    ids=lambda text: text if len(text) < 40 else f"{text.count(chr(10)) + 1} rows",
)
def test_weight_errors_use_the_server_parsers_words(app, text):
    got = app.evaluate(
        """(text) => { try { window.MultiReward.parseWeightRows(text, 2); return ''; }
                      catch (e) { return e.message; } }""",
        text,
    )
    assert got == python_error(text, 2)


@pytest.mark.ui_configs("one")
def test_resolved_rows_equal_the_server_parsers(app):
    """The rows a node will run, as the frontend resolves them: one-hot rows added first and exactly,
    rows that agree to 9 decimals once, the largest grid, the row limit with the one-hot rows."""
    cases = [
        ["0.5,0.5", 2, 5],
        ["0.9999999999,1e-10; 0.5,0.5", 2, 5],
        ["0.1,0.2; 1,2; 0.33333334,0.66666666", 2, 5],
        ["1,2,3; 3,2,1; 0,0,7", 3, 5],
        ["", 4, 20],
        [";".join(f"{i + 1},{2048 - i}" for i in range(2047)), 2, 5],
        [";".join(f"{i + 1},{2048 - i}" for i in range(2048)), 2, 5],
    ]
    got = app.evaluate(
        """(cases) => cases.map(([t, m, g]) => {
            try { return window.MultiReward.resolveWeights(t, m, g); } catch (e) { return e.message; }
        })""",
        cases,
    )
    for (text, m, grid), rows in zip(cases, got, strict=True):
        try:
            expected = resolve_weights(text, m, grid).tolist()
        except WeightsError as error:
            expected = str(error)
        assert rows == expected, text[:60]
    assert len(got[4]) == 1771 and got[-1].startswith("weights: 2050 weight rows; at most 2048")


@pytest.mark.ui_configs("each_mode")
def test_weights_editor_keeps_rows_on_the_simplex(app):
    node_id = build_graph(app, WEIGHT_FREE_REWARDS)
    page = app.page
    into_view(app, in_panel(app, node_id, ".mr-toggle")).click()
    into_view(app, in_panel(app, node_id, ".mr-edit-rows")).click()  # the grid's rows become editable rows
    app.settle()
    rows_before = parse_weight_rows(app.evaluate(WIDGET, [node_id, "weights"]), 3)
    assert len(rows_before) == len(resolve_weights("", 3, 2))
    sliders = in_panel(app, node_id, ".mr-row").nth(1).locator(".mr-slider")
    for index, value in ((0, 0.7), (1, 0.05), (2, 1.0), (0, 0.0), (1, 0.33)):
        sliders.nth(index).fill(str(value))
        text = app.evaluate(WIDGET, [node_id, "weights"])
        rows = parse_weight_rows(text, 3)  # the server's parser accepts every state
        for row in rows:
            assert all(w >= 0 for w in row)
        raw = [float(v) for v in re.split(r"[,\s]+", text.splitlines()[1].strip())]
        assert math.isclose(sum(raw), 1.0, abs_tol=2e-4), raw
        assert math.isclose(raw[index], value, abs_tol=1e-4), (index, value, raw)
        assert panel(app, node_id)["error"] is None
    into_view(app, in_panel(app, node_id, ".mr-add")).click()
    assert len(parse_weight_rows(app.evaluate(WIDGET, [node_id, "weights"]), 3)) == len(rows_before) + 1
    into_view(app, in_panel(app, node_id, ".mr-row").last).locator(".mr-remove").click()
    assert len(parse_weight_rows(app.evaluate(WIDGET, [node_id, "weights"]), 3)) == len(rows_before)
    assert page.locator(f'.multireward-panel[data-node-id="{node_id}"]').is_visible()
    app.screenshot("weights_editor.png", clip=focus_node(app, node_id))
    # Rows typed by hand while the editor is open become its sliders (normalised, as parsed).
    weights_field(app, node_id).fill("1,0,0; 2 3 5\n0,1,0; 0,0,1")
    app.settle()
    assert in_panel(app, node_id, ".mr-row").count() == 4
    values = in_panel(app, node_id, ".mr-row").nth(1).locator(".mr-slider")
    assert [float(values.nth(i).input_value()) for i in range(3)] == [0.2, 0.3, 0.5]


BLEND_NODE = (
    """([type, loras]) => {
    """
    + FRESH_ID
    + """
    app.graph.clear();
    const node = LiteGraph.createNode(type);
    node.id = freshId();
    node.pos = [40, 40];
    app.graph.add(node);
    loras.forEach((name, i) => {
        const w = node.widgets.find((w) => w.name === `lora_${i + 1}`);
        w.value = name;
        w.callback?.(name);  // what choosing from the list does
    });
    app.canvas.ds.offset = [70, 120];
    app.canvas.ds.scale = 1;
    app.graph.setDirtyCanvas(true, true);
    return node.id;
}"""
)


@pytest.mark.ui_configs("each_mode")
@pytest.mark.parametrize("node_type", ["MultiReward_DiffusionBlend", "MultiReward_LoRAStochasticMixer"])
def test_blend_balance_sliders_keep_the_lora_weights_on_the_simplex(app, node_type):
    loras = ["style_a.safetensors", "style_b.safetensors", "style_c.safetensors"]
    node_id = app.evaluate(BLEND_NODE, [node_type, loras])
    app.settle()
    sliders = in_panel(app, node_id, ".mr-slider")
    assert sliders.count() == 3
    for index, value in ((0, 0.6), (2, 0.1), (1, 1.0), (1, 0.25)):
        sliders.nth(index).fill(str(value))
        weights = [app.evaluate(WIDGET, [node_id, f"weight_{k}"]) for k in (1, 2, 3)]
        assert math.isclose(sum(weights), 1.0, abs_tol=2e-4), weights
        assert all(w >= 0 for w in weights) and math.isclose(weights[index], value, abs_tol=1e-4)


@pytest.mark.ui_configs("one")
def test_the_panels_read_reward_inputs_and_lora_slots_from_the_node_definitions(app, server):
    """The reward inputs (by socket type), the LoRA slots and their empty choice, as /object_info
    declares them, and nothing hard-coded: a definition with fewer slots gives fewer."""
    info = server.get("/object_info")
    for node_type in ("MultiReward_SRSoupKSampler", "MultiReward_SRSoupSampler", *BLEND_TYPES):
        inputs = {**info[node_type]["input"]["required"], **info[node_type]["input"].get("optional", {})}
        want = {
            "rewardInputs": [name for name, spec in inputs.items() if spec[0] == "MULTIREWARD_REWARD"],
            "loraSlots": [
                {"lora": name, "weight": name.replace("lora_", "weight_"), "empty": spec[1].get("default")}
                for name, spec in inputs.items()
                if re.fullmatch(r"lora_\d+", name)
            ],
        }
        got = app.evaluate("(t) => LiteGraph.registered_node_types[t].prototype.multirewardDef", node_type)
        assert got == want, node_type
        assert len(want["rewardInputs"]) == (4 if "SRSoup" in node_type else 0)
        assert len(want["loraSlots"]) == (0 if "SRSoup" in node_type else 4)
    cut = app.evaluate(
        """() => { const data = {name: 'x', input: {required: {reward: ['MULTIREWARD_REWARD', {}],
                       lora_1: ['COMBO', {options: ['a']}], weight_1: ['FLOAT', {}]},
                   optional: {lora_2: ['COMBO', {options: ['(none)', 'a'], default: '(none)'}],
                              weight_2: ['FLOAT', {}]}}};
                   return window.MultiReward.describeNode(data); }"""
    )
    assert cut == {
        "rewardInputs": ["reward"],
        "loraSlots": [
            {"lora": "lora_1", "weight": "weight_1", "empty": None},
            {"lora": "lora_2", "weight": "weight_2", "empty": "(none)"},
        ],
    }


def srsoup_example():
    named = [p for p in EXAMPLES if p.stem == "srsoup_two_rewards"]
    for path in named + EXAMPLES:
        workflow = json.loads(path.read_text())
        if any(n["type"] == SRSOUP for n in workflow["nodes"]):
            return path, workflow
    return None, None


SUBSTITUTE = """([workflow, checkpoint, rewards]) => app.loadGraphData(workflow, true, true, null,
        {showMissingNodesDialog: false, showMissingModelsDialog: false}).then(() => {
    // The digits checkpoint with its prompt and size, few steps and candidates, weight-free
    // rewards: the example's own wiring runs in seconds on a CPU.
    let sampler = null, r = 0;
    for (const node of app.graph.nodes) {
        const set = (name, value) => { const w = node.widgets?.find((w) => w.name === name); if (w) w.value = value; };
        if (node.type === 'CheckpointLoaderSimple') set('ckpt_name', checkpoint);
        if (node.type === 'PrimitiveStringMultiline') set('value', 'a handwritten digit 3');
        if (node.type === 'CLIPTextEncode') set('text', '');
        if (node.type === 'EmptyLatentImage') { set('width', 64); set('height', 64); }
        // the example's own reward where it needs no weights file
        const reward = node.widgets?.find((w) => w.name === 'reward_name');
        if (node.type === 'MultiReward_RewardLoader' && !rewards.includes(reward.value)) {
            reward.value = rewards[r++ % rewards.length];
        }
        if (node.type === 'MultiReward_SRSoupKSampler' && !sampler) {
            sampler = node;
            for (const [k, v] of Object.entries({steps: 3, candidates: 4, soup_steps: 1, grid_divisions: 2,
                                                  weights: '', control_after_generate: 'fixed'})) set(k, v);
        }
    }
    window.__sampler = sampler;
    return sampler.id;
})"""

# The whole example at a scale where LiteGraph still draws text, under the app's top bar.
OVERVIEW = """() => {
    app.canvas.ds.scale = 0.7;
    app.canvas.ds.offset = [90, 200];
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
}"""


# Run in each node view; the invalid-row test below clicks Run in every configuration too.
@pytest.mark.ui_configs("each_mode")
def test_srsoup_workflow_runs_from_the_run_button_and_the_estimate_equals_the_report(app, server):
    _path, workflow = srsoup_example()
    if workflow is None:
        node_id = build_graph(app)
    else:
        node_id = app.evaluate(SUBSTITUTE, [workflow, app.checkpoint, list(WEIGHT_FREE_REWARDS)])
        app.settle(1.0)  # the frontend restores the workflow's own view after loading
    app.evaluate(OVERVIEW)
    app.settle(0.5)
    before = panel(app, node_id)
    estimate = before["estimate"]
    assert before["error"] is None and estimate is not None, before
    shown = in_panel(app, node_id, ".mr-estimate").text_content()
    assert f"{estimate['queries']} reward queries" in shown and str(estimate["weighted_sum_queries"]) in shown
    app.screenshot("srsoup_workflow.png", clip={"x": 0, "y": 80, "width": 1280, "height": 880})

    successes = app.evaluate("() => window.__mr.successes")
    app.run_button().click()
    app.wait("(n) => window.__mr.successes > n || window.__mr.errors.length", timeout=240, arg=successes)
    assert app.evaluate("() => window.__mr.errors") == []
    app.wait("(id) => app.graph.getNodeById(id).multireward.lastRunQueries", arg=node_id, timeout=30)

    # What the server reported: the node's ui output in /history, and the saved report if any.
    history = server.get("/history")
    entry = max(history.values(), key=lambda e: e["prompt"][0])
    assert entry["status"]["status_str"] == "success"
    run = entry["outputs"][str(node_id)]["multireward_run"][0]
    for key in (
        "queries",
        "weighted_sum_queries",
        "lookahead_passes",
        "weighted_sum_lookahead_passes",
        "total_queries",
    ):
        assert run[key] == estimate[key], key
    # the example sets no schedule: the node runs its default, per_chain
    assert before["settings"]["soupSchedule"] == "per_chain"
    assert f"reward queries: {run['queries']}" in entry["outputs"][str(node_id)]["text"][0]
    reports = sorted((server.base_dir / "output").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    for report_path in reports[-1:]:
        report = json.loads(report_path.read_text())
        if "queries" in report:
            assert report["queries"] == estimate["queries"]
            assert report["weighted_sum_queries"] == estimate["weighted_sum_queries"]
            assert report["lookahead_passes"] == estimate["lookahead_passes"]
            assert report["guided_steps"] == estimate["guided_steps"]
            assert report["chain_soup_steps"] == estimate["chain_soup_steps"]
            assert report["total_queries"] == estimate["total_queries"]

    status = in_panel(app, node_id, ".mr-status").text_content()
    shown = re.fullmatch(
        r"last run: (\d+) reward queries \(weighted sum: (\d+)\), (\d+) with the final scores, (\d+\.\d) s",
        status,
    )
    assert shown, status
    assert [int(shown[1]), int(shown[2]), int(shown[3])] == [
        run["queries"],
        run["weighted_sum_queries"],
        run["total_queries"],
    ]
    assert abs(float(shown[4]) - run["seconds"]) <= 0.05 + 1e-9  # the report's time, to one decimal
    app.screenshot("srsoup_node.png", clip=focus_node(app, node_id))


def test_invalid_row_is_marked_before_queueing_and_the_server_names_the_same_row(app, server):
    node_id = build_graph(app)
    focus_node(app, node_id)
    field = weights_field(app, node_id)
    field.click()
    field.press_sequentially("1,0; 0.5,abc; 0,1")
    app.settle()
    expected = python_error("1,0; 0.5,abc; 0,1", 2)
    assert expected.startswith("weights row 2 ('0.5,abc')")
    marked = in_panel(app, node_id, ".mr-error")
    assert marked.text_content() == expected and marked.is_visible()
    assert_marked_red(app, field)
    assert panel(app, node_id)["estimate"] is None

    errors_before = app.evaluate("() => window.__mr.errors.length")
    app.run_button().click()
    app.wait("(n) => window.__mr.errors.length > n", arg=errors_before, timeout=240)
    error = app.evaluate("() => window.__mr.errors.at(-1)")
    assert error["node_type"] == SRSOUP
    assert expected in error["exception_message"], error["exception_message"]
    app.page.keyboard.press("Escape")  # the frontend's error dialog

    field.fill("1,0; 0.5,0.5; 0,1")
    app.settle()
    assert panel(app, node_id)["error"] is None
    assert in_panel(app, node_id, ".mr-error").text_content() == ""
    box = field.bounding_box()
    assert field.evaluate("(e) => getComputedStyle(e).outlineStyle") != "solid"
    assert red_pixels(app, box) < (box["width"] + box["height"]) / 4  # the red was the mark


@pytest.mark.ui_configs("one")
def test_typed_markup_stays_text(app):
    node_id = build_graph(app)
    markup = "1,0; <img src=x onerror=window.__mrInjected=1>,1; 0,1"
    weights_field(app, node_id).fill(markup)
    app.settle()
    assert in_panel(app, node_id, ".mr-error").text_content() == python_error(markup, 2)
    assert in_panel(app, node_id, "img").count() == 0
    app.evaluate(
        "(id) => app.graph.getNodeById(id).onExecuted({text: ['<b>reward queries: 5 (weighted sum: 9)</b>'], "
        "multireward_run: [{queries: 5, weighted_sum_queries: 9, seconds: 1.4}]})",
        node_id,
    )
    assert in_panel(app, node_id, "b").count() == 0
    status = in_panel(app, node_id, ".mr-status").text_content()
    assert status == "last run: 5 reward queries (weighted sum: 9), 1.4 s", status
    assert app.evaluate("() => window.__mrInjected") is None


def test_no_page_errors_from_the_extension(app):
    ours = [error for error in app.page_errors if EXTENSION_URL in error]
    assert ours == []


def test_no_deprecated_frontend_api_from_the_extension(app):
    """Every deprecation warning the frontend gave while the tests above ran in this configuration,
    kept if the extension's code is on its stack (`widget.inputEl`, `input.link`, ... in 1.58)."""
    warnings = app.evaluate("() => window.__mrDeprecations")
    ours = [w["message"] for w in warnings if EXTENSION_URL in w["stack"]]
    assert ours == []
