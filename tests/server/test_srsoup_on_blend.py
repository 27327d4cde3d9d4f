"""SRSoup on a KL Knob model through a real server: the bundled example, and the blend really sampled.

Ground truth: at lambda 1 the KL Knob model is exactly the LoRA model, so SRSoup on it must give the
latents SRSoup gives on the stock LoraLoaderModelOnly's model from the same seed.
"""

from __future__ import annotations

import json

import pytest
import test_example_workflows
import torch
from digit_checkpoint import CHECKPOINT_NAME
from harness import PACK_ROOT
from run_example import DIGIT_SETTINGS, set_widgets
from server_harness import error_message
from test_example_workflows import TEST_SETTINGS
from workflows import replace_widget, ui_to_api

from example_workflows import LORA_A

pytestmark = pytest.mark.server

SRSOUP = "MultiReward_SRSoupKSampler"

#: The examples' server: the digits checkpoint, the two reward LoRAs.
server = test_example_workflows.server


def example_graph(server) -> dict:
    """The bundled srsoup_on_kl_knob example as the frontend queues it, on the digits checkpoint."""
    workflow = json.loads((PACK_ROOT / "example_workflows" / "srsoup_on_kl_knob.json").read_text())
    replace_widget(workflow, "CheckpointLoaderSimple", "ckpt_name", CHECKPOINT_NAME, server.object_info)
    set_widgets(workflow, server.object_info, {**DIGIT_SETTINGS, **TEST_SETTINGS})
    return ui_to_api(workflow, server.object_info)


def node_of(graph: dict, class_type: str) -> str:
    (node_id,) = [key for key, node in graph.items() if node["class_type"] == class_type]
    return node_id


def saved_latent(server, entry: dict, node_id: str) -> torch.Tensor:
    from safetensors.torch import load_file

    saved = entry["outputs"][node_id]["latents"][0]
    return load_file(server.base_dir / "output" / saved["subfolder"] / saved["filename"])["latent_tensor"]


def test_the_example_samples_the_blend_and_reports_what_was_blended_and_what_was_guided(server):
    """The example as bundled (KL Knob at lambda 1.5), and beside it the same SRSoup on the knob at
    lambda 1 and on the stock LoraLoaderModelOnly's model at strength 1."""
    graph = example_graph(server)
    knob, sampler = node_of(graph, "MultiReward_KLKnob"), node_of(graph, SRSOUP)
    graph["90"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": graph[knob]["inputs"]["model"], "lora_name": LORA_A, "strength_model": 1.0},
    }
    graph["91"] = {**graph[sampler], "inputs": {**graph[sampler]["inputs"], "model": ["90", 0]}}
    graph["92"] = {
        "class_type": "MultiReward_KLKnob",
        "inputs": {**graph[knob]["inputs"], "blend_lambda": 1.0},
    }
    graph["93"] = {**graph[sampler], "inputs": {**graph[sampler]["inputs"], "model": ["92", 0]}}
    for source, save in ((sampler, "94"), ("91", "95"), ("93", "96")):
        graph[save] = {
            "class_type": "SaveLatent",
            "inputs": {"samples": [source, 0], "filename_prefix": f"blend/{save}"},
        }
    entry = server.run(graph, timeout=900)
    assert entry["status"]["status_str"] == "success", error_message(entry)

    knob_at_1_5, stock_lora, knob_at_1 = (saved_latent(server, entry, node) for node in ("94", "95", "96"))
    assert torch.allclose(knob_at_1, stock_lora, atol=1e-4), (knob_at_1 - stock_lora).abs().max()
    assert (knob_at_1_5 - stock_lora).abs().max() > 1e-2

    saved = entry["outputs"][node_of(graph, "MultiReward_SaveReport")]["reports"][0]
    report = json.loads((server.base_dir / "output" / saved["subfolder"] / saved["filename"]).read_text())
    assert report["blended_model"] == {
        "node": "KLKnob",
        "loras": [LORA_A],
        "coefficients": [1.5],
        "base_model_pass": True,
    }
    assert report["rewards"] == ["jpeg_compressibility", "sharpness"]
    summary = entry["outputs"][sampler]["text"][0]
    assert f"blended model (KLKnob): D = D_pre + 1.5 (D[{LORA_A}] - D_pre)" in summary
    assert "guided on top by SRSoup with: jpeg_compressibility, sharpness" in summary
    assert "blended model" not in entry["outputs"]["91"]["text"][0]  # the stock LoRA model is no blend
