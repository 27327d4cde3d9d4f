"""The shipped Serve configs and the checks on an application's args, in the Ray venv (no Ray
cluster started: seconds)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from install_ray import ensure_ray_venv
from serve_harness import PACK_ROOT

pytestmark = pytest.mark.serving
CONFIGS = ["reward_serving/serve_local.yaml", "reward_serving/serve_cluster.yaml"]


@pytest.fixture(scope="module")
def probed() -> dict:
    python = ensure_ray_venv()
    result = subprocess.run(
        [str(python), "tests/serving/probe_settings.py", *CONFIGS],
        cwd=PACK_ROOT,
        env={**os.environ, "PYTHONPATH": str(PACK_ROOT)},  # as `serve run` puts its app dir first
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_shipped_configs_are_valid_serve_configs_of_known_rewards(probed):
    local, cluster = (probed["configs"][path] for path in CONFIGS)
    assert [(a["route"], a["reward"]) for a in local] == [("/hpsv2", "hpsv2"), ("/pickscore", "pickscore")]
    assert [(a["route"], a["reward"]) for a in cluster] == [
        ("/hpsv2", "hpsv2"),
        ("/imagereward", "imagereward"),
    ]
    assert {a["builder"] for a in local + cluster} == {"app_builder"}


def test_wrong_args_fail_the_build_naming_the_argument(probed):
    errors = probed["errors"]
    assert (
        "unknown argument(s) ['weight_file']" in errors["unknown_arg"]
        and "weights_file" in errors["unknown_arg"]
    )
    assert "unknown reward 'hpsv3'" in errors["unknown_reward"] and "pickscore" in errors["unknown_reward"]
    assert errors["wrong_type"] == "args.max_batch_size: expected int, got '16'"
    assert "args.dtype: 'fp8'" in errors["bad_dtype"]
    assert "args.weights_file: reward 'pickscore' needs a checkpoint file" in errors["no_checkpoint"]
    assert "args.weights_file: '../secret.pt' lies outside rewards_dir" in errors["outside"]
    assert "args.weights_file: no file 'nope.pt'" in errors["missing"]
    assert errors["inside"] == ""
