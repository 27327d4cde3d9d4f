"""SRSoupKSampler and the SRSoup SAMPLER inside a real ComfyUI, on tiny eps and flow models."""

from __future__ import annotations

import json

import pytest
import torch
from support.paper_costs import paper_srsoup_queries, paper_weighted_sum_queries
from support.srsoup_graphs import run_in_sampler_custom_advanced, srsoup_graph


def run_srsoup(comfy, **overrides):
    result = comfy.run(srsoup_graph(**overrides))
    return result.output("7", 0)["samples"], json.loads(result.output("7", 1)), result


@pytest.mark.parametrize("model_source", ["tiny", "flow"])
def test_returns_one_latent_per_weight_row_and_counts_queries_exactly(comfy, model_source):
    samples, report, result = run_srsoup(
        comfy, model_source=model_source, grid_divisions=2, candidates=4, soup_steps=1
    )
    assert samples.shape[0] == 3 and torch.isfinite(samples).all()
    assert report["weights"] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    guided = 3  # four steps; the last has no noise
    assert report["guided_steps"] == guided
    assert report["queries"] == paper_srsoup_queries(4, guided, 2, 3, 1)
    assert report["weighted_sum_queries"] == paper_weighted_sum_queries(4, guided, 2, 3)
    # The rewards' own counters saw exactly what the ledger says.
    assert report["reward_images_seen"] == report["queries_per_reward"]
    assert report["flow_model"] is (model_source == "flow")
    assert "reward queries" in result.ui["7"]["text"][0]
    # The frontend reads the run's numbers as data, not from the text.
    run = result.ui["7"]["multireward_run"][0]
    assert run["queries"] == report["queries"] and run["guided_steps"] == guided
    assert run["weighted_sum_queries"] == report["weighted_sum_queries"]


def test_weighted_sum_spends_the_formula(comfy):
    _, report, _ = run_srsoup(comfy, mode="weighted_sum", grid_divisions=3, candidates=3)
    assert report["queries"] == paper_weighted_sum_queries(3, 3, 2, 4)
    assert report["lookahead_passes"] == 3 * 3 * 4


def test_same_seed_same_images_and_another_seed_differs(comfy):
    first, _, _ = run_srsoup(comfy)
    again, _, _ = run_srsoup(comfy)
    other, _, _ = run_srsoup(comfy, seed=8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("model_source", ["tiny", "flow"])
def test_each_exemplar_beats_the_unguided_sample_on_its_own_reward(comfy, model_source):
    _, guided, _ = run_srsoup(comfy, model_source=model_source, mode="single", candidates=8, steps=6)
    # guided_start at the last step: nothing is guided, the same starting noise.
    _, unguided, _ = run_srsoup(
        comfy,
        model_source=model_source,
        mode="weighted_sum",
        candidates=8,
        steps=6,
        guided_start=5,
        soup_steps=0,
    )
    assert unguided["queries"] == 0
    for m in range(2):
        exemplar = next(i for i, row in enumerate(guided["weights"]) if row[m] == 1.0)
        plain = next(i for i, row in enumerate(unguided["weights"]) if row[m] == 1.0)
        assert guided["scores"][exemplar][m] > unguided["scores"][plain][m], (
            m,
            guided["scores"],
            unguided["scores"],
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weights": "1,0,0; 0,1,0"}, "has 3 values but 2 rewards"),
        ({"weights": "1,-1; 0,1"}, "must not be negative"),
        ({"weights": "0,0; 1,0"}, "all weights are zero"),
        ({"candidates": 1}, "candidates"),
        ({"soup_schedule": "per_chain", "soup_centre": 1.5}, "soup_centre"),
    ],
)
def test_bad_settings_fail_before_any_model_work(comfy, overrides, message):
    result = comfy.run(srsoup_graph(**overrides), expect_success=False)
    assert not result.success
    assert message in str(result.error)


def test_a_latent_batch_is_refused(comfy):
    graph = srsoup_graph()
    graph["4"]["inputs"]["batch_size"] = 2
    result = comfy.run(graph, expect_success=False)
    assert "batch of 1" in str(result.error)


def test_sampler_node_composes_with_sampler_custom_advanced(comfy):
    graph = srsoup_graph()
    node = graph.pop("7")["inputs"]
    graph["10"] = {
        "class_type": "MultiReward_SRSoupSampler",
        "inputs": {
            "vae": node["vae"],
            "reward": node["reward"],
            "reward_2": node["reward_2"],
            "prompt": "",
            "weights": "1,0; 0.3,0.7; 0,1",
            "grid_divisions": 5,
            "mode": "srsoup",
            "candidates": 3,
            "soup_steps": 2,
            "guided_start": 0,
            "guided_end": 10000,
            "correction": "authors",
            "guidance_seed": 3,
        },
    }
    run_in_sampler_custom_advanced(graph, "10", node)
    result = comfy.run(graph)
    samples = result.output("14", 0)["samples"]
    report = json.loads(result.output("15", 0))
    assert samples.shape[0] == 3
    assert report["weights"][1] == pytest.approx([0.3, 0.7])
    assert report["queries"] == paper_srsoup_queries(3, 3, 2, 3, 2)


def test_no_reward_connected_is_refused_naming_the_input(comfy):
    graph = srsoup_graph()
    del graph["7"]["inputs"]["reward"]
    del graph["7"]["inputs"]["reward_2"]
    result = comfy.run(graph, expect_success=False)
    errors = result.error["node_errors"]["7"]["errors"]
    assert any(error["extra_info"].get("input_name") == "reward" for error in errors), errors


# ---- inpainting: the latent's noise_mask is honoured as ComfyUI's own samplers honour it ----------


def with_masked_latent(graph: dict, repaint_left_half: bool) -> dict:
    """Node 4 becomes the tiny VAE's encoding of a coloured 64x64 image with a noise mask that
    repaints its left half, or nothing at all."""
    graph["20"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366CC},
    }
    graph["21"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["1", 2]}}
    graph["22"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}
    mask = ["22", 0]
    if repaint_left_half:
        graph["23"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}}
        graph["24"] = {
            "class_type": "MaskComposite",
            "inputs": {"destination": ["22", 0], "source": ["23", 0], "x": 0, "y": 0, "operation": "add"},
        }
        mask = ["24", 0]
    graph["4"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["21", 0], "mask": mask}}
    graph["25"] = {"class_type": "VAEDecode", "inputs": {"samples": ["21", 0], "vae": ["1", 2]}}
    graph["26"] = {"class_type": "PreviewImage", "inputs": {"images": ["25", 0]}}
    return graph


def test_a_masked_latent_keeps_its_unmasked_region_as_the_stock_ksampler_does(comfy):
    from comfy.utils import reshape_mask

    graph = with_masked_latent(srsoup_graph(), repaint_left_half=True)
    sampler = graph["7"]["inputs"]
    graph["30"] = {
        "class_type": "KSampler",
        "inputs": {
            **{key: sampler[key] for key in ("model", "positive", "negative", "seed", "steps", "cfg")},
            "sampler_name": "euler_ancestral",
            "scheduler": sampler["scheduler"],
            "latent_image": ["4", 0],
            "denoise": 1.0,
        },
    }
    graph["31"] = {"class_type": "SaveLatent", "inputs": {"samples": ["30", 0], "filename_prefix": "stock"}}
    result = comfy.run(graph)
    chains = result.output("7", 0)["samples"]
    stock = result.output("30", 0)["samples"]
    latent = result.output("21", 0)["samples"]
    keep = reshape_mask(result.output("24", 0), latent.shape)[0] == 0
    assert keep.any() and (~keep).any()
    for chain in chains:
        assert torch.allclose(chain[keep], latent[0][keep], atol=1e-5)
        assert torch.allclose(chain[keep], stock[0][keep], atol=1e-5)
        assert (chain - latent[0])[~keep].abs().max() > 0.1  # the masked half was repainted


def test_the_rewards_judge_the_composed_image(comfy):
    """With nothing to repaint, every look-ahead and final image the rewards see is the input
    latent's own image (the stock VAE Decode of it)."""
    import test_nodes

    graph = with_masked_latent(srsoup_graph(), repaint_left_half=False)
    graph["5"] = {"class_type": "MultiRewardTest_RecordingReward", "inputs": {}}
    test_nodes.RECORDED_IMAGES.clear()
    result = comfy.run(graph)
    expected = result.output("25", 0)[0]
    report = json.loads(result.output("7", 1))
    seen = torch.cat(test_nodes.RECORDED_IMAGES)
    assert seen.shape[0] == report["queries_per_reward"][0] + len(report["weights"])  # look-aheads + finals
    assert torch.allclose(seen, expected.expand_as(seen), atol=1e-4)
