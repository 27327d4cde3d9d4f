"""What Reward Loader tells a user who chose a wrong dtype or lacks a package, in a real ComfyUI."""

from __future__ import annotations

import importlib.abc
import sys

import pytest
from support import pack_alias

WEIGHT_FREE = ("jpeg_compressibility", "colorfulness", "sharpness")
NEURAL = ("laion_aesthetic", "hpsv2", "hpsv2.1", "pickscore", "imagereward", "clip_score")
#: The pack's modules that import open_clip when they are imported.
OPEN_CLIP_IMPORTERS = ("clip_arch", "clip_rewards", "aesthetic", "imagereward")


def score_graph(reward_name: str, weights_file: str = "(none)") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 5}},
        "2": {
            "class_type": "MultiReward_RewardLoader",
            "inputs": {"reward_name": reward_name, "weights_file": weights_file, "dtype": "auto"},
        },
        "3": {
            "class_type": "MultiReward_RewardScore",
            "inputs": {"images": ["1", 0], "reward": ["2", 0], "prompt": "a grey square"},
        },
    }


@pytest.mark.parametrize("reward_name", WEIGHT_FREE)
def test_a_bogus_dtype_is_refused_naming_the_input_and_the_allowed_values(comfy, reward_name):
    # The node's own check, called directly: a backend that checks combo values (ComfyUI 0.33)
    # refuses the graph before the node runs; 0.3.75 leaves it to the node (tests/server covers both).
    from multireward.pack_nodes.rewards import RewardLoader
    from multireward.rewards.base import RewardError

    with pytest.raises(RewardError, match=r"dtype: unknown choice 'bogus'; allowed: auto, fp32, fp16, bf16"):
        RewardLoader.execute(reward_name=reward_name, weights_file="(none)", dtype="bogus")


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Fails an import the way Python does when the package is not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == self.package:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.fixture
def without_open_clip(monkeypatch):
    """As if open_clip_torch were not installed; the pack's modules that imported it import afresh."""
    prefixes = ["open_clip"] + [
        f"{package}.rewards.{module}"
        for package in (pack_alias.COMFY_MODULE_NAME, pack_alias.PACK_NAME)
        for module in OPEN_CLIP_IMPORTERS
    ]
    for name in list(sys.modules):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NotInstalled("open_clip"), *sys.meta_path])


def test_without_open_clip_every_neural_reward_says_what_to_install(comfy, without_open_clip):
    placeholder = comfy.models_dir("rewards") / "no_open_clip" / "placeholder.safetensors"
    placeholder.parent.mkdir(exist_ok=True)
    placeholder.write_bytes(b"")  # never read: the model code fails to import first
    for reward_name in NEURAL:
        result = comfy.run(score_graph(reward_name, "no_open_clip/placeholder.safetensors"), False)
        message = result.error["exception_message"]
        assert f"reward '{reward_name}' needs the Python package open_clip_torch" in message, message
        assert "-m pip install open_clip_torch" in message and sys.executable in message, message


def test_the_weight_free_rewards_do_without_open_clip(comfy, without_open_clip):
    for reward_name in WEIGHT_FREE:
        assert len(comfy.run(score_graph(reward_name)).output_list("3", 0)) == 1
