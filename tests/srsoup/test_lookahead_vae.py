"""The optional look-ahead decoder: look-ahead images come from it, final images from the main VAE.

Ground truth: every call of ComfyUI's own VAE.decode (recorded on the real VAE objects), the stock
VAELoader that loads the cheap decoder from models/vae_approx, and the stock VAE Decode node.
"""

from __future__ import annotations

import json

import pytest
import tiny_models
import torch
from support.srsoup_graphs import run_in_sampler_custom_advanced, srsoup_graph

#: srsoup_graph's defaults: 4 steps (3 guided), 3 chains (grid 2), N = 4, K = 1, two rewards. The
#: soup step decodes the two exemplars' candidates, the other two steps every chain's.
LOOKAHEAD_IMAGES = 4 * 2 + 2 * 4 * 3
CHAINS = 3


@pytest.fixture(scope="module")
def taesd(comfy) -> str:
    """A random TAESD-shaped decoder in the host's models/vae_approx, as VAELoader offers it."""
    return tiny_models.write_taesd_files(comfy.models_dir("vae_approx"), seed=11)


@pytest.fixture
def decodes(monkeypatch):
    """Every VAE.decode call in the process: (the VAE object, the images it returned)."""
    import comfy.sd

    calls = []
    original = comfy.sd.VAE.decode

    def recording(self, samples, *args, **kwargs):
        images = original(self, samples, *args, **kwargs)
        calls.append((self, images.clone()))
        return images

    monkeypatch.setattr(comfy.sd.VAE, "decode", recording)
    return calls


def main_vae():
    return tiny_models.tiny_sd15(0)[2]  # the object MultiRewardTest_TinySD15 hands to the graph


def with_loaded_taesd(graph: dict, name: str) -> dict:
    graph["30"] = {"class_type": "VAELoader", "inputs": {"vae_name": name}}
    graph["7"]["inputs"]["lookahead_vae"] = ["30", 0]
    return graph


def images_of(calls, is_main: bool) -> torch.Tensor:
    return torch.cat([images for vae, images in calls if (vae is main_vae()) == is_main])


def test_lookahead_images_come_from_the_lookahead_vae_and_finals_from_the_main_vae(comfy, taesd, decodes):
    import test_nodes

    graph = with_loaded_taesd(srsoup_graph(), taesd)
    graph["5"] = {"class_type": "MultiRewardTest_RecordingReward", "inputs": {}}
    graph["40"] = {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}}
    graph["41"] = {"class_type": "PreviewImage", "inputs": {"images": ["40", 0]}}
    test_nodes.RECORDED_IMAGES.clear()
    result = comfy.run(graph)
    report = json.loads(result.output("7", 1))
    stock_finals = result.output("40", 0)

    cheap = images_of(decodes, is_main=False)
    main = images_of(decodes, is_main=True)
    assert cheap.shape[0] == LOOKAHEAD_IMAGES
    assert main.shape[0] == 2 * CHAINS  # SRSoup's finals, then the stock VAE Decode's
    assert torch.equal(main[:CHAINS], stock_finals)

    seen = torch.cat(test_nodes.RECORDED_IMAGES)
    lookaheads, finals = seen[:-CHAINS], seen[-CHAINS:]
    assert torch.equal(finals, stock_finals)
    # Every look-ahead image the reward judged is one the cheap decoder made.
    same = (lookaheads[:, None] == cheap[None]).flatten(2).all(dim=2)
    assert lookaheads.shape[0] == report["queries_per_reward"][0] > 0 and same.any(dim=1).all()

    assert report["lookahead_decoder"] == "lookahead_vae (TAESD)"
    assert report["final_decoder"] == "vae (TAESD)"  # the tiny model's main VAE is TAESD-shaped too
    assert "look-aheads decoded by lookahead_vae (TAESD)" in result.ui["7"]["text"][0]


def test_unconnected_decodes_everything_with_the_main_vae_and_changes_nothing(comfy, taesd, decodes):
    def run(graph):
        decodes.clear()
        result = comfy.run(graph)
        return result.output("7", 0)["samples"], json.loads(result.output("7", 1))

    plain, plain_report = run(srsoup_graph())
    assert all(vae is main_vae() for vae, _ in decodes)
    assert images_of(decodes, is_main=True).shape[0] == LOOKAHEAD_IMAGES + CHAINS
    assert plain_report["lookahead_decoder"] == "vae (TAESD)"

    # The main VAE connected as the look-ahead decoder too: the very same run.
    same, same_report = run(srsoup_graph(lookahead_vae=["1", 2]))
    assert torch.equal(plain, same)
    assert same_report["scores"] == plain_report["scores"]

    # Another decoder guides differently: the input is used.
    other, _ = run(with_loaded_taesd(srsoup_graph(), taesd))
    assert not torch.equal(plain, other)


def test_a_decoder_for_other_latents_is_refused_naming_the_input(comfy):
    graph = srsoup_graph()
    graph["31"] = {"class_type": "MultiRewardTest_TinyFlow", "inputs": {"seed": 0}}
    graph["7"]["inputs"]["lookahead_vae"] = ["31", 3]  # a 16-channel decoder for a 4-channel model
    result = comfy.run(graph, expect_success=False)
    assert "lookahead_vae: it decodes 16-channel latents but this model makes 4-channel" in str(result.error)


def test_the_sampler_node_takes_a_lookahead_vae_in_sampler_custom_advanced(comfy, taesd, decodes):
    graph = srsoup_graph()
    node = graph.pop("7")["inputs"]
    graph["30"] = {"class_type": "VAELoader", "inputs": {"vae_name": taesd}}
    sampler_inputs = {key: node[key] for key in ("vae", "reward", "reward_2", "prompt", "weights")}
    graph["10"] = {
        "class_type": "MultiReward_SRSoupSampler",
        "inputs": {
            **sampler_inputs,
            **{key: node[key] for key in ("grid_divisions", "mode", "candidates", "soup_steps")},
            **{key: node[key] for key in ("guided_start", "guided_end", "correction")},
            "guidance_seed": 3,
            "lookahead_vae": ["30", 0],
        },
    }
    run_in_sampler_custom_advanced(graph, "10", node)
    report = json.loads(comfy.run(graph).output("15", 0))
    assert report["lookahead_decoder"] == "lookahead_vae (TAESD)"
    assert images_of(decodes, is_main=False).shape[0] == LOOKAHEAD_IMAGES
    assert images_of(decodes, is_main=True).shape[0] == CHAINS
