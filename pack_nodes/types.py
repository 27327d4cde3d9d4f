"""The pack's own socket types. Prefixed so they never clash with another pack's."""

from comfy_api.latest import io

RewardType = io.Custom("MULTIREWARD_REWARD")
