"""`multireward.*` for tests and benchmarks, whatever the checkout's folder is called.

ComfyUI loads a pack under a module name derived from its folder path. Tests want to write
`from multireward.rewards import base`; an import alias maps `multireward.*` onto the very module
objects ComfyUI loaded (or will load), so a class a test builds is the class the nodes check
against. It needs no ComfyUI: the maths tier imports the pack's pure modules through it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
PACK_NAME = "multireward"
# The name nodes.load_custom_node gives a pack loaded from PACK_ROOT.
COMFY_MODULE_NAME = str(PACK_ROOT).replace(".", "_x_")


class _PackAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve `multireward.X` to the module ComfyUI knows as `<pack path>.X`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == PACK_NAME or fullname.startswith(PACK_NAME + "."):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        real_name = COMFY_MODULE_NAME + spec.name[len(PACK_NAME) :]
        return importlib.import_module(real_name)

    def exec_module(self, module):
        pass  # already executed under its real name


def _load_pack_package() -> None:
    """Import the pack's top-level package under ComfyUI's name (cheap: it imports no ComfyUI)."""
    if COMFY_MODULE_NAME in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        COMFY_MODULE_NAME, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[COMFY_MODULE_NAME] = module
    spec.loader.exec_module(module)


def install_pack_alias() -> None:
    _load_pack_package()
    if not any(isinstance(finder, _PackAlias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PackAlias())
