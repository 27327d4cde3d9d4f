"""Run by test_serve_configs.py with the Ray venv's python, from the repository root: what the
shipped Serve configs and reward_serving's settings checks say, as JSON on stdout."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from reward_serving.settings import ServingSettings, SettingsError


def check_config(path: str, rewards_dir: str) -> list[dict]:
    config = ServeDeploySchema.model_validate(yaml.safe_load(Path(path).read_text()))
    applications = []
    for app in config.applications:
        module, attribute = app.import_path.split(":")
        builder = getattr(importlib.import_module(module), attribute)
        # The config's own args, with a rewards_dir that exists here.
        settings = ServingSettings.from_args({**app.args, "rewards_dir": rewards_dir})
        applications.append(
            {
                "name": app.name,
                "route": app.route_prefix,
                "builder": builder.__name__,
                "reward": settings.reward,
            }
        )
    return applications


def error_of(args: dict, resolve: str = "") -> str:
    try:
        settings = ServingSettings.from_args(args)
        getattr(settings, resolve)() if resolve else None
    except SettingsError as error:
        return str(error)
    return ""


def main() -> None:
    with tempfile.TemporaryDirectory() as rewards_dir:
        (Path(rewards_dir) / "judge.pt").write_bytes(b"")
        outside = Path(rewards_dir).parent / "secret.pt"
        print(
            json.dumps(
                {
                    "configs": {path: check_config(path, rewards_dir) for path in sys.argv[1:]},
                    "errors": {
                        "unknown_arg": error_of({"reward": "hpsv2", "weight_file": "x.pt"}),
                        "unknown_reward": error_of({"reward": "hpsv3"}),
                        "wrong_type": error_of({"reward": "colorfulness", "max_batch_size": "16"}),
                        "bad_dtype": error_of({"reward": "hpsv2", "weights_file": "x.pt", "dtype": "fp8"}),
                        "no_checkpoint": error_of({"reward": "pickscore"}),
                        "outside": error_of(
                            {
                                "reward": "hpsv2",
                                "rewards_dir": rewards_dir,
                                "weights_file": f"../{outside.name}",
                            },
                            "weights_path",
                        ),
                        "missing": error_of(
                            {"reward": "hpsv2", "rewards_dir": rewards_dir, "weights_file": "nope.pt"},
                            "weights_path",
                        ),
                        "inside": error_of(
                            {"reward": "hpsv2", "rewards_dir": rewards_dir, "weights_file": "judge.pt"},
                            "weights_path",
                        ),
                    },
                }
            )
        )


if __name__ == "__main__":
    main()
