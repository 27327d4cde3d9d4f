"""Test-only nodes that hand the in-memory tiny models to graphs run by the in-process host.

They are registered into ComfyUI's node table by the `comfy` fixture, never shipped with the pack.
"""

from __future__ import annotations

import tiny_models


class TinySD15:
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    def load(self, seed):
        return tiny_models.tiny_sd15(seed)


class TinyFlow:
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "VAE")
    RETURN_NAMES = ("model", "positive", "negative", "vae")
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 1000})}}

    def load(self, seed):
        return tiny_models.tiny_flow(seed)


class EmptyImages:
    """An IMAGE batch of zero images: no stock node makes one, but other packs can."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        import torch

        return (torch.zeros(0, 64, 64, 3),)


class ImagesFromFile:
    """An IMAGE batch saved by a test (safetensors, key "images"), so a graph scores exactly it."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}}

    def load(self, path):
        from safetensors.torch import load_file

        return (load_file(path)["images"],)


#: Every image batch a RecordingReward scored, in order (tests clear it before a run).
RECORDED_IMAGES: list = []


class RecordingReward:
    """A colorfulness REWARD that keeps a copy of every image batch it is asked to score."""

    RETURN_TYPES = ("MULTIREWARD_REWARD",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        from multireward.rewards.colorfulness import Colorfulness

        class Recording(Colorfulness):
            def _score(self, images, prompt):
                RECORDED_IMAGES.append(images.clone())
                return super()._score(images, prompt)

        return (Recording(),)


#: Images each CountingReward scored, by its label (tests clear it before a run).
COUNTED_IMAGES: dict[str, int] = {}


class CountingReward:
    """A colorfulness REWARD that counts, under its label, every image it is asked to score: what a
    paying user's judge would count, kept apart from the pack's own ledger and counters."""

    RETURN_TYPES = ("MULTIREWARD_REWARD",)
    FUNCTION = "make"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"label": ("STRING", {"default": "judge"})}}

    def make(self, label):
        from multireward.rewards.colorfulness import Colorfulness

        class Counting(Colorfulness):
            def _score(self, images, prompt):
                COUNTED_IMAGES[label] = COUNTED_IMAGES.get(label, 0) + images.shape[0]
                return super()._score(images, prompt)

        return (Counting(),)


TEST_NODES = {
    "MultiRewardTest_TinySD15": TinySD15,
    "MultiRewardTest_TinyFlow": TinyFlow,
    "MultiRewardTest_EmptyImages": EmptyImages,
    "MultiRewardTest_Images": ImagesFromFile,
    "MultiRewardTest_RecordingReward": RecordingReward,
    "MultiRewardTest_CountingReward": CountingReward,
}
NODE_CLASS_MAPPINGS = TEST_NODES


def register(host) -> None:
    host.nodes.NODE_CLASS_MAPPINGS.update(TEST_NODES)
