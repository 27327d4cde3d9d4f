"""The committed weights and the full checkpoint they stand for.

The compact file (safetensors) holds only the non-zero part of each tensor of a full SD1.5
checkpoint: for tensor K, a narrow tensor under K, and per axis the full-size indices it fills
(an index set stored once as `__index__.<name>`). Its metadata lists every key of the full
checkpoint with its full shape and the index-set name of each axis (null: the whole axis); a key
with no stored tensor is all zeros. Expanding is a zero-filled tensor per key with the narrow one
scattered in: generic, a few seconds, and the same bytes every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "multireward.digit_model.compact/1"
# safetensors writes metadata entries in a random order: one entry (sorted JSON) per file keeps
# the bytes deterministic.
METADATA_KEY = "multireward.digit_model"
#: The one metadata entry of an assembled checkpoint: the compact file's sha256.
SOURCE_KEY = "multireward.digit_model.source_sha256"
INDEX_PREFIX = "__index__."
DTYPE = torch.float16


def write_compact(
    path: Path,
    tensors: dict[str, tuple[torch.Tensor, tuple]],
    index_sets: dict[str, torch.Tensor],
    full_shapes: dict[str, tuple[int, ...]],
    info: dict,
) -> Path:
    """Store narrow `tensors` (key -> (tensor, axes)) of the checkpoint whose keys and shapes are
    `full_shapes`, after checking that every narrow axis fits its full axis; `info` (how it was
    made) goes into the metadata."""
    layout = {}
    for key, shape in sorted(full_shapes.items()):
        layout[key] = {"shape": list(shape)}
    for key, (tensor, axes) in tensors.items():
        if key not in full_shapes:
            raise KeyError(f"{key} is not a key of the full checkpoint")
        _check_fits(key, tensor, axes, full_shapes[key], index_sets)
        layout[key]["axes"] = list(axes)
    stored = {key: tensor.detach().to(DTYPE).contiguous() for key, (tensor, _) in tensors.items()}
    used = {name for _, axes in tensors.values() for name in axes if name is not None}
    for name in sorted(used):
        stored[INDEX_PREFIX + name] = index_sets[name].to(torch.int32).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = json.dumps({"format": FORMAT, "layout": layout, "info": info}, sort_keys=True)
    save_file(stored, str(path), metadata={METADATA_KEY: metadata})
    return path


def _check_fits(key, tensor, axes, full_shape, index_sets) -> None:
    if len(axes) != tensor.ndim or tensor.ndim != len(full_shape):
        raise ValueError(f"{key}: {tensor.ndim} axes, layout {axes}, full shape {tuple(full_shape)}")
    for axis, (name, size, full) in enumerate(zip(axes, tensor.shape, full_shape, strict=True)):
        if name is None:
            fits = size == full
        else:
            indices = index_sets[name]
            fits = len(indices) == size and int(indices.max()) < full and len(set(indices.tolist())) == size
        if not fits:
            raise ValueError(f"{key}: axis {axis} ({name}) of size {size} does not fit full size {full}")


def read_metadata(path: Path) -> dict:
    """{"format", "layout", "info"} of a compact file."""
    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get(METADATA_KEY)
    metadata = json.loads(text) if text else {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a compact digit-model file ({FORMAT})")
    return metadata


def expand(path: Path) -> dict[str, torch.Tensor]:
    """The full checkpoint's tensors: zeros, with each stored narrow tensor scattered in."""
    layout = read_metadata(path)["layout"]
    full = {}
    with safe_open(str(path), framework="pt") as handle:
        index_sets = {
            key[len(INDEX_PREFIX) :]: handle.get_tensor(key).long()
            for key in handle.keys()
            if key.startswith(INDEX_PREFIX)
        }
        for key, entry in layout.items():
            tensor = torch.zeros(entry["shape"], dtype=DTYPE)
            if "axes" in entry:
                _scatter(tensor, handle.get_tensor(key).to(DTYPE), entry["axes"], index_sets)
            full[key] = tensor
    return full


def _scatter(full: torch.Tensor, narrow: torch.Tensor, axes: list, index_sets: dict) -> None:
    if full.ndim == 0:
        full.copy_(narrow)
        return
    index = []
    for axis, name in enumerate(axes):
        indices = torch.arange(full.shape[axis]) if name is None else index_sets[name]
        shape = [1] * full.ndim
        shape[axis] = -1
        index.append(indices.view(shape))
    full[tuple(index)] = narrow


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def assembled_source(path: Path) -> str | None:
    """The compact file's sha256 an assembled checkpoint was made from (None if not one)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(SOURCE_KEY)
    except Exception:
        return None


def write_checkpoint(compact_path: Path, checkpoint_path: Path) -> Path:
    """Assemble the full checkpoint at `checkpoint_path` (atomically); a no-op when a checkpoint
    made from the same compact file is already there."""
    compact_path, checkpoint_path = Path(compact_path), Path(checkpoint_path)
    source = file_sha256(compact_path)
    if checkpoint_path.exists() and assembled_source(checkpoint_path) == source:
        return checkpoint_path
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    partial = checkpoint_path.with_name(f".{checkpoint_path.name}.{os.getpid()}.partial")
    try:
        save_file(expand(compact_path), str(partial), metadata={SOURCE_KEY: source})
        partial.replace(checkpoint_path)
    finally:
        partial.unlink(missing_ok=True)
    return checkpoint_path
