"""Tiny models of real ComfyUI architectures, built at test time with random weights.

No weights can be downloaded, so every test model is made here from ComfyUI's own classes:
- `tiny_sd15()`: an SD1.5-shaped UNet (eps-prediction) with a 32-channel UNet, a 64-wide CLIP-L-
  style text encoder and a TAESD-shaped VAE, all in memory: a sampling pass takes well under a second.
- `tiny_flow()`: an SD3-shaped MMDiT (flow matching, ComfyUI's CONST model sampling) with 16
  latent channels and a TAESD-shaped VAE for 16 channels; conditioning is made directly.
- `write_taesd_files(folder, seed)`: TAESD-shaped encoder and decoder files for models/vae_approx,
  which the stock VAELoader offers as "taesd" (a cheap look-ahead decoder).
- `write_sd15_checkpoint(path)`: a stock-detectable SD1.5 checkpoint (320 channels, context 768,
  the fixed full-size CLIP-L text config, a TAESD VAE) that CheckpointLoaderSimple loads, so the
  example workflows run through the real loader.
Random weights give near-black images: tests assert shapes, finiteness, determinism and reward
movement, not looks.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

TINY_TEXT_CONFIG = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 49407,
    "hidden_act": "quick_gelu",
    "hidden_size": 64,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 1,
    "projection_dim": 64,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}


def sd15_unet_config(model_channels: int, context_dim: int) -> dict:
    """One level, one res block, one transformer, no middle block: the smallest SD1.5 shape."""
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "out_channels": 4,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "in_channels": 4,
        "model_channels": model_channels,
        "num_res_blocks": [1],
        "transformer_depth": [1],
        "channel_mult": [1],
        "transformer_depth_middle": -1,
        "use_linear_in_transformer": False,
        "context_dim": context_dim,
        "num_heads": 8,
        "num_head_channels": -1,
        "transformer_depth_output": [1, 1],
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    }


def _model_patcher(model):
    import comfy.model_management
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(
        model,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def _random_taesd(latent_channels: int, seed: int):
    import comfy.taesd.taesd

    taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    # ComfyUI's ops leave weights uninitialised: use He init so activations keep their scale.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in taesd.named_parameters():
            if name.startswith("vae_"):
                continue
            if tensor.ndim > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            else:
                tensor.zero_()
        taesd.vae_scale.fill_(1.0)
        taesd.vae_shift.fill_(0.0)
        # Calibrate the last layer to a mid-grey mean and a pixel spread of about 0.15, so decoded
        # images vary with the latent instead of saturating, and rewards have something to see.
        probe = torch.randn(1, latent_channels, 8, 8, generator=generator) * 3.0
        spread = taesd.taesd_decoder(probe).std().item()
        last = taesd.taesd_decoder[-1]
        last.weight.mul_(0.15 / max(spread, 1e-6))
        last.bias.fill_(0.5)
    return taesd


def _taesd_vae(latent_channels: int, seed: int):
    import comfy.sd

    state = {k: v.clone() for k, v in _random_taesd(latent_channels, seed).state_dict().items()}
    return comfy.sd.VAE(sd=state)


def write_taesd_files(folder: Path, seed: int, name: str = "taesd", latent_channels: int = 4) -> str:
    """`<name>_encoder.safetensors` and `<name>_decoder.safetensors` of a random TAESD-shaped model in
    `folder` (models/vae_approx), as the stock VAELoader lists and loads them; returns `name`."""
    from safetensors.torch import save_file

    taesd = _random_taesd(latent_channels, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("encoder", "decoder"):
        module = getattr(taesd, f"taesd_{part}")
        save_file(
            {k: v.contiguous() for k, v in module.state_dict().items()},
            str(folder / f"{name}_{part}.safetensors"),
        )
    return name


def _tiny_sd1_clip(seed: int):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    clip_model = functools.partial(
        comfy.sd1_clip.SD1ClipModel,
        clip_model=functools.partial(comfy.sd1_clip.SDClipModel, textmodel_json_config=TINY_TEXT_CONFIG),
    )
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, clip_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
        for parameter in clip.cond_stage_model.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
    return clip


#: What a full SD1.5 UNet has beyond sd15_unet_config's single level (four levels, a middle block).
FULL_SD15_LEVELS = {
    "num_res_blocks": [2, 2, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
}


def _randomise(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """ComfyUI builds modules with uninitialised (empty) weights: give them small random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)


@functools.cache
def tiny_sd15(seed: int = 0):
    """(MODEL, CLIP, VAE) of an SD1.5-shaped model with a 32-channel UNet, all in memory."""
    import comfy.supported_models

    config = comfy.supported_models.SD15(sd15_unet_config(model_channels=32, context_dim=64))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _randomise(model.diffusion_model, seed, std=0.02)
    return _model_patcher(model), _tiny_sd1_clip(seed + 1), _taesd_vae(4, seed + 2)


def mmdit_config(depth: int = 2, context_dim: int = 64, pooled_dim: int = 64) -> dict:
    hidden = 64 * depth
    return {
        "in_channels": 16,
        "patch_size": 2,
        "out_channels": 16,
        "depth": depth,
        "input_size": None,
        "adm_in_channels": pooled_dim,
        "context_embedder_config": {
            "target": "torch.nn.Linear",
            "params": {"in_features": context_dim, "out_features": hidden},
        },
        "num_patches": 32 * 32,
        "pos_embed_max_size": 32,
        "pos_embed_scaling_factor": None,
        "x_block_self_attn_layers": [],
    }


@functools.cache
def tiny_flow(seed: int = 0):
    """(MODEL, positive, negative, VAE) of an SD3-shaped flow-matching model (CONST sampling)."""
    import comfy.supported_models

    config = comfy.supported_models.SD3(mmdit_config())
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    _randomise(model.diffusion_model, seed, std=0.1)
    generator = torch.Generator().manual_seed(seed + 3)
    positive = [
        [
            torch.randn(1, 8, 64, generator=generator),
            {"pooled_output": torch.randn(1, 64, generator=generator)},
        ]
    ]
    negative = [
        [
            torch.randn(1, 8, 64, generator=generator),
            {"pooled_output": torch.randn(1, 64, generator=generator)},
        ]
    ]
    return _model_patcher(model), positive, negative, _taesd_vae(16, seed + 2)


def write_sd15_checkpoint(path: Path, seed: int = 0) -> Path:
    """A stock-detectable SD1.5 checkpoint: CheckpointLoaderSimple detects SD15 from its shapes."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.supported_models_base

    path = Path(path)
    if path.exists():
        return path
    config = comfy.supported_models.SD15(sd15_unet_config(model_channels=320, context_dim=768))
    config.set_inference_dtype(torch.float16, None)
    model = config.get_model({})
    _randomise(model.diffusion_model, seed, std=0.02)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        target = comfy.supported_models_base.ClipTarget(
            comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel
        )
        clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float16})
        for parameter in clip.cond_stage_model.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
    vae = _taesd_vae(4, seed + 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    comfy.sd.save_checkpoint(str(partial), _model_patcher(model), clip, vae)
    partial.rename(path)
    return path


UNET_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def random_unet_lora(
    weights, seed: int, rank: int = 4, scale: float = 0.5, convs: str = "all"
) -> dict[str, torch.Tensor]:
    """A rank-`rank` LoRA in kohya's key format (lora_unet_*.lora_down/lora_up/alpha) over a UNet's
    weights, given as (state-dict key, shape) pairs with either UNet prefix.

    Linear weights always; convs: "all" (LoCon-style: a k x k down conv, a 1 x 1 up conv), "1x1",
    or "none". Down factors are scaled by 1/sqrt(fan-in) so the delta keeps the same size at any width.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in weights:
        prefix = next((p for p in UNET_PREFIXES if key.startswith(p)), None)
        shape = tuple(shape)
        if prefix is None or not key.endswith(".weight") or len(shape) not in (2, 4):
            continue
        if len(shape) == 4 and (convs == "none" or (convs == "1x1" and shape[2:] != (1, 1))):
            continue
        name = "lora_unet_" + key[len(prefix) : -len(".weight")].replace(".", "_")
        out_features, in_features, kernel = shape[0], shape[1], shape[2:]
        down = torch.randn((rank, in_features, *kernel), generator=generator) * scale / in_features**0.5
        up = torch.randn((out_features, rank, *(1,) * len(kernel)), generator=generator) * scale
        state[f"{name}.lora_down.weight"] = down.contiguous()
        state[f"{name}.lora_up.weight"] = up.contiguous()
        state[f"{name}.alpha"] = torch.tensor(float(rank))
    return state


def write_checkpoint_lora(checkpoint: Path, path: Path, seed: int, rank: int = 4, scale: float = 0.5) -> Path:
    """A LoRA over every linear weight of a checkpoint's UNet, so example workflows that name LoRAs
    run on the tiny checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        shapes = [(key, handle.get_slice(key).get_shape()) for key in handle.keys()]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_unet_lora(shapes, seed, rank, scale, convs="none"), str(path))
    return path


def lora_slots(names: list[str], weights: list[float]) -> dict:
    """The blend nodes' lora_1..lora_4 / weight_1..weight_4 inputs, empty slots as "(none)"."""
    inputs = {}
    for slot in range(1, 5):
        inputs[f"lora_{slot}"] = names[slot - 1] if slot <= len(names) else "(none)"
        inputs[f"weight_{slot}"] = weights[slot - 1] if slot <= len(weights) else 1.0
    return inputs
