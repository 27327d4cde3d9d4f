"""LoRA variants of one model for Diffusion Blend: read by ComfyUI's own LoRA code, merged once per run.

A LoRA is loaded exactly as the stock LoraLoader loads it (comfy.utils.load_torch_file,
comfy.lora_convert.convert_lora, comfy.lora.load_lora with the model's key map), so every LoRA
format ComfyUI understands works. The merged weight of a variant is computed as ComfyUI's
ModelPatcher computes it when a LoraLoader clone loads (calculate_weight over the model's own patches
plus the LoRA's, from the original weight, then ComfyUI's rounding), so one variant alone gives the
stock LoraLoader's image bit for bit.

Why not clones of the ModelPatcher: clones share the nn.Module, so alternating them per step
re-merges every step. Instead the merged weights of every variant are computed once per sampling run
and swapped in by replacing the Parameter objects (a pointer swap, no copy) around each model call.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import comfy.float
import comfy.lora
import comfy.lora_convert
import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy.model_patcher import LowVramPatch, get_key_weight

from .compat import string_to_seed

LORAS_FOLDER = "loras"


class LoraBlendError(ValueError):
    """A LoRA could not be used for blending: the message names the file and the reason."""


def lora_files() -> list[str]:
    return folder_paths.get_filename_list(LORAS_FOLDER)


def resolve_lora_file(name: str, input_name: str) -> str:
    path = folder_paths.get_full_path(LORAS_FOLDER, name)
    if path is None:
        searched = ", ".join(folder_paths.get_folder_paths(LORAS_FOLDER)) or "(no loras folder registered)"
        raise FileNotFoundError(
            f"{input_name}: LoRA file '{name}' was not found; searched the loras folders: {searched}"
        )
    return path


@dataclass(frozen=True)
class LoraVariant:
    """One LoRA as patch entries per model key, in ModelPatcher.add_patches' entry format."""

    name: str
    patches: dict[str, list[tuple]]


def _read_lora_file(path: str, name: str, input_name: str) -> dict[str, torch.Tensor]:
    try:
        return comfy.utils.load_torch_file(path, safe_load=True)
    except Exception as error:  # a corrupt or foreign file: say which one
        raise LoraBlendError(f"{input_name}: could not read LoRA file '{name}': {error}") from error


def load_lora_variant(model_patcher, name: str, input_name: str, strength: float = 1.0) -> LoraVariant:
    """Read a LoRA for this model as LoraLoader would; refuse one that fits none of its weights."""
    path = resolve_lora_file(name, input_name)
    state = comfy.lora_convert.convert_lora(_read_lora_file(path, name, input_name))
    key_map = comfy.lora.model_lora_keys_unet(model_patcher.model, {})
    loaded = comfy.lora.load_lora(state, key_map, log_missing=False)
    model_keys = set(model_patcher.model.state_dict().keys())
    patches: dict[str, list[tuple]] = {}
    for lora_key, adapter in loaded.items():
        key, offset, function = _split_patch_key(lora_key)
        if key in model_keys:
            patches.setdefault(key, []).append((strength, adapter, 1.0, offset, function))
    if not patches:
        examples = ", ".join(sorted(state.keys())[:3])
        raise LoraBlendError(
            f"{input_name}: LoRA '{name}' matches none of this model's weights: 0 of its {len(state)} "
            f"tensors name a weight of this model (e.g. {examples}); it was probably made for another "
            "model architecture"
        )
    fitting, misfits = _split_by_fit(model_patcher, patches)
    if not fitting:
        key, reason = misfits[0]
        raise LoraBlendError(
            f"{input_name}: LoRA '{name}' fits none of this model's weights: its keys name {len(patches)} "
            f"weights of this model, 0 of them with the shape the LoRA gives (e.g. {key}: {reason}); it "
            "was probably made for another model of the same family (another width or text encoder)"
        )
    if misfits:
        logging.warning(
            "multireward blend: %s: LoRA '%s' fits %d of the %d weights it names; the other %d have other "
            "shapes and are left out (e.g. %s: %s)",
            input_name,
            name,
            len(fitting),
            len(patches),
            len(misfits),
            *misfits[0],
        )
    unmatched = len(loaded) - sum(len(p) for p in patches.values())
    if unmatched:
        logging.warning(
            "multireward blend: %d patches of LoRA '%s' match no weight of this model", unmatched, name
        )
    return LoraVariant(name=name, patches=fitting)


class _MergeProblems(logging.Filter):
    """Takes the messages ComfyUI's LoRA code logs about one weight it cannot merge (it logs them
    instead of raising, one 'ERROR lora' line per weight and run) off the root logger."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and self.key in message:
            self.messages.append(message)
            return False
        return True


def _merge_problems(patches: list[tuple], weight: torch.Tensor, key: str) -> list[str]:
    """What ComfyUI's own merge of `patches` into `weight` reports as failed (nothing: it fits)."""
    problems = _MergeProblems(key)
    root = logging.getLogger()
    root.addFilter(problems)
    try:
        comfy.lora.calculate_weight(patches, weight, key)
    except Exception as error:  # any failure of the merge means: does not fit
        problems.messages.append(str(error))
    finally:
        root.removeFilter(problems)
    return problems.messages


def _split_by_fit(model_patcher, patches: dict[str, list[tuple]]):
    """(the patches ComfyUI merges without error, [(key, why not) for the others]).

    The merge is first tried on a weight of the meta device (shapes only, no memory, no compute);
    a key it refuses is tried again on a copy of the real weight, so an operation without a meta
    implementation never counts as a misfit.
    """
    fitting: dict[str, list[tuple]] = {}
    misfits: list[tuple[str, str]] = []
    for key, entries in patches.items():
        weight, _, _ = get_key_weight(model_patcher.model, key)
        shape_only = torch.empty(weight.shape, dtype=torch.float32, device="meta")
        if _merge_problems(entries, shape_only, key):
            problems = _merge_problems(entries, weight.detach().to("cpu", torch.float32, copy=True), key)
            if problems:
                misfits.append((key, problems[0].split(key, 1)[-1].strip()))
                continue
        fitting[key] = entries
    return fitting, misfits


def _split_patch_key(lora_key) -> tuple[str, tuple | None, object]:
    """ComfyUI patch keys are a weight name or (name, offset[, function]) for fused weights."""
    if isinstance(lora_key, str):
        return lora_key, None, None
    return lora_key[0], lora_key[1], lora_key[2] if len(lora_key) > 2 else None


def _original_weight(model_patcher, key: str) -> torch.Tensor:
    """The weight before the ModelPatcher merged its own patches (what LoraLoader merges from)."""
    backup = model_patcher.backup.get(key)
    if backup is not None:
        return backup.weight
    weight, _, _ = get_key_weight(model_patcher.model, key)
    return weight


def merged_weight(
    model_patcher, key: str, extra_patches: list[tuple], device: torch.device | None = None
) -> torch.nn.Parameter:
    """Weight `key` with the model's own patches and then `extra_patches`, as ModelPatcher merges it,
    on `device` (by default where the weight is)."""
    current, set_func, convert_func = get_key_weight(model_patcher.model, key)
    if set_func is not None or convert_func is not None:
        raise LoraBlendError(
            f"weight '{key}' is stored in a quantized/packed format; Diffusion Blend needs plain "
            "floating-point weights (load a non-quantized checkpoint)"
        )
    original = _original_weight(model_patcher, key)
    work = comfy.model_management.cast_to_device(original, device or current.device, torch.float32, copy=True)
    patches = list(model_patcher.patches.get(key, [])) + list(extra_patches)
    out = comfy.lora.calculate_weight(patches, work, key)
    out = comfy.float.stochastic_rounding(out, current.dtype, seed=string_to_seed(key))
    return torch.nn.Parameter(out, requires_grad=False)


def streams_its_weights(module: torch.nn.Module) -> bool:
    """Under ComfyUI's dynamic VRAM (ModelPatcherDynamic, 0.33 and later) a module keeps its weights
    where they were loaded from (the offload device) and ComfyUI streams them to the GPU through
    a VRAM buffer (`_v`) that may still hold them from an earlier call: there, the module's weight
    functions run on every use, and a Parameter put in the module's place is never read.
    (Read from the instance dict: hasattr on a Module goes through a raised AttributeError, which
    costs microseconds per weight and call.)"""
    return "_v" in module.__dict__


@dataclass(frozen=True)
class _Slot:
    """Where one merged weight goes: the owning module, the parameter's name in it, the tensor."""

    module: torch.nn.Module
    name: str
    merged: torch.nn.Parameter

    def put_in(self):
        """Make the module compute with the merged weight; returns what puts its own one back."""
        if streams_its_weights(self.module):
            return self._replace_streamed_weight()
        return self._swap_parameter()

    def _swap_parameter(self):
        # A partially loaded module merges the model's patches at cast time (LowVramPatch); the
        # merged weight already holds them, so they are taken off while the variant runs. ComfyUI
        # sets a module's weight functions on the instance (its own dict, read directly: fast).
        attributes = self.module.__dict__
        attribute = f"{self.name}_function"
        functions = attributes.get(attribute)
        if functions and any(isinstance(f, LowVramPatch) for f in functions):
            attributes[attribute] = [f for f in functions if not isinstance(f, LowVramPatch)]
        parameters = self.module._parameters
        own = parameters[self.name]
        parameters[self.name] = self.merged

        def put_back():
            parameters[self.name] = own
            if functions is not None:
                attributes[attribute] = functions

        return put_back

    def _replace_streamed_weight(self):
        # First of the module's weight functions: whatever ComfyUI streamed in (the weight, with the
        # model's own patches applied by its lowvram function) is replaced by the merged weight,
        # which holds those patches too; the model's other weight functions still follow.
        attributes = self.module.__dict__
        attribute = f"{self.name}_function"
        functions = attributes.get(attribute, [])
        merged, copy = self.merged, len(functions) > 0  # later functions may work in place

        def merged_weight_instead(weight: torch.Tensor) -> torch.Tensor:
            return merged.to(device=weight.device, dtype=weight.dtype, copy=copy)

        attributes[attribute] = [merged_weight_instead, *functions]

        def put_back():
            attributes[attribute] = functions

        return put_back


class VariantWeights:
    """Merged weights of every variant, computed once per run, put into the shared module per call.

    The owning module of every weight is looked up once, and a swap writes the module's parameter
    table directly: Module.__setattr__ and dotted-path lookups cost milliseconds per call for a few
    dozen weights, as much as a tiny model's whole forward pass.
    """

    def __init__(self, model_patcher, variants: list[LoraVariant]):
        # Merges read the module's current weights where the patcher holds no backup: build this
        # while `model_patcher` is the loaded one (inside its sampling run), as the blend patch does.
        self.model_patcher = model_patcher
        self.variants = variants
        self.slots: dict[int, list[_Slot]] = {}

    def _target(self, key: str) -> tuple[torch.nn.Module, str, torch.device]:
        """The module and parameter name of `key`, and where its merged weight is made: where the
        model computes for a streamed module, else where the weight is."""
        module, name = _owner(self.model_patcher.model, key)
        if streams_its_weights(module):
            return module, name, torch.device(self.model_patcher.load_device)
        return module, name, module._parameters[name].device

    def merged(self, index: int) -> list[_Slot]:
        """Variant `index`'s merged weights, merged at its first use (LS may never draw a variant)."""
        if index not in self.slots:
            _make_room(self.merged_sizes(index))
            slots = []
            for key, patches in self.variants[index].patches.items():
                module, name, device = self._target(key)
                slots.append(_Slot(module, name, merged_weight(self.model_patcher, key, patches, device)))
            self.slots[index] = slots
        return self.slots[index]

    def merged_sizes(self, index: int) -> dict[torch.device, int]:
        """Bytes variant `index`'s merged weights take, per device they are made on."""
        sizes: dict[torch.device, int] = {}
        for key in self.variants[index].patches:
            module, name, device = self._target(key)
            weight = module._parameters[name]
            sizes[device] = sizes.get(device, 0) + weight.numel() * weight.element_size()
        return sizes

    def release(self) -> None:
        self.slots = {}

    @contextlib.contextmanager
    def swapped_in(self, index: int):
        """Run the model with variant `index`'s weights, then put the model's own weights back."""
        slots = self.merged(index)
        put_backs = []
        try:
            for slot in slots:
                put_backs.append(slot.put_in())
            yield
        finally:
            for put_back in reversed(put_backs):
                put_back()


def _make_room(sizes: dict[torch.device, int]) -> None:
    """Ask ComfyUI's memory manager for device memory for merged weights (plus its minimum for
    inference), as it asks itself before loading a model: it unloads models this run does not use
    until there is. CPU memory is not managed that way."""
    in_use = [loaded for loaded in comfy.model_management.current_loaded_models if loaded.currently_used]
    for device, size in sizes.items():
        if device.type != "cpu":
            required = size + comfy.model_management.minimum_inference_memory()
            comfy.model_management.free_memory(required, device, keep_loaded=in_use)


def _owner(model, key: str) -> tuple[torch.nn.Module, str]:
    module_name, _, name = key.rpartition(".")
    module = comfy.utils.get_attr(model, module_name) if module_name else model
    if name not in module._parameters:
        raise LoraBlendError(
            f"LoRA patch target '{key}' is not a parameter of the model; it cannot be blended"
        )
    return module, name
