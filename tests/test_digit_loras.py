"""The digits model's LoRA files (scripts/make_digit_loras.py, used by bench/bench_blend_digits.py)
are in the assembled checkpoint's full-size key layout: ComfyUI's stock LoraLoaderModelOnly applies
every factor, and the full UNet it patches computes what the narrow UNet with the LoRA computes."""

from __future__ import annotations

import torch
from digit_checkpoint import COMPACT_WEIGHTS
from make_digit_loras import add_loras, full_size_lora

LORA_FILE = "test_digits_layout.safetensors"


def test_stock_lora_loader_applies_the_full_size_lora_as_the_narrow_model_does(comfy, digit_checkpoint):
    import nodes
    from comfy.model_management import load_models_gpu
    from safetensors.torch import save_file
    from support.digit_model.narrow_sd15 import load_narrow

    unet, text = load_narrow(COMPACT_WEIGHTS)
    loras = add_loras(unet, rank=2, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a fine-tune moves the up factors off zero; any values test the layout
        for lora in loras.values():
            lora.up.copy_(torch.randn(lora.up.shape, generator=generator) * 0.05)
    state = full_size_lora(loras, COMPACT_WEIGHTS)
    save_file(state, str(comfy.models_dir("loras") / LORA_FILE))

    model, clip = nodes.CheckpointLoaderSimple().load_checkpoint(digit_checkpoint)[:2]
    patched = nodes.LoraLoaderModelOnly().load_lora_model_only(model, LORA_FILE, 1.0)[0]
    # every LoRA weight names a model weight (ComfyUI logs and skips keys it cannot place)
    assert len(patched.patches) == len(loras)

    tokens = clip.tokenize("a handwritten digit 3")
    context = clip.encode_from_tokens(tokens)
    narrow_context = text(torch.tensor([[token for token, _ in tokens["l"][0]]])).detach()
    x = torch.randn(2, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([20.0, 700.0])

    def full_output(patcher):
        load_models_gpu([patcher], force_full_load=True)
        full_unet = patcher.model.diffusion_model
        dtype = next(full_unet.parameters()).dtype
        with torch.no_grad():
            return full_unet(x.to(dtype), timesteps, context=context.expand(2, -1, -1).to(dtype)).float()

    base = full_output(model)
    with_lora = full_output(patched)
    load_models_gpu([model], force_full_load=True)  # unpatched again for later tests
    with torch.no_grad():
        narrow = unet(x, timesteps, narrow_context.expand(2, -1, -1))
    assert (with_lora - base).abs().max() > 0.05  # the LoRA changes the model's output
    torch.testing.assert_close(with_lora, narrow, atol=2e-3, rtol=2e-3)
