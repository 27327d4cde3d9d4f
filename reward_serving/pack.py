"""The multireward pack's reward code, imported without ComfyUI.

reward_serving lives inside the pack's repository, so the pack is its parent folder: it is imported
from there under the name `multireward` (the pack's own __init__ imports nothing), unless a
`multireward` package is importable already.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "multireward"


def import_pack():
    """The `multireward` package; afterwards `multireward.rewards.*` imports as usual."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    if importlib.util.find_spec(PACK_NAME) is not None:
        return importlib.import_module(PACK_NAME)
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def load_reward(name: str, path: str | None, companion_path: str | None, dtype: str, device: str):
    """The reward `name` built by the same registry and model code Reward Loader uses, run in plain
    torch on `device` (TorchModelManager) instead of under ComfyUI's model management."""
    import_pack()
    from multireward.rewards.registry import build_reward

    return build_reward(name, path, device=device, dtype=dtype, companion_path=companion_path)
