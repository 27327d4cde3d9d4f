"""The pack's own socket types (prefixed so they never clash with another pack's), and the choice
that means "no file" in its optional file lists."""

from comfy_api.latest import io

NO_FILE = "(none)"
RewardType = io.Custom("MULTIREWARD_REWARD")
