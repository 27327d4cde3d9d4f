"""The Pareto plot, the labelled grid and the report saver."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from support.srsoup_graphs import srsoup_graph

from multireward.plots.pareto_plot import FRONT, FrontData, labelled_grid, pareto_plot


def report(scores, weights=None):
    body = {"rewards": [f"r{i}" for i in range(len(scores[0]))], "scores": scores}
    if weights is not None:
        body["weights"] = weights
    return body


def red_pixels(picture) -> int:
    pixels = torch.from_numpy(np.asarray(picture).reshape(-1, 3).astype("int64"))
    return int(((pixels[:, 0] == FRONT[0]) & (pixels[:, 1] == FRONT[1]) & (pixels[:, 2] == FRONT[2])).sum())


def test_two_rewards_draw_one_panel_with_the_front_in_red():
    data = FrontData.from_report(
        report([[0.0, 1.0], [0.5, 0.6], [1.0, 0.0], [0.2, 0.2]], [[0, 1], [0.5, 0.5], [1, 0], [0.3, 0.7]])
    )
    assert data.labels[1] == "0.5/0.5"
    picture = pareto_plot(data, size=400)
    assert picture.size == (400, 470)
    # The hypervolume is computed when the input (a RewardScore table) has none.
    assert data.hypervolume > 0
    assert red_pixels(picture) > 50


def test_a_dominated_point_alone_draws_no_front_line():
    only_dominated = FrontData.from_report(report([[0.0, 0.0], [1.0, 1.0]]))
    single = pareto_plot(only_dominated, size=300)
    three = FrontData.from_report(report([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]))
    assert red_pixels(pareto_plot(three, size=300)) > red_pixels(single)


def test_thumbnails_stay_inside_the_plotting_area():
    """Thumbnails of points at the corners of the range never cover the axes' numbers or names."""
    data = FrontData.from_report(report([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]))
    green = torch.zeros(3, 32, 32, 3)
    green[..., 1] = 1.0
    picture = np.asarray(pareto_plot(data, size=400, thumbnails=green)).astype("int64")
    is_green = (picture[..., 0] == 0) & (picture[..., 1] == 255) & (picture[..., 2] == 0)
    rows, columns = np.nonzero(is_green)
    assert len(rows) >= 0.8 * 3 * (400 // 12) ** 2  # all three drawn (points and labels go on top)
    # The frame of the one panel (Panel.frame with the default margin, below the 70-pixel legend).
    left, top, right, bottom = 60, 70 + 20, 400 - 20, 70 + 400 - 60
    assert columns.min() > left and columns.max() < right
    assert rows.min() > top and rows.max() < bottom


def test_three_rewards_give_a_pairwise_matrix():
    data = FrontData.from_report(report([[0.0, 1.0, 0.2], [1.0, 0.0, 0.5], [0.4, 0.4, 0.9]]))
    assert pareto_plot(data, size=256).size == (3 * 256, 256 + 70)


def test_labelled_grid_places_every_image():
    images = torch.rand(5, 32, 48, 3)
    grid = labelled_grid(images, ["a", "b", "c", "d", "e"], columns=3)
    assert grid.size == (3 * 48, 2 * (32 + 18))


def test_pareto_front_and_save_report_in_comfyui(comfy):
    graph = srsoup_graph()
    graph["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}}
    graph["9"] = {
        "class_type": "MultiReward_ParetoFront",
        "inputs": {"report": ["7", 1], "images": ["8", 0], "thumbnails": True, "size": 256},
    }
    graph["10"] = {
        "class_type": "MultiReward_SaveReport",
        "inputs": {"report": ["7", 1], "filename_prefix": "tests/report"},
    }
    result = comfy.run(graph)
    plot, grid = result.output("9", 0), result.output("9", 1)
    assert plot.shape == (1, 256 + 70, 256, 3)
    assert grid.shape[0] == 1 and grid.shape[2] == 3 * 32
    saved = result.ui["10"]["reports"][0]
    path = Path(comfy.folder_paths.get_output_directory()) / saved["subfolder"] / saved["filename"]
    assert json.loads(path.read_text())["queries"] == json.loads(result.output("7", 1))["queries"]


def test_a_report_that_is_not_json_is_a_clear_error(comfy):
    graph = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "not json"}},
        "2": {
            "class_type": "MultiReward_ParetoFront",
            "inputs": {"report": ["1", 0], "thumbnails": False, "size": 256},
        },
    }
    result = comfy.run(graph, expect_success=False)
    assert "report: not JSON" in str(result.error)
