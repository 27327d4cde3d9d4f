"""Blends under every guider: DualCFGGuider, PerpNegGuider and the extra model passes of SAG, PAG and
skip-layer guidance, all stock ComfyUI nodes.

Each guider runs (a) on the base model, (b) on KL Knob at lambda 2, (c) on a reference built here:
the base model with a CALC_COND_BATCH wrapper that computes D_pre + 2 (D_lora - D_pre) on every
model call from an independent copy of the model with the LoRA merged by ComfyUI's stock LoRA code.
KL Knob at lambda 2 must differ from (a) and equal (c); at lambda 1 it must equal the stock
LoraLoader bit for bit, and so must the mixer with a one-hot weight.
"""

from __future__ import annotations

import pytest
import tiny_models
import torch
from conftest import FLOW_LATENT, custom_advanced_nodes, independent_lora_model, lora_slots

BASE = ["1", 0]
# An output node that needs no decode: the tests compare latents, which fix the images.
SAVE = {"class_type": "SaveLatent", "inputs": {"samples": ["out", 0], "filename_prefix": "blend_guider"}}
REFERENCE_KEY = "multireward_test_reference_blend"


class TinySD15WithMiddle:
    """The tiny SD1.5 model plus a middle block: SAG and PAG patch the middle block's attention."""

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def load(self):
        return _tiny_sd15_with_middle()


_middle_model = None


def _tiny_sd15_with_middle():
    import comfy.supported_models

    global _middle_model
    if _middle_model is None:
        config = comfy.supported_models.SD15(
            {**tiny_models.sd15_unet_config(model_channels=32, context_dim=64), "transformer_depth_middle": 1}
        )
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({})
        tiny_models._randomise(model.diffusion_model, 0, std=0.02)
        _middle_model = tiny_models._model_patcher(model)
    _, clip, vae = tiny_models.tiny_sd15(0)
    return _middle_model, clip, vae


class ReferenceKnob:
    """The base MODEL with D = D_pre + lambda (D_lora - D_pre) on every calc_cond_batch call,
    D_lora from an independent model copy with the LoRA merged by ComfyUI's stock LoRA path."""

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "lora_name": ("STRING", {"default": ""}),
                "blend_lambda": ("FLOAT", {"default": 2.0}),
            }
        }

    def make(self, model, lora_name, blend_lambda):
        import comfy.patcher_extension

        lora_model = independent_lora_model(HOST, lora_name, base=model)

        def reference(executor, base_model, conds, x, timestep, model_options):
            base = executor(base_model, conds, x, timestep, model_options)
            lora = executor(lora_model, conds, x, timestep, model_options)
            return [
                b if c is None else b + blend_lambda * (d - b)
                for b, d, c in zip(base, lora, conds, strict=True)
            ]

        patched = model.clone()
        patched.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, REFERENCE_KEY, reference
        )
        return (patched,)


HOST = None


@pytest.fixture(scope="module")
def host(comfy, blend_loras, flow_loras):
    global HOST
    HOST = comfy
    comfy.nodes.NODE_CLASS_MAPPINGS["MultiRewardTest_TinySD15Middle"] = TinySD15WithMiddle
    comfy.nodes.NODE_CLASS_MAPPINGS["MultiRewardTest_ReferenceKnob"] = ReferenceKnob
    return comfy


# --- graphs: the model under test is node "m" (absent: the base model itself) -------------------


def _text(text: str, clip: list) -> dict:
    return {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": clip}}


def _custom_advanced(guider: dict, model_source: list, latent: dict) -> dict:
    return custom_advanced_nodes(guider, model_source, latent, out="out")


SD15_LATENT = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}


def _sd15_prompts() -> dict:
    return {
        "1": {"class_type": "MultiRewardTest_TinySD15Middle", "inputs": {}},
        "pos": _text("a red apple", ["1", 1]),
        "pos2": _text("a green pear", ["1", 1]),
        "neg": _text("blurry", ["1", 1]),
        "empty": _text("", ["1", 1]),
    }


def dual_cfg(model: list) -> dict:
    guider = {
        "class_type": "DualCFGGuider",
        "inputs": {
            "model": model,
            "cond1": ["pos", 0],
            "cond2": ["pos2", 0],
            "negative": ["neg", 0],
            "cfg_conds": 5.0,
            "cfg_cond2_negative": 3.0,
            "style": "regular",
        },
    }
    return {**_sd15_prompts(), **_custom_advanced(guider, model, SD15_LATENT)}


def perp_neg(model: list) -> dict:
    guider = {
        "class_type": "PerpNegGuider",
        "inputs": {
            "model": model,
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "empty_conditioning": ["empty", 0],
            "cfg": 5.0,
            "neg_scale": 1.0,
        },
    }
    return {**_sd15_prompts(), **_custom_advanced(guider, model, SD15_LATENT)}


def _ksampler_after(patch: dict, model: list) -> dict:
    """`patch` (a node taking the model) applied after the model under test, then the stock KSampler."""
    return {
        **_sd15_prompts(),
        "patch": {**patch, "inputs": {**patch["inputs"], "model": model}},
        "lat": SD15_LATENT,
        "out": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["patch", 0],
                "seed": 7,
                "steps": 4,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": ["lat", 0],
                "denoise": 1.0,
            },
        },
    }


def sag(model: list) -> dict:
    return _ksampler_after(
        {"class_type": "SelfAttentionGuidance", "inputs": {"scale": 0.8, "blur_sigma": 2.0}}, model
    )


def pag(model: list) -> dict:
    return _ksampler_after({"class_type": "PerturbedAttentionGuidance", "inputs": {"scale": 3.0}}, model)


def _flow_skip_layer(patch: dict, model: list) -> dict:
    guider = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["patch", 0], "positive": ["f", 1], "negative": ["f", 2], "cfg": 4.0},
    }
    return {
        "f": {"class_type": "MultiRewardTest_TinyFlow", "inputs": {"seed": 0}},
        "patch": {**patch, "inputs": {**patch["inputs"], "model": model}},
        **_custom_advanced(guider, ["patch", 0], FLOW_LATENT),
    }


def slg(model: list) -> dict:
    skip = {
        "class_type": "SkipLayerGuidanceDiT",
        "inputs": {
            "double_layers": "1",
            "single_layers": "",
            "scale": 3.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "rescaling_scale": 0.0,
        },
    }
    return _flow_skip_layer(skip, model)


def slg_simple(model: list) -> dict:
    """SkipLayerGuidanceDiTSimple replaces the model's calc_cond_batch function with its own."""
    skip = {
        "class_type": "SkipLayerGuidanceDiTSimple",
        "inputs": {"double_layers": "1", "single_layers": "", "start_percent": 0.0, "end_percent": 1.0},
    }
    return _flow_skip_layer(skip, model)


GUIDED = {"DualCFGGuider": dual_cfg, "PerpNegGuider": perp_neg, "SAG": sag, "PAG": pag, "SLG": slg}
GUIDED["SLG simple"] = slg_simple
FLOW = {"SLG", "SLG simple"}


def _model_nodes(kind: str, lora: str, base: list, blend_lambda: float = 2.0) -> dict:
    inputs = {"model": base}
    if kind == "knob":
        return {
            "m": {
                "class_type": "MultiReward_KLKnob",
                "inputs": {**inputs, "lora_name": lora, "blend_lambda": blend_lambda},
            }
        }
    if kind == "reference":
        return {
            "m": {
                "class_type": "MultiRewardTest_ReferenceKnob",
                "inputs": {**inputs, "lora_name": lora, "blend_lambda": blend_lambda},
            }
        }
    if kind == "stock":
        return {
            "m": {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {**inputs, "lora_name": lora, "strength_model": 1.0},
            }
        }
    raise ValueError(kind)


def _latent(host, guided: str, kind: str | None, lora: str, **options) -> torch.Tensor:
    base = ["f", 0] if guided in FLOW else BASE
    nodes = _model_nodes(kind, lora, base, **options) if kind else {}
    graph = GUIDED[guided](["m", 0] if kind else base)
    graph.update(nodes)
    graph["save"] = SAVE
    return host.run(graph).output("out", 0)["samples"]


def _lora(guided: str, blend_loras, flow_loras) -> str:
    return flow_loras[0] if guided in FLOW else blend_loras.a


@pytest.mark.parametrize("guided", list(GUIDED))
def test_klknob_lambda_two_is_the_reference_blend_under_the_guider(host, blend_loras, flow_loras, guided):
    lora = _lora(guided, blend_loras, flow_loras)
    knob = _latent(host, guided, "knob", lora)
    reference = _latent(host, guided, "reference", lora)
    base = _latent(host, guided, None, lora)
    assert not torch.allclose(knob, base, atol=1e-3), "the blend was not applied"
    torch.testing.assert_close(knob, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("guided", list(GUIDED))
def test_klknob_lambda_one_is_the_stock_lora_loader_under_the_guider(host, blend_loras, flow_loras, guided):
    lora = _lora(guided, blend_loras, flow_loras)
    knob = _latent(host, guided, "knob", lora, blend_lambda=1.0)
    assert torch.equal(knob, _latent(host, guided, "stock", lora))


def test_one_hot_mixer_and_blend_are_the_stock_lora_under_perp_neg(host, blend_loras):
    stock = _latent(host, "PerpNegGuider", "stock", blend_loras.b)
    for class_type in ("MultiReward_LoRAStochasticMixer", "MultiReward_DiffusionBlend"):
        inputs = {
            "model": BASE,
            **lora_slots([blend_loras.a, blend_loras.b], [0.0, 1.0]),
            "blend_lambda": 1.0,
        }
        inputs.update({"seed": 0} if "Mixer" in class_type else {"normalise_weights": True})
        graph = perp_neg(["m", 0])
        graph["m"] = {"class_type": class_type, "inputs": inputs}
        graph["save"] = SAVE
        assert torch.equal(host.run(graph).output("out", 0)["samples"], stock), class_type
