"""Real files load (full key sets and shapes, on the meta device), and bad files or inputs give a
clear error naming the mismatch."""

from __future__ import annotations

import itertools

import pytest
import torch
from safetensors.torch import save_file
from support.reward_references import (
    as_comfy_images,
    hps_full_size_state,
    hps_tiny_model_and_transform,
    image_reward_blip,
    random_uint8_images,
)


def meta_state(module: torch.nn.Module, prefix: str = "") -> dict:
    return {prefix + key: value for key, value in module.state_dict().items()}


# ---- full-size key sets ---------------------------------------------------------------------------


def test_a_full_size_hpsv2_checkpoint_fits_vit_h_14():
    from multireward.rewards.clip_arch import build_clip, text_shape, vision_shape

    state = hps_full_size_state("ViT-H-14")
    model = build_clip(state, quick_gelu=False, reward_label="hpsv2", expected="HPSv2")
    vision, text = vision_shape(state), text_shape(state)
    assert (vision.width, vision.layers, vision.heads, vision.patch_size, vision.image_size) == (
        1280,
        32,
        16,
        14,
        224,
    )
    assert (text.width, text.layers, text.heads, text.context_length, vision.embed_dim) == (
        1024,
        24,
        16,
        77,
        1024,
    )
    assert model.visual.transformer.resblocks[0].attn.num_heads == 16
    assert sum(p.numel() for p in model.parameters()) > 980_000_000


def test_a_full_size_pickscore_checkpoint_fits_clip_h():
    from transformers import CLIPConfig, CLIPModel

    from multireward.rewards.clip_arch import build_clip, openclip_layout

    config = CLIPConfig(  # laion/CLIP-ViT-H-14-laion2B-s32B-b79K, which PickScore_v1 fine-tunes
        text_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
        },
        vision_config={
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_attention_heads": 16,
            "num_hidden_layers": 32,
            "patch_size": 14,
            "image_size": 224,
        },
        projection_dim=1024,
    )
    with torch.device("meta"):
        state = meta_state(CLIPModel(config))
    model = build_clip(
        openclip_layout(state), quick_gelu=False, reward_label="pickscore", expected="PickScore"
    )
    assert model.visual.transformer.resblocks[31].attn.num_heads == 16
    assert model.transformer.resblocks[23].attn.num_heads == 16


def test_full_size_laion_aesthetic_head_and_openai_vit_l_14_tower_fit():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from multireward.rewards.aesthetic import aesthetic_model, split_tower

    config = CLIPVisionConfig(  # openai/clip-vit-large-patch14
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        num_hidden_layers=24,
        patch_size=14,
        image_size=224,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    with torch.device("meta"):
        tower = meta_state(CLIPVisionModelWithProjection(config))
        sizes = [768, 1024, 128, 64, 16, 1]
        head = {}
        for index, (fan_in, fan_out) in zip((0, 2, 4, 6, 7), itertools.pairwise(sizes), strict=True):
            head[f"layers.{index}.weight"] = torch.empty(fan_out, fan_in)
            head[f"layers.{index}.bias"] = torch.empty(fan_out)
    model = aesthetic_model(head, split_tower(tower))
    assert model.visual.transformer.resblocks[23].attn.num_heads == 16
    assert model.layers[0].in_features == 768


def test_a_full_size_imagereward_checkpoint_fits_blip_large(monkeypatch):
    from multireward.rewards.imagereward import model_from_state

    vit, med = image_reward_blip()
    config = med.BertConfig(  # BLIP's med_config.json, as ImageReward downloads it
        vocab_size=30524,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        layer_norm_eps=1e-12,
        add_cross_attention=True,
    )
    config.encoder_width = 1024
    # vit.py reads its drop-path schedule with .item(), which meta tensors cannot do.
    linspace = torch.linspace
    monkeypatch.setattr(
        torch, "linspace", lambda *args, **kwargs: linspace(*args, **{**kwargs, "device": "cpu"})
    )
    with torch.device("meta"):
        visual = vit.VisionTransformer(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16)
        text = med.BertModel(config=config, add_pooling_layer=False)
        state = meta_state(visual, "blip.visual_encoder.") | meta_state(text, "blip.text_encoder.")
        for index, (fan_in, fan_out) in zip(
            (0, 2, 4, 6, 7), ((768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)), strict=True
        ):
            state[f"mlp.layers.{index}.weight"] = torch.empty(fan_out, fan_in)
            state[f"mlp.layers.{index}.bias"] = torch.empty(fan_out)
    model = model_from_state(state)
    assert (
        len(model.blip.visual_encoder.blocks) == 24 and model.blip.visual_encoder.blocks[0].attn.heads == 16
    )
    assert len(model.blip.text_encoder.encoder.layer) == 12


# ---- bad files --------------------------------------------------------------------------------------


def sd_checkpoint_like_state() -> dict:
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
        "first_stage_model.decoder.conv_in.weight": torch.zeros(8, 4, 3, 3),
    }


@pytest.mark.parametrize(
    "name", ["hpsv2", "hpsv2.1", "pickscore", "clip_score", "imagereward", "laion_aesthetic"]
)
def test_a_stable_diffusion_checkpoint_chosen_as_a_reward_names_the_mismatch(comfy, name):
    from multireward.rewards.base import RewardError
    from multireward.rewards.registry import build_reward

    path = comfy.models_dir("rewards") / "not_a_reward_sd15.safetensors"
    save_file(sd_checkpoint_like_state(), path)
    with pytest.raises(RewardError, match=r"is not .* it looks like a Stable Diffusion checkpoint") as error:
        build_reward(name, str(path), dtype="fp32")
    assert "not_a_reward_sd15.safetensors" in str(error.value) and name in str(error.value)


def test_the_wrong_kind_of_file_in_the_reward_loader_fails_the_node_with_the_mismatch(comfy):
    path = comfy.models_dir("rewards") / "wrong_kind_for_loader.safetensors"
    save_file(sd_checkpoint_like_state(), path)
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "hpsv2", "weights_file": path.name, "dtype": "auto"},
        },
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": "a cat"},
        },
    }
    result = comfy.run(graph, expect_success=False)
    assert not result.success
    assert "not an HPSv2 checkpoint" in str(result.error) and "Stable Diffusion" in str(result.error)


class NotAWeight:
    pass


def test_a_pickle_that_needs_more_than_weights_only_is_refused(comfy):
    from multireward.rewards.base import RewardError
    from multireward.rewards.registry import build_reward

    path = comfy.models_dir("rewards") / "needs_code.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "config": NotAWeight()}, path)
    with pytest.raises(RewardError, match=r"refused to load 'needs_code.pt'.*weights_only=True"):
        build_reward("hpsv2", str(path), dtype="fp32")


def test_a_tower_of_the_wrong_width_for_the_aesthetic_head_is_named(comfy):
    from multireward.rewards.aesthetic import aesthetic_from_states
    from multireward.rewards.base import RewardError

    model, _, _ = hps_tiny_model_and_transform()  # a 64-wide CLIP, the head wants 768
    head = {}
    for index, (fan_in, fan_out) in zip(
        (0, 2, 4, 6, 7), ((768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)), strict=True
    ):
        head[f"layers.{index}.weight"] = torch.zeros(fan_out, fan_in)
        head[f"layers.{index}.bias"] = torch.zeros(fan_out)
    with pytest.raises(RewardError, match="64-wide embeddings but the head takes 768"):
        aesthetic_from_states(head, model.state_dict(), "fp32")


def test_aesthetic_head_without_a_tower_asks_for_the_companion_file(comfy):
    from multireward.rewards.base import RewardError
    from multireward.rewards.registry import build_reward

    path = comfy.models_dir("rewards") / "head_only.safetensors"
    sizes = [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]
    head = {f"layers.{i}.weight": torch.zeros(o, n) for i, (n, o) in zip((0, 2, 4, 6, 7), sizes, strict=True)}
    save_file(head | {k.replace("weight", "bias"): torch.zeros(v.shape[0]) for k, v in head.items()}, path)
    with pytest.raises(RewardError, match="companion_file"):
        build_reward("laion_aesthetic", str(path), dtype="fp32")


def test_imagereward_without_its_vocabulary_names_the_folder(comfy, tmp_path):
    from multireward.rewards.base import RewardError
    from multireward.rewards.imagereward import find_vocab

    with pytest.raises(RewardError, match=r"vocab.txt.*" + str(tmp_path)):
        find_vocab(str(tmp_path / "ImageReward.pt"))


# ---- bad inputs to a neural reward --------------------------------------------------------------


def tiny_hps_reward(comfy, corrupt: bool = False, manager=None):
    from multireward.rewards.clip_rewards import hpsv2_from_state

    model, _, _ = hps_tiny_model_and_transform()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if corrupt:
        state["visual.proj"].fill_(float("nan"))
    return hpsv2_from_state(state, "fp32", manager=manager)


def test_an_empty_prompt_is_refused_by_prompt_based_rewards(comfy):
    from multireward.rewards.base import RewardError

    reward = tiny_hps_reward(comfy)
    with pytest.raises(
        RewardError, match="reward 'hpsv2' scores images against a prompt, but the prompt is empty"
    ):
        reward.score(torch.rand(1, 32, 32, 3), "   ")
    assert reward.images_seen == 0


def test_nan_scores_from_a_neural_reward_name_it(comfy):
    from multireward.rewards.base import RewardError

    with pytest.raises(RewardError, match="reward 'hpsv2' gave non-finite scores"):
        tiny_hps_reward(comfy, corrupt=True).score(torch.rand(2, 32, 32, 3), "a cat")


@pytest.mark.parametrize("host", ["comfy", "torch"])
def test_chunked_scoring_equals_one_batch(comfy, monkeypatch, host):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards import model_manager

    manager = ComfyModelManager() if host == "comfy" else model_manager.TorchModelManager("cpu")
    reward = tiny_hps_reward(comfy, manager=manager)
    images = as_comfy_images(random_uint8_images(5, 32, 32, seed=21))
    whole = reward.score(images, "a cat")
    monkeypatch.setattr(model_manager, "MAX_CHUNK", 2)
    assert reward.score(images, "a cat").tolist() == pytest.approx(whole.tolist(), abs=1e-5)
    assert manager.chunk_size(torch.device("cpu"), 10**15, 8) == 1  # huge images: one at a time


def test_dtype_auto_is_fp32_on_cpu_and_the_module_is_managed_by_comfy(comfy):
    import comfy.model_management
    import comfy.model_patcher

    from multireward.comfy_adapter.reward_models import ComfyModelManager

    reward = tiny_hps_reward(comfy, manager=ComfyModelManager())
    assert reward.dtype == torch.float32
    assert isinstance(reward.handle, comfy.model_patcher.ModelPatcher)
    reward.score(torch.rand(1, 32, 32, 3), "a cat")
    assert any(loaded.model is reward.handle for loaded in comfy.model_management.current_loaded_models)


@pytest.mark.parametrize("dtype_name", ["fp16", "bf16"])
def test_half_precision_scores_stay_close_to_fp32(comfy, dtype_name):
    from multireward.rewards.clip_rewards import hpsv2_from_state

    model, _, _ = hps_tiny_model_and_transform()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = as_comfy_images(random_uint8_images(3, 40, 40, seed=23))
    full = hpsv2_from_state(state, "fp32").score(images, "a cat")
    half = hpsv2_from_state(state, dtype_name)
    assert half.dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    assert half.score(images, "a cat").tolist() == pytest.approx(full.tolist(), abs=0.05)


# ---- outside ComfyUI --------------------------------------------------------------------------------


def test_a_reward_built_outside_comfyui_scores_as_the_reward_loader_does(comfy, tmp_path):
    """build_reward by registry name, file path and device in a Python without ComfyUI on its path
    (as a Ray Serve replica would) gives the scores of Reward Loader + Reward Score in ComfyUI."""
    import json
    import subprocess
    import sys
    import textwrap

    from harness import PACK_ROOT
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from support.reward_references import TINY_EMBED, TINY_TEXT, TINY_VISION, randomize

    model = CLIP(TINY_EMBED, CLIPVisionCfg(**TINY_VISION, head_width=64), CLIPTextCfg(**TINY_TEXT))
    randomize(model, seed=3)
    path = comfy.models_dir("rewards") / "outside_comfy_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    images = as_comfy_images(random_uint8_images(3, 32, 32, seed=4))
    save_file({"images": images}, tmp_path / "images.safetensors")

    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(PACK_ROOT)!r})
        from safetensors.torch import load_file
        from rewards.registry import build_reward
        reward = build_reward("clip_score", {str(path)!r}, device="cpu", dtype="fp32")
        images = load_file({str(tmp_path / "images.safetensors")!r})["images"]
        scores = reward.score(images, "a red fox").tolist()
        comfy = [m for m in sys.modules if m.split(".")[0] in ("comfy", "folder_paths", "comfy_api")]
        print(json.dumps({{"scores": scores, "comfy_modules": comfy}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    outside = json.loads(run.stdout.strip().splitlines()[-1])
    assert outside["comfy_modules"] == []

    graph = {
        "1": {
            "class_type": "MultiRewardTest_Images",
            "inputs": {"path": str(tmp_path / "images.safetensors")},
        },
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": "clip_score", "weights_file": path.name, "dtype": "fp32"},
        },
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": "a red fox"},
        },
    }
    inside = comfy.run(graph).output_list("3", 0)
    assert outside["scores"] == pytest.approx(inside, abs=1e-5)
