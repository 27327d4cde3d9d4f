"""Each neural reward, loaded from tiny random weights in the real checkpoint's key layout, scores
the same images as an independent reference (the published code, or its formula) within 1e-4."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support.reward_references import (
    COMFY_CLIP_TOKENIZER,
    TINY_EMBED,
    ImageRewardReference,
    as_comfy_images,
    as_pil,
    hps_tiny_model_and_transform,
    image_reward_blip,
    image_reward_checkpoint_state,
    imagereward_preprocess,
    random_uint8_images,
    randomize,
    write_tiny_bert_vocab,
)

PROMPT = "a photo of a red house on the hill"
TOLERANCE = 1e-4


def build(name: str, path, companion=None):
    from multireward.comfy_adapter.reward_models import ComfyModelManager
    from multireward.rewards.registry import build_reward

    companion = str(companion) if companion is not None else None
    return build_reward(name, str(path), dtype="fp32", companion_path=companion, manager=ComfyModelManager())


def contiguous(state: dict) -> dict:
    return {key: value.detach().clone().contiguous() for key, value in state.items()}


# ---- HPSv2 / HPSv2.1: the hpsv2 package's own model, transform and tokenizer ----------------------


def hps_reference_scores(model, preprocess_val, tokenizer, arrays, prompt):
    """img_score.score(): preprocess_val(PIL) -> model(image, text) -> diagonal of the logits."""
    scores = []
    with torch.no_grad():
        for array in arrays:
            image = preprocess_val(as_pil(array)).unsqueeze(0)
            outputs = model(image, tokenizer([prompt]))
            logits = outputs["image_features"] @ outputs["text_features"].T
            scores.append(torch.diagonal(logits)[0].item())
    return scores


@pytest.mark.parametrize("name", ["hpsv2", "hpsv2.1"])
def test_hpsv2_matches_the_hpsv2_package(comfy, name):
    model, preprocess_val, tokenizer = hps_tiny_model_and_transform()
    path = comfy.models_dir("rewards") / f"tiny_{name}_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, path)  # the layout of HPS_v2_compressed.pt
    reward = build(name, path)
    # The model's own size, a larger non-square size (resize + black padding) and a smaller one.
    for height, width in ((32, 32), (45, 70), (20, 16)):
        arrays = random_uint8_images(3, height, width, seed=height)
        ours = reward.score(as_comfy_images(arrays), PROMPT)
        expected = hps_reference_scores(model, preprocess_val, tokenizer, arrays, PROMPT)
        assert ours.tolist() == pytest.approx(expected, abs=TOLERANCE)
    assert float(ours.std()) > 1e-3, "scores should differ between images"
    long_prompt = " ".join([PROMPT] * 20)  # beyond 77 tokens: truncated, end token kept
    arrays = random_uint8_images(2, 32, 32, seed=99)
    expected = hps_reference_scores(model, preprocess_val, tokenizer, arrays, long_prompt)
    assert reward.score(as_comfy_images(arrays), long_prompt).tolist() == pytest.approx(
        expected, abs=TOLERANCE
    )


# ---- PickScore: transformers CLIPModel, as in PickScore's model card ----------------------------


def tiny_pickscore_model():
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "vocab_size": 49408,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
        },
        vision_config={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
            "hidden_act": "gelu",
        },
        projection_dim=TINY_EMBED,
    )
    model = CLIPModel(config)
    randomize(model, seed=1)
    return model.eval()


def pickscore_reference_scores(model, arrays, prompt):
    """PickScore's model card: processor -> normalised features -> logit_scale.exp() * dot."""
    from transformers import CLIPImageProcessor, CLIPTokenizer

    size = model.config.vision_config.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(COMFY_CLIP_TOKENIZER))
    pixels = image_processor([as_pil(a) for a in arrays], return_tensors="pt")["pixel_values"]
    text = tokenizer(prompt, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixels)
        image_embs = model.visual_projection(vision.pooler_output)
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_out = model.text_model(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
        text_embs = model.text_projection(text_out.pooler_output)
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        return (model.logit_scale.exp() * (text_embs @ image_embs.T)[0]).tolist()


def test_pickscore_matches_transformers_clip(comfy):
    model = tiny_pickscore_model()
    folder = comfy.models_dir("rewards") / "tiny_PickScore_v1"
    folder.mkdir(exist_ok=True)
    save_file(contiguous(model.state_dict()), folder / "model.safetensors")
    model.config.to_json_file(folder / "config.json")
    reward = build("pickscore", folder / "model.safetensors")
    arrays = random_uint8_images(4, 32, 32, seed=5)
    ours = reward.score(as_comfy_images(arrays), PROMPT)
    assert ours.tolist() == pytest.approx(pickscore_reference_scores(model, arrays, PROMPT), abs=TOLERANCE)
    assert float(ours.std()) > 1e-3


# ---- CLIP score: an OpenCLIP checkpoint, open_clip's eval transform, torchmetrics' formula -------


def test_clip_score_matches_open_clip_and_the_torchmetrics_formula(comfy):
    model, _, tokenizer = hps_tiny_model_and_transform()
    path = comfy.models_dir("rewards") / "tiny_open_clip_model.safetensors"
    save_file(contiguous(model.state_dict()), path)
    reward = build("clip_score", path)
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    transform = Compose(
        [
            Resize(32, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(32),
            ToTensor(),
            Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    arrays = random_uint8_images(4, 32, 32, seed=7)
    with torch.no_grad():
        image_features = model.encode_image(
            torch.stack([transform(as_pil(a)) for a in arrays]), normalize=True
        )
        text_features = model.encode_text(tokenizer([PROMPT]), normalize=True)
        expected = (100.0 * (image_features @ text_features.T).squeeze(-1)).clamp(min=0).tolist()
    ours = reward.score(as_comfy_images(arrays), PROMPT)
    assert ours.tolist() == pytest.approx(expected, abs=TOLERANCE)


# ---- LAION aesthetic: simple_inference.py with an OpenAI-style CLIP (QuickGELU) -----------------


def tiny_openai_vision_tower():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=512,
        num_attention_heads=2,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    model = CLIPVisionModelWithProjection(config)
    randomize(model, seed=2)
    return model.eval()


def published_aesthetic_mlp():
    """improved-aesthetic-predictor's MLP(768), copied from simple_inference.py."""
    mlp = torch.nn.Sequential(
        torch.nn.Linear(768, 1024),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(128, 64),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1),
    )
    randomize(mlp, seed=3)
    return mlp.eval()


def aesthetic_reference_scores(tower, mlp, arrays):
    """clip.load's preprocess, encode_image, numpy L2 normalisation, then the MLP."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    preprocess = Compose(
        [
            Resize(32, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(32),
            ToTensor(),
            Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    with torch.no_grad():
        features = tower(
            pixel_values=torch.stack([preprocess(as_pil(a)) for a in arrays])
        ).image_embeds.numpy()
        l2 = np.atleast_1d(np.linalg.norm(features, 2, -1))
        l2[l2 == 0] = 1
        normalized = features / np.expand_dims(l2, -1)
        return mlp(torch.from_numpy(normalized).float()).squeeze(-1).tolist()


def test_laion_aesthetic_with_a_companion_clip_file_matches_the_published_pipeline(comfy):
    tower, mlp = tiny_openai_vision_tower(), published_aesthetic_mlp()
    folder = comfy.models_dir("rewards")
    head_path = folder / "tiny_sac+logos+ava1-l14-linearMSE.pth"
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, head_path)
    tower_path = folder / "tiny_clip_vision_l.safetensors"
    save_file(contiguous(tower.state_dict()), tower_path)
    reward = build("laion_aesthetic", head_path, tower_path)
    arrays = random_uint8_images(4, 32, 32, seed=9)
    ours = reward.score(as_comfy_images(arrays), "")
    assert ours.tolist() == pytest.approx(aesthetic_reference_scores(tower, mlp, arrays), abs=TOLERANCE)
    assert float(ours.std()) > 1e-4


def test_laion_aesthetic_from_one_combined_file(comfy):
    tower, mlp = tiny_openai_vision_tower(), published_aesthetic_mlp()
    combined = {f"layers.{k}": v for k, v in mlp.state_dict().items()} | contiguous(tower.state_dict())
    path = comfy.models_dir("rewards") / "tiny_aesthetic_combined.safetensors"
    save_file(contiguous(combined), path)
    arrays = random_uint8_images(2, 32, 32, seed=11)
    ours = build("laion_aesthetic", path).score(as_comfy_images(arrays))
    assert ours.tolist() == pytest.approx(aesthetic_reference_scores(tower, mlp, arrays), abs=TOLERANCE)


def test_laion_aesthetic_with_an_openai_layout_tower_uses_quick_gelu_like_openai_clip(comfy):
    """The tower in OpenAI/OpenCLIP layout (visual.*), against hpsv2's open_clip with QuickGELU."""
    clip_model, _, _ = hps_tiny_model_and_transform(quick_gelu=True, embed_dim=768)
    mlp = published_aesthetic_mlp()
    tower = {k: v for k, v in clip_model.state_dict().items() if k.startswith("visual.")}
    path = comfy.models_dir("rewards") / "tiny_aesthetic_openai_layout.safetensors"
    save_file(contiguous({f"layers.{k}": v for k, v in mlp.state_dict().items()} | tower), path)
    arrays = random_uint8_images(3, 32, 32, seed=17)
    ours = build("laion_aesthetic", path).score(as_comfy_images(arrays))

    class EncodeImage(torch.nn.Module):  # what clip.load's model.encode_image gives
        def forward(self, pixel_values):
            return types.SimpleNamespace(image_embeds=clip_model.encode_image(pixel_values))

    expected = aesthetic_reference_scores(EncodeImage(), mlp, arrays)
    assert ours.tolist() == pytest.approx(expected, abs=TOLERANCE)


# ---- ImageReward: the package's BLIP ViT and BERT, and ImageReward.score() -----------------------


def test_imagereward_matches_the_image_reward_package(comfy):
    from transformers import BertTokenizer

    vit, med = image_reward_blip()
    folder = comfy.models_dir("rewards") / "tiny_ImageReward"
    folder.mkdir(exist_ok=True)
    vocab_size = write_tiny_bert_vocab(folder / "vocab.txt")
    reference = ImageRewardReference(vit, med, vocab_size)
    torch.save(image_reward_checkpoint_state(reference), folder / "ImageReward.pt")
    reward = build("imagereward", folder / "ImageReward.pt")

    tokenizer = BertTokenizer.from_pretrained(str(folder))  # blip.init_tokenizer(), from a local folder
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    text = tokenizer(PROMPT, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    preprocess = imagereward_preprocess(32)
    arrays = random_uint8_images(3, 32, 32, seed=13)
    with torch.no_grad():
        expected = [
            reference.score(preprocess(as_pil(a)).unsqueeze(0), text.input_ids, text.attention_mask).item()
            for a in arrays
        ]
    ours = reward.score(as_comfy_images(arrays), PROMPT)
    assert ours.tolist() == pytest.approx(expected, abs=TOLERANCE)
    assert float(ours.std()) > 1e-4
