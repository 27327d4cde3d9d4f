"""The learned digits model: the committed compact weights assemble into a checkpoint that stock
CheckpointLoaderSimple loads as SD1.5, and the stock nodes draw the digit a prompt names.

Ground truth here is ComfyUI's own model classes and nodes, and load_digits itself (a
nearest-centroid classifier on its 8x8 images), never the training code's opinion of its model.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from digit_checkpoint import COMPACT_WEIGHTS, write_digit_checkpoint

DIGITS = list(range(10))
STEPS = 8


@pytest.fixture(scope="session")
def load_digits_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.images, dtype=torch.float32), torch.tensor(digits.target)


def loader_graph(checkpoint: str) -> dict:
    """The stock loader, and (a graph needs an output) a decoded empty latent previewed."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "e": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "v": {"class_type": "VAEDecode", "inputs": {"samples": ["e", 0], "vae": ["1", 2]}},
        "o": {"class_type": "PreviewImage", "inputs": {"images": ["v", 0]}},
    }


@pytest.fixture(scope="session")
def loaded(comfy, digit_checkpoint):
    """(MODEL, CLIP, VAE) as the stock loader returns them."""
    result = comfy.run(loader_graph(digit_checkpoint))
    return tuple(result.output("1", slot) for slot in range(3))


def digits_graph(checkpoint: str, digits: list[int], seed: int) -> dict:
    """One stock loader, and per digit CLIPTextEncode -> KSampler -> VAEDecode at 64x64."""
    graph = loader_graph(checkpoint)
    graph["2"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}
    graph["3"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    for digit in digits:
        prompt, sampler, decode = f"p{digit}", f"s{digit}", f"d{digit}"
        graph[prompt] = {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": f"a handwritten digit {digit}", "clip": ["1", 1]},
        }
        graph[sampler] = {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": [prompt, 0],
                "negative": ["2", 0],
                "latent_image": ["3", 0],
                "seed": seed,
                "steps": STEPS,
                "cfg": 4.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        }
        graph[decode] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": ["1", 2]}}
        graph[f"o{digit}"] = {"class_type": "PreviewImage", "inputs": {"images": [decode, 0]}}
    return graph


def test_assembly_is_deterministic_and_keeps_the_stored_weights(digit_checkpoint_file, tmp_path):
    from safetensors import safe_open
    from support.digit_model.compact import file_sha256

    again = write_digit_checkpoint(tmp_path)
    assert file_sha256(again) == file_sha256(digit_checkpoint_file)
    with (
        safe_open(str(COMPACT_WEIGHTS), framework="pt") as compact,
        safe_open(str(again), framework="pt") as full,
    ):
        key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
        narrow = compact.get_tensor(key)
        assembled = full.get_tensor(key)
    rows, cols = narrow.shape
    assert torch.equal(assembled[:rows, :cols], narrow)
    assert not assembled[rows:].any() and not assembled[:, cols:].any()
    assert COMPACT_WEIGHTS.stat().st_size < 5_000_000


def test_stock_loader_detects_sd15_with_a_taesd_vae(loaded):
    from comfy.supported_models import SD15
    from comfy.taesd.taesd import TAESD

    model, clip, vae = loaded
    assert type(model.model.model_config) is SD15
    assert isinstance(vae.first_stage_model, TAESD)
    assert clip.cond_stage_model.clip_l.transformer.num_layers == 12


def test_narrow_model_computes_what_comfyui_computes(loaded):
    """The trained narrow UNet and text encoder give ComfyUI's full-size outputs on the
    assembled weights, so the zero padding changes nothing."""
    from comfy.model_management import load_models_gpu
    from support.digit_model.narrow_sd15 import load_narrow

    model, clip, _ = loaded
    tokens = clip.tokenize("a handwritten digit 3")
    context = clip.encode_from_tokens(tokens)
    load_models_gpu([model], force_full_load=True)
    full_unet = model.model.diffusion_model
    unet, text = load_narrow(COMPACT_WEIGHTS)
    narrow_context = text(torch.tensor([[token for token, _ in tokens["l"][0]]]))
    width = narrow_context.shape[-1]
    torch.testing.assert_close(context[..., :width], narrow_context, atol=1e-4, rtol=1e-4)
    assert not context[..., width:].any()

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([20.0, 700.0])
    with torch.no_grad():
        dtype = next(full_unet.parameters()).dtype
        full = full_unet(x.to(dtype), timesteps, context=context.expand(2, -1, -1).to(dtype)).float()
        narrow = unet(x, timesteps, narrow_context.expand(2, -1, -1))
    assert full.abs().max() > 0.1
    torch.testing.assert_close(full, narrow, atol=1e-3, rtol=1e-3)


def bilinear_x8_paper_beyond_the_edge(ink: torch.Tensor) -> torch.Tensor:
    """torch's bilinear x2, three times, with zero ink (paper) beyond the border."""
    image = ink.unsqueeze(1)
    for _ in range(3):
        padded = F.pad(image, (1, 1, 1, 1))
        image = F.interpolate(padded, scale_factor=2, mode="bilinear", align_corners=False)[..., 2:-2, 2:-2]
    return image.squeeze(1)


def test_vae_renders_load_digits_and_encodes_them_back(loaded, load_digits_data):
    """Decoding a digit's latent is bilinear upscaling of its 8x8 ink; encoding is the 8x8
    block mean (ComfyUI's VAE node paths: decode/encode on the loaded VAE)."""
    from support.digit_model.codec import SD15_LATENT_SCALE, ink_to_latent

    images, _ = load_digits_data
    ink = images[:20] / 16.0
    vae = loaded[2]
    with torch.no_grad():
        decoded = vae.decode(ink_to_latent(ink) / SD15_LATENT_SCALE)
        encoded = vae.encode(decoded) * SD15_LATENT_SCALE
    assert decoded.shape == (20, 64, 64, 3)
    expected = 1.0 - bilinear_x8_paper_beyond_the_edge(ink)
    for channel in range(3):
        torch.testing.assert_close(decoded[..., channel], expected, atol=5e-3, rtol=0)
    block_ink = F.avg_pool2d(1.0 - decoded.mean(dim=-1).unsqueeze(1), 8).squeeze(1)
    torch.testing.assert_close(encoded[:, 0], 2 * block_ink - 1, atol=5e-3, rtol=0)
    assert encoded[:, 1:].abs().max() < 5e-3  # grey: no colour


def test_prompted_digits_are_recognised(comfy, digit_checkpoint, load_digits_data):
    """Stock nodes, 64x64, 8 Euler steps: a nearest-centroid classifier on load_digits reads the
    digit each prompt names, for most digits."""
    from support.digit_model.recognise import class_centroids, image_to_ink, nearest_centroid

    result = comfy.run(digits_graph(digit_checkpoint, DIGITS, seed=0))
    images = torch.cat([result.output(f"d{digit}") for digit in DIGITS])
    predicted = nearest_centroid(image_to_ink(images), class_centroids(*load_digits_data))
    correct = [digit for digit in DIGITS if predicted[digit] == digit]
    assert len(correct) >= 8, f"recognised {correct}, read {predicted.tolist()}"
