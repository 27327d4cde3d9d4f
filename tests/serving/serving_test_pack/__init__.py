"""Test-only node for the serving tests: a loaded reward that sees what a judge behind Remote Reward
sees, so the same reward loaded locally is a reference for the remote one:

- the protocol sends 8-bit PNGs, so images are rounded to 8 bits exactly as rewards/remote.py's
  png_base64 does (x * 255, round half to even, clip) before scoring;
- the serving tests' replicas score one image per forward, and so does this reward. A float32
  forward of a batch differs from one of its rows by a few ulps, and SRSoup's choice between
  near-identical candidates (tiny random models make many) follows such ulps.

The serving tests link this folder into the temporary server's custom_nodes; it is never shipped.
"""

import importlib

import torch

REWARD_TYPE = "MULTIREWARD_REWARD"


def eight_bit(reward):
    """`reward` scoring the 8-bit values of its images (a subclass of the pack's Reward as loaded
    by this server, found through the reward's own module)."""
    rewards_package = type(reward).__module__.rsplit(".", 1)[0]
    base = importlib.import_module(f"{rewards_package}.base")

    class EightBitReward(base.Reward):
        name = reward.name
        needs_prompt = reward.needs_prompt

        @property
        def label(self):
            return reward.label

        def _score(self, images, prompt):
            eight_bit_images = (images * 255.0).round().clamp(0, 255) / 255.0
            return torch.cat([reward.score(image[None], prompt) for image in eight_bit_images])

    return EightBitReward()


class EightBit:
    RETURN_TYPES = (REWARD_TYPE,)
    FUNCTION = "wrap"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"reward": (REWARD_TYPE,)}}

    def wrap(self, reward):
        return (eight_bit(reward),)


NODE_CLASS_MAPPINGS = {"MultiRewardServingTest_EightBit": EightBit}
