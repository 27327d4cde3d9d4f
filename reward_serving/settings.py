"""What one reward application is told by its Serve config (`applications[].args`), checked once
when the application is built, so a typo fails `serve run` / `serve deploy` with a message naming
the argument instead of a replica crash loop."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .pack import import_pack


class SettingsError(ValueError):
    """A wrong argument in the Serve config; the message names it."""


@dataclass(frozen=True)
class ServingSettings:
    #: The reward's registry name, as in Reward Loader (e.g. "hpsv2").
    reward: str
    #: The folder the weights come from (the machine's models/rewards, or a copy on every node).
    rewards_dir: str = ""
    #: The weights file, relative to rewards_dir ("" for weight-free rewards).
    weights_file: str = ""
    #: laion_aesthetic's CLIP tower (Reward Loader's companion_file), relative to rewards_dir.
    companion_file: str = ""
    dtype: str = "auto"
    #: Images scored in one forward, gathered from every request the replica has in flight.
    max_batch_size: int = 16
    #: How long a replica waits for more images before scoring a batch that is not full.
    batch_wait_timeout_s: float = 0.01
    #: NAME of the environment variable holding the API key ("" for no key). The key itself never
    #: goes into the config: set the variable where the Ray node starts.
    api_key_env: str = ""

    @classmethod
    def from_args(cls, args: dict) -> ServingSettings:
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(args) - set(fields))
        if unknown:
            raise SettingsError(f"args: unknown argument(s) {unknown}; allowed: {sorted(fields)}")
        if not args.get("reward"):
            raise SettingsError("args.reward: name the reward to serve (e.g. hpsv2), as in Reward Loader")
        values = {name: _typed(name, value, fields[name].type) for name, value in args.items()}
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        import_pack()
        from multireward.rewards.model_manager import DTYPE_NAMES
        from multireward.rewards.registry import REWARDS

        if self.reward not in REWARDS:
            raise SettingsError(f"args.reward: unknown reward '{self.reward}'; allowed: {', '.join(REWARDS)}")
        if REWARDS[self.reward].needs_checkpoint and not self.weights_file:
            raise SettingsError(
                f"args.weights_file: reward '{self.reward}' needs a checkpoint file "
                f"(e.g. {REWARDS[self.reward].expected_file}) in rewards_dir"
            )
        if self.dtype not in DTYPE_NAMES:
            raise SettingsError(f"args.dtype: '{self.dtype}' is not one of {', '.join(DTYPE_NAMES)}")
        if self.max_batch_size < 1:
            raise SettingsError(f"args.max_batch_size: must be at least 1, got {self.max_batch_size}")
        if self.batch_wait_timeout_s < 0:
            raise SettingsError(f"args.batch_wait_timeout_s: must be >= 0, got {self.batch_wait_timeout_s}")
        if (self.weights_file or self.companion_file) and not os.path.isdir(self.rewards_dir):
            raise SettingsError(f"args.rewards_dir: '{self.rewards_dir}' is not a folder on this node")

    def weights_path(self) -> str | None:
        return self._inside_rewards_dir("weights_file", self.weights_file)

    def companion_path(self) -> str | None:
        return self._inside_rewards_dir("companion_file", self.companion_file)

    def _inside_rewards_dir(self, argument: str, relative: str) -> str | None:
        """A file named relative to rewards_dir; one that resolves outside it is refused."""
        if not relative:
            return None
        root = os.path.realpath(self.rewards_dir)
        path = os.path.realpath(os.path.join(root, relative))
        if os.path.commonpath([root, path]) != root:
            raise SettingsError(f"args.{argument}: '{relative}' lies outside rewards_dir '{root}'")
        if not os.path.isfile(path):
            raise SettingsError(f"args.{argument}: no file '{relative}' in rewards_dir '{root}'")
        return path


def _typed(name: str, value, annotation: str):
    """YAML gives ints for floats and vice versa; anything else of the wrong type is an error."""
    if annotation == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    expected = {"str": str, "int": int, "float": float}[annotation]
    if isinstance(value, bool) or not isinstance(value, expected):
        raise SettingsError(f"args.{name}: expected {annotation}, got {value!r}")
    return value


def read_api_key(variable: str) -> str | None:
    """The key from the named environment variable; None when no variable is named. A named but
    unset variable is an error: a judge meant to be private must not start open."""
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise SettingsError(
            f"args.api_key_env: the environment variable '{variable}' is not set on this node; "
            "set it in the environment that starts Ray (`serve run`, or `ray start` on every node)"
        )
    return key
