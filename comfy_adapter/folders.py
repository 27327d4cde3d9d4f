"""ComfyUI's folders: the `rewards` models folder, and report files in the output folder."""

from __future__ import annotations

import json
import os

import folder_paths

REWARDS_FOLDER = "rewards"
REWARD_EXTENSIONS = {".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".json"}


def register_rewards_folder() -> None:
    """Register `models/rewards` without clobbering paths from extra_model_paths.yaml.

    ComfyUI reads extra_model_paths.yaml before custom nodes load, so a user's `rewards:` entry may
    already exist (with an empty extension set). We append our default path after the user's and
    give the entry our extensions.
    """
    default_path = os.path.join(folder_paths.models_dir, REWARDS_FOLDER)
    entries = folder_paths.folder_names_and_paths
    if REWARDS_FOLDER in entries:
        paths, extensions = entries[REWARDS_FOLDER]
        if default_path not in paths:
            paths.append(default_path)
        entries[REWARDS_FOLDER] = (paths, set(extensions) | REWARD_EXTENSIONS)
    else:
        entries[REWARDS_FOLDER] = ([default_path], set(REWARD_EXTENSIONS))


def reward_files() -> list[str]:
    return folder_paths.get_filename_list(REWARDS_FOLDER)


def reward_folders() -> list[str]:
    return folder_paths.get_folder_paths(REWARDS_FOLDER)


def resolve_reward_file(name: str) -> str:
    """Full path of a file in the rewards folders, or a FileNotFoundError naming where we looked."""
    path = folder_paths.get_full_path(REWARDS_FOLDER, name)
    if path is None:
        searched = ", ".join(reward_folders()) or "(no rewards folder registered)"
        raise FileNotFoundError(
            f"reward checkpoint file '{name}' was not found; searched the rewards folders: {searched}. "
            "Put the file there (or add a 'rewards:' entry to extra_model_paths.yaml)."
        )
    return path


def write_output_json(filename_prefix: str, data: dict) -> dict:
    """Write `data` into ComfyUI's output folder, numbered as SaveImage numbers its files; returns
    the file's entry for a node's UI output."""
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        filename_prefix, folder_paths.get_output_directory()
    )
    file_name = f"{name}_{counter:05}_.json"
    with open(os.path.join(folder, file_name), "w") as handle:
        json.dump(data, handle, indent=2)
    return {"filename": file_name, "subfolder": subfolder, "type": "output"}
