"""RewardLoader and RewardScore inside a real ComfyUI."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image


def images_graph(image_node: dict, reward_name: str = "jpeg_compressibility", extra_rewards=()) -> dict:
    graph = {
        "1": image_node,
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": reward_name, "weights_file": "(none)", "dtype": "auto"},
        },
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": ""},
        },
    }
    for index, name in enumerate(extra_rewards, start=2):
        node_id = str(10 + index)
        graph[node_id] = {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": name, "weights_file": "(none)", "dtype": "auto"},
        }
        graph["3"]["inputs"][f"reward_{index}"] = [node_id, 0]
    return graph


def empty_image_node(width=64, height=64, batch=2, color=0):
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch, "color": color},
    }


def expected_jpeg_score(image: torch.Tensor) -> float:
    array = (image.numpy() * 255).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return -len(buffer.getvalue()) / 1000.0


def test_jpeg_score_matches_the_authors_definition(comfy):
    result = comfy.run(images_graph(empty_image_node(color=0x336699)))
    scores = result.output_list("3", 0)
    assert len(scores) == 2
    flat = torch.full((64, 64, 3), 0.0)
    flat[..., 0], flat[..., 1], flat[..., 2] = 0x33 / 255, 0x66 / 255, 0x99 / 255
    assert scores[0] == pytest.approx(expected_jpeg_score(flat), abs=1e-6)
    assert "jpeg_compressibility" in result.output("3", 1)
    assert result.ui["3"]["text"][0] == result.output("3", 1)


def test_busy_images_score_lower_than_flat_ones():
    from multireward.rewards.jpeg import JpegCompressibility

    reward = JpegCompressibility()
    generator = torch.Generator().manual_seed(0)
    flat = torch.full((1, 64, 64, 3), 0.5)
    noisy = torch.rand((1, 64, 64, 3), generator=generator)
    scores = reward.score(torch.cat([flat, noisy]))
    assert scores[0] > scores[1]
    assert reward.images_seen == 2


def test_several_rewards_give_a_table_per_image(comfy):
    result = comfy.run(
        images_graph(empty_image_node(color=0xFF0000, batch=3), extra_rewards=["colorfulness"])
    )
    import json

    table = json.loads(result.output("3", 2))
    assert table["rewards"] == ["jpeg_compressibility", "colorfulness"]
    assert len(table["scores"]) == 3 and all(len(row) == 2 for row in table["scores"])
    # Pure red: rg = 255, yb = 127.5, no spread; colourfulness = 0.3 * sqrt(255^2 + 127.5^2).
    assert table["scores"][0][1] == pytest.approx(0.3 * (255**2 + 127.5**2) ** 0.5, rel=1e-5)


def test_unknown_reward_name_is_refused_naming_the_input(comfy):
    result = comfy.run(images_graph(empty_image_node(), reward_name="no_such_reward"), expect_success=False)
    assert not result.success
    text = str(result.error)
    assert "reward_name" in text and "no_such_reward" in text


def test_empty_image_batch_is_a_clear_error(comfy):
    graph = images_graph({"class_type": "MultiRewardTest_EmptyImages", "inputs": {}})
    result = comfy.run(graph, expect_success=False)
    assert not result.success
    assert "empty image batch" in str(result.error)


def test_non_image_input_is_a_clear_error(comfy):
    graph = images_graph(empty_image_node())
    graph["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    graph["3"]["inputs"]["images"] = ["5", 0]
    result = comfy.run(graph, expect_success=False)
    assert not result.success
    assert "images" in str(result.error)


def test_a_failing_prompt_leaves_the_host_working(comfy):
    comfy.run(images_graph(empty_image_node(), reward_name="nope"), expect_success=False)
    result = comfy.run(images_graph(empty_image_node(color=0x101010, batch=1)))
    assert len(result.output_list("3", 0)) == 1


def test_sharpness_is_the_variance_of_the_laplacian():
    from multireward.rewards.sharpness import Sharpness

    # A vertical edge: grey 0 | 255 columns. The Laplacian is +-255 on the two columns beside the
    # edge and 0 elsewhere, over a 6-wide valid region of an 8-wide image.
    image = torch.zeros(1, 8, 8, 3)
    image[:, :, 4:, :] = 1.0
    response = torch.zeros(6, 6, dtype=torch.float64)
    response[:, 2], response[:, 3] = 255.0, -255.0
    expected = response.var(unbiased=False).item()
    assert Sharpness().score(image).item() == pytest.approx(expected, rel=1e-5)
    assert Sharpness().score(torch.full((1, 8, 8, 3), 0.3)).item() == 0.0
