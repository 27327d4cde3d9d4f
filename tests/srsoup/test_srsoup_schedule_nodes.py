"""The soup schedule and the query totals of SRSoup KSampler inside a real ComfyUI: the per-chain
schedule from the node, K above the guided steps, and what every judge sees (guidance queries plus
the final scoring), each against what counting rewards saw and against closed forms written out here."""

from __future__ import annotations

import json
import math

import pytest
import test_nodes
from support.srsoup_graphs import srsoup_graph

LABELS = ("a", "b", "c")


def counting_graph(num_rewards: int, **overrides) -> dict:
    """The tiny model with `num_rewards` counting rewards (labels a, b, c) on the reward slots."""
    graph = srsoup_graph(**overrides)
    for index, label in enumerate(LABELS[:num_rewards]):
        node = str(40 + index)
        graph[node] = {"class_type": "MultiRewardTest_CountingReward", "inputs": {"label": label}}
        graph["7"]["inputs"]["reward" if index == 0 else f"reward_{index + 1}"] = [node, 0]
    return graph


def run_counted(comfy, num_rewards: int, **overrides):
    test_nodes.COUNTED_IMAGES.clear()
    result = comfy.run(counting_graph(num_rewards, **overrides))
    counted = [test_nodes.COUNTED_IMAGES.get(label, 0) for label in LABELS[:num_rewards]]
    return json.loads(result.output("7", 1)), counted, result.ui["7"]["text"][0]


def hand_soup_steps(rows: list[list[float]], guided: int, centre: float, edge: float) -> list[int]:
    """K of every row by the issue's rule, written out: dist = |w - nearest e_m| / |centroid - e_m|,
    K = round half up of T_g (centre + (edge - centre)(1 - dist)); one-hot rows never soup."""
    steps = []
    for row in rows:
        m = len(row)
        nearest = min(sum((w - (i == j)) ** 2 for i, w in enumerate(row)) for j in range(m))
        dist = math.sqrt(nearest / ((1 - 1 / m) ** 2 + (m - 1) / m**2))
        one_hot = max(row) == 1.0
        steps.append(0 if one_hot else math.floor(guided * (centre + (edge - centre) * (1 - dist)) + 0.5))
    return steps


def closed_form_per_reward(rows, soup_steps, guided, candidates) -> list[int]:
    """Exemplar m queries reward m every guided step; any other row queries each reward it weighs
    in its last T_g - K_l guided steps; a reward weighed 0 is never queried."""
    return [
        candidates * sum(guided - k for row, k in zip(rows, soup_steps, strict=True) if row[m] > 0)
        for m in range(len(rows[0]))
    ]


CASES = {
    # two rewards: the authors' L = 6 grid
    2: ("", [[1, 0], [0.8, 0.2], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0, 1]]),
    # three rewards, rows that weigh a reward 0 among them
    3: (
        "0.8,0.2,0; 0.6,0,0.4; 0.2,0.4,0.4; 1,1,1",
        [
            [1, 0, 0],
            [0.8, 0.2, 0],
            [0.6, 0, 0.4],
            [1 / 3, 1 / 3, 1 / 3],
            [0.2, 0.4, 0.4],
            [0, 1, 0],
            [0, 0, 1],
        ],
    ),
}


@pytest.mark.parametrize("num_rewards", [2, 3])
def test_a_per_chain_run_spends_the_closed_form_and_every_judge_counts_it(comfy, num_rewards):
    text, rows = CASES[num_rewards]
    steps, candidates, centre, edge = 7, 3, 0.2, 0.9
    guided = steps - 1  # the last step has no noise and is never guided
    report, counted, summary = run_counted(
        comfy,
        num_rewards,
        weights=text,
        grid_divisions=5,
        steps=steps,
        candidates=candidates,
        soup_schedule="per_chain",
        soup_centre=centre,
        soup_edge=edge,
    )
    assert [w for row in report["weights"] for w in row] == pytest.approx([w for row in rows for w in row])
    soup_steps = hand_soup_steps(rows, guided, centre, edge)
    assert len(set(soup_steps)) >= 3  # the chains really differ
    assert report["soup_schedule"] == "per_chain" and report["chain_soup_steps"] == soup_steps
    per_reward = closed_form_per_reward(rows, soup_steps, guided, candidates)
    assert report["queries_per_reward"] == per_reward == report["reward_images_seen"]
    assert report["queries"] == sum(per_reward)
    # what the judges themselves counted over the whole run: guidance, then one final score per image
    images = len(rows)
    assert counted == [q + images for q in per_reward] == report["total_queries_per_reward"]
    assert report["final_scoring_queries"] == images * num_rewards
    assert report["total_queries"] == sum(counted)
    # the summary states the schedule, each image's K and queries, and the total
    assert f"per-chain soup schedule (centre {centre:g}, edge {edge:g})" in summary
    assert f"in all, with the final scoring: {sum(counted)} queries" in summary
    assert "per judge: " + ", ".join(map(str, counted)) in summary
    support = [sum(w > 0 for w in row) for row in rows]
    for k, s in zip(soup_steps, support, strict=True):
        assert f"(K = {k}, {candidates * s * (guided - k)} queries)" in summary


@pytest.mark.parametrize("node_type", ["MultiReward_SRSoupKSampler", "MultiReward_SRSoupSampler"])
def test_a_new_node_shows_the_benchmarks_per_chain_schedule_and_old_prompts_keep_fixed_k(comfy, node_type):
    inputs = comfy.nodes.NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
    schema = inputs["optional"]
    assert schema["soup_schedule"][1]["default"] == "per_chain"
    assert (schema["soup_centre"][1]["default"], schema["soup_edge"][1]["default"]) == (0.05, 0.8)
    # the schedule widgets come after every other one, so saved workflows keep their values in place
    assert list(schema)[-3:] == ["soup_schedule", "soup_centre", "soup_edge"]
    assert not {"soup_schedule", "soup_centre", "soup_edge"} & set(inputs["required"])


def test_an_api_prompt_written_before_the_schedule_runs_its_fixed_k(comfy):
    graph = counting_graph(2, grid_divisions=2, steps=4, candidates=4, soup_steps=1)
    for name in ("soup_schedule", "soup_centre", "soup_edge"):
        del graph["7"]["inputs"][name]
    report = json.loads(comfy.run(graph).output("7", 1))
    assert (report["soup_schedule"], report["chain_soup_steps"]) == ("fixed", [0, 1, 0])


def test_a_fixed_k_above_the_guided_steps_soups_all_of_them(comfy):
    """The default K = 20 at 4 steps (3 guided) runs, as K = 3, and says so."""
    report, counted, summary = run_counted(comfy, 2, steps=4, soup_steps=20, candidates=4, grid_divisions=2)
    assert (report["soup_steps_K"], report["soup_steps_set"]) == (3, 20)
    assert report["chain_soup_steps"] == [0, 3, 0]
    # N M (K + (T_g - K)(L - M + 1)) with K = T_g = 3: only the exemplars query
    assert report["queries"] == 4 * 2 * 3 == sum(report["reward_images_seen"])
    assert counted == [4 * 3 + 3, 4 * 3 + 3]
    assert "K = 3 (set to 20; there are only 3 guided steps)" in summary


def test_a_single_mixed_row_gets_its_one_hot_rows_as_the_tooltip_says(comfy):
    report, counted, _ = run_counted(comfy, 2, weights="0.5,0.5", steps=3, candidates=2)
    assert report["weights"] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    assert counted == report["total_queries_per_reward"]
    inputs = comfy.nodes.NODE_CLASS_MAPPINGS["MultiReward_SRSoupKSampler"].INPUT_TYPES()["required"]
    assert "added if missing" in inputs["weights"][1]["tooltip"]
