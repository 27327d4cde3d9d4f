"""Reward Loader and Reward Score in a real ComfyUI graph: several neural rewards at once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from support.reward_references import (
    hps_tiny_model_and_transform,
    image_reward_blip,
    image_reward_checkpoint_state,
    random_uint8_images,
    write_tiny_bert_vocab,
)
from test_reward_parity import (
    ImageRewardReference,
    contiguous,
    published_aesthetic_mlp,
    tiny_openai_vision_tower,
    tiny_pickscore_model,
)

PROMPT = "a photo of a cat on the hill"


@pytest.fixture(scope="module")
def reward_files(comfy) -> dict:
    """Tiny weights for every neural reward, written into the host's models/rewards folder."""
    folder = comfy.models_dir("rewards") / "graph"
    folder.mkdir(exist_ok=True)
    hps, _, _ = hps_tiny_model_and_transform()
    torch.save({"state_dict": hps.state_dict()}, folder / "HPS_v2_compressed.pt")
    save_file(contiguous(tiny_pickscore_model().state_dict()), folder / "pickscore.safetensors")
    save_file(contiguous(hps.state_dict()), folder / "open_clip_model.safetensors")
    torch.save(
        {f"layers.{k}": v for k, v in published_aesthetic_mlp().state_dict().items()},
        folder / "aesthetic.pth",
    )
    save_file(contiguous(tiny_openai_vision_tower().state_dict()), folder / "clip_vision_l.safetensors")
    vocab_size = write_tiny_bert_vocab(folder / "vocab.txt")
    vit, med = image_reward_blip()
    torch.save(
        image_reward_checkpoint_state(ImageRewardReference(vit, med, vocab_size)), folder / "ImageReward.pt"
    )
    return {
        "hpsv2": "graph/HPS_v2_compressed.pt",
        "pickscore": "graph/pickscore.safetensors",
        "clip_score": "graph/open_clip_model.safetensors",
        "laion_aesthetic": "graph/aesthetic.pth",
        "imagereward": "graph/ImageReward.pt",
        "companion": "graph/clip_vision_l.safetensors",
    }


@pytest.fixture(scope="module")
def input_images(comfy) -> list[str]:
    import folder_paths

    names = []
    for index, array in enumerate(random_uint8_images(2, 48, 40, seed=31)):
        name = f"reward_graph_{index}.png"
        Image.fromarray(array).save(f"{folder_paths.get_input_directory()}/{name}")
        names.append(name)
    return names


def loader(reward_name: str, weights_file: str = "(none)", companion: str = "(none)") -> dict:
    inputs = {
        "reward_name": reward_name,
        "weights_file": weights_file,
        "dtype": "auto",
        "companion_file": companion,
    }
    return {"class_type": "MultiReward_RewardLoader", "inputs": inputs}


def scoring_graph(image_name: str, loaders: list[dict], prompt: str) -> dict:
    graph = {"image": {"class_type": "LoadImage", "inputs": {"image": image_name}}}
    score_inputs = {"images": ["image", 0], "prompt": prompt}
    for index, node in enumerate(loaders):
        graph[f"r{index}"] = node
        score_inputs["reward" if index == 0 else f"reward_{index + 1}"] = [f"r{index}", 0]
    graph["score"] = {"class_type": "MultiReward_RewardScore", "inputs": score_inputs}
    return graph


def test_every_neural_reward_scores_through_the_loader_in_a_graph(comfy, reward_files, input_images):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards.registry import build_reward

    image = np.asarray(Image.open(f"{comfy.folder_paths.get_input_directory()}/{input_images[0]}"))
    batch = torch.from_numpy(image.copy()).float().unsqueeze(0) / 255.0
    for name in ("hpsv2", "pickscore", "clip_score", "imagereward", "laion_aesthetic"):
        companion = reward_files["companion"] if name == "laion_aesthetic" else "(none)"
        result = comfy.run(
            scoring_graph(input_images[0], [loader(name, reward_files[name], companion)], PROMPT)
        )
        scores = result.output_list("score", 0)
        folder = comfy.models_dir("rewards")
        companion_path = str(folder / companion) if name == "laion_aesthetic" else None
        direct = build_reward(
            name,
            str(folder / reward_files[name]),
            dtype="fp32",
            companion_path=companion_path,
            manager=ComfyModelManager(),
        )
        assert scores == pytest.approx(direct.score(batch, PROMPT).tolist(), abs=1e-5), name


def test_reward_score_gives_a_table_for_several_rewards(comfy, reward_files, input_images):
    loaders = [
        loader("hpsv2", reward_files["hpsv2"]),
        loader("imagereward", reward_files["imagereward"]),
        loader("laion_aesthetic", reward_files["laion_aesthetic"], reward_files["companion"]),
        loader("jpeg_compressibility"),
    ]
    result = comfy.run(scoring_graph(input_images[1], loaders, PROMPT))
    table = json.loads(result.output("score", 2))
    assert table["rewards"] == ["hpsv2", "imagereward", "laion_aesthetic", "jpeg_compressibility"]
    assert len(table["scores"]) == 1 and len(table["scores"][0]) == 4
    assert all(np.isfinite(table["scores"][0]))
    text = result.output("score", 1)
    assert all(name in text for name in table["rewards"])


def test_an_empty_prompt_fails_the_graph_for_a_prompt_based_reward(comfy, reward_files, input_images):
    result = comfy.run(
        scoring_graph(input_images[0], [loader("hpsv2", reward_files["hpsv2"])], ""), expect_success=False
    )
    assert not result.success and "prompt is empty" in str(result.error)


def test_a_missing_weights_choice_names_the_expected_file(comfy, input_images):
    result = comfy.run(scoring_graph(input_images[0], [loader("hpsv2")], PROMPT), expect_success=False)
    assert not result.success and "HPS_v2_compressed.pt" in str(result.error)
