"""API-format graphs for SRSoup tests (in-process and through the server)."""

from __future__ import annotations


def srsoup_graph(model_source: str = "tiny", checkpoint: str = "", **overrides) -> dict:
    """Tiny model (in memory), the stock checkpoint loader, or the tiny flow model -> SRSoupKSampler."""
    graph: dict = {
        "5": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "jpeg_compressibility", "weights_file": "(none)", "dtype": "auto"},
        },
        "6": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "colorfulness", "weights_file": "(none)", "dtype": "auto"},
        },
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
    }
    if model_source == "flow":
        graph["1"] = {"class_type": "MultiRewardTest_TinyFlow", "inputs": {"seed": 0}}
        graph["4"] = {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 1},
        }
        model, positive, negative, vae = ["1", 0], ["1", 1], ["1", 2], ["1", 3]
    else:
        if model_source == "checkpoint":
            graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
        else:
            graph["1"] = {"class_type": "MultiRewardTest_TinySD15", "inputs": {"seed": 0}}
        graph["2"] = {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a red fox in snow", "clip": ["1", 1]},
        }
        graph["3"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}
        model, positive, negative, vae = ["1", 0], ["2", 0], ["3", 0], ["1", 2]
    inputs = {
        "model": model,
        "positive": positive,
        "negative": negative,
        "latent_image": ["4", 0],
        "vae": vae,
        "seed": 7,
        "steps": 4,
        "cfg": 4.0,
        "scheduler": "normal",
        "reward": ["5", 0],
        "reward_2": ["6", 0],
        "prompt": "a red fox in snow",
        "weights": "",
        "grid_divisions": 2,
        "mode": "srsoup",
        "candidates": 4,
        "soup_steps": 1,
        "guided_start": 0,
        "guided_end": 10000,
        "correction": "divided_by_s",
        # The paper's fixed K (the node's default is per_chain): the counts below follow soup_steps.
        "soup_schedule": "fixed",
        "soup_centre": 0.05,
        "soup_edge": 0.8,
    }
    inputs.update(overrides)
    graph["7"] = {"class_type": "MultiReward_SRSoupKSampler", "inputs": inputs}
    return graph


def run_in_sampler_custom_advanced(graph: dict, sampler_id: str, ksampler_inputs: dict) -> None:
    """Nodes 11-15 sample the SAMPLER of node `sampler_id` in SamplerCustomAdvanced (CFGGuider at cfg
    3 on the model and conds of `ksampler_inputs`, 4 normal steps, noise seed 5, node 4's latent);
    node 14 gives the latents, node 15 (SRSoup Report) the report."""
    model = ksampler_inputs["model"]
    graph["11"] = {
        "class_type": "CFGGuider",
        "inputs": {
            "model": model,
            "positive": ksampler_inputs["positive"],
            "negative": ksampler_inputs["negative"],
            "cfg": 3.0,
        },
    }
    graph["12"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": model, "scheduler": "normal", "steps": 4, "denoise": 1.0},
    }
    graph["13"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    graph["14"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["13", 0],
            "guider": ["11", 0],
            "sampler": [sampler_id, 0],
            "sigmas": ["12", 0],
            "latent_image": ["4", 0],
        },
    }
    graph["15"] = {
        "class_type": "MultiReward_SRSoupReport",
        "inputs": {"sampler": [sampler_id, 0], "samples": ["14", 0]},
    }
