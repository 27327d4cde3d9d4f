"""A real ComfyUI, in this process, with the pack loaded: the base of every node test.

Tests import the pack as `multireward.*` (support/pack_alias.py): the very module objects ComfyUI
loaded, so a class a test builds is the class the nodes check against.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import comfy_hosts  # the host layout, shared with the installer (scripts/)
from support.pack_alias import PACK_ROOT, install_pack_alias

HOST = comfy_hosts.selected()  # MULTIREWARD_HOST=<version>; the primary host when unset
COMFYUI_DIR = HOST.comfyui.resolve()
# Since ComfyUI 0.8 the backend checks a V3 combo's value against its options before any node runs
# (/prompt answers 400 "Value not in list: <input>: ..."); 0.3.75 leaves that check to the node, so an
# error-path test expects the message of whichever layer speaks first on the host.
COMFYUI_CHECKS_COMBO_VALUES = HOST.version_info >= (0, 8)


_comfy_base_dir: Path | None = None


def put_comfyui_first_on_path() -> None:
    """ComfyUI's folder first on sys.path, as main.py runs: its top-level modules (`nodes`, `utils`,
    `server`, ...) must win over any same-named module elsewhere on the path."""
    sys.path[:] = [entry for entry in sys.path if entry != str(COMFYUI_DIR)]
    sys.path.insert(0, str(COMFYUI_DIR))


def prepare_comfy_imports(any_python: bool = False) -> Path:
    """Put ComfyUI on sys.path and set its CPU arguments before any comfy module is imported.

    `any_python`: the host's ComfyUI checkout under another python than the host's venv (a benchmark
    on a GPU machine whose python has torch and ComfyUI's requirements but no host venv)."""
    global _comfy_base_dir
    if _comfy_base_dir is not None:
        return _comfy_base_dir
    if not (COMFYUI_DIR / "main.py").exists():
        raise RuntimeError(
            f"no ComfyUI host at {COMFYUI_DIR}; run `python3 scripts/install_host.py {HOST.version}` first"
        )
    if not any_python and Path(sys.prefix).resolve() != HOST.venv.resolve():
        raise RuntimeError(
            f"the ComfyUI {HOST.version} host runs under {HOST.python}, not {sys.executable} "
            f"({comfy_hosts.HOST_VARIABLE} selects the host)"
        )
    _comfy_base_dir = Path(tempfile.mkdtemp(prefix="multireward-comfy-"))
    put_comfyui_first_on_path()
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = str(_comfy_base_dir)
    args.disable_auto_launch = True
    # `utils` must be ComfyUI's utils package, imported before nodes.py puts comfy/ on sys.path.
    import utils.extra_config  # noqa: F401

    return _comfy_base_dir


CHECKPOINT_CACHE = PACK_ROOT / ".host" / "cache"


def tiny_checkpoint_file() -> Path:
    """A stock-detectable SD1.5 checkpoint (320 channels, the fixed-size CLIP-L text encoder, a
    TAESD VAE) with random weights. Built once per machine (about 250 MB), cached in .host/cache."""
    prepare_comfy_imports()
    import tiny_models

    return tiny_models.write_sd15_checkpoint(CHECKPOINT_CACHE / "tiny_sd15_checkpoint.safetensors")


def digit_checkpoint_file() -> Path:
    """The learned digits checkpoint (docs/digit_model.md), assembled once per machine from the
    committed compact weights (seconds), cached in .host/cache."""
    from digit_checkpoint import write_digit_checkpoint

    return write_digit_checkpoint(CHECKPOINT_CACHE)


def build_shared_checkpoints() -> None:
    """Both checkpoints, made before the two hosts' test runs start so they never race to write them."""
    print(f"test checkpoints: {tiny_checkpoint_file()}, {digit_checkpoint_file()}")


# Every key main.py passes (ComfyUI 0.23+ reads "ram_inactive" on every prompt; older ones ignore it).
NO_CACHE_ARGS = {"lru": 0, "ram": 0, "ram_inactive": 0}


class _SilentServer:
    """What PromptExecutor needs of a server: it records the messages instead of sending them."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclass
class GraphResult:
    success: bool
    outputs: dict = field(default_factory=dict)  # node id -> per output slot, the list of its values
    ui: dict = field(default_factory=dict)
    error: dict | None = None
    messages: list = field(default_factory=list)

    def output(self, node_id: str, index: int = 0):
        """The value of one output slot (the first, for a list output)."""
        return self.outputs[str(node_id)][index][0]

    def output_list(self, node_id: str, index: int = 0) -> list:
        return list(self.outputs[str(node_id)][index])


class ValidationFailed(AssertionError):
    pass


class ComfyHost:
    """ComfyUI's node registry with the pack loaded, and a runner for API-format graphs."""

    def __init__(self):
        self.base_dir = prepare_comfy_imports()
        put_comfyui_first_on_path()
        import folder_paths
        import nodes

        self.nodes = nodes
        self.folder_paths = folder_paths
        asyncio.run(self._load())
        install_pack_alias()

    async def _load(self):
        await self.nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False)
        if not await self.nodes.load_custom_node(str(PACK_ROOT)):
            raise RuntimeError("ComfyUI failed to load the multireward pack (see the log above)")

    def models_dir(self, folder: str) -> Path:
        path = Path(self.folder_paths.get_folder_paths(folder)[0])
        path.mkdir(parents=True, exist_ok=True)
        return path

    def validate(self, graph: dict):
        import execution

        return asyncio.run(execution.validate_prompt(str(uuid.uuid4()), graph, None))

    def run(self, graph: dict, expect_success: bool = True) -> GraphResult:
        import execution

        valid, error, outputs, node_errors = self.validate(graph)
        if not valid:
            if expect_success:
                raise ValidationFailed(f"graph did not validate: {error} {node_errors}")
            return GraphResult(False, error={"validation": error, "node_errors": node_errors})
        server = _SilentServer()
        executor = execution.PromptExecutor(
            server, cache_type=execution.CacheType.NONE, cache_args=NO_CACHE_ARGS
        )
        prompt_id = str(uuid.uuid4())
        # Keep every node's outputs so tests can read them (CacheType.NONE drops them otherwise).
        captured: dict[str, list] = {}
        original_set = executor.caches.outputs.set

        def capture(node_id, value):
            captured[str(node_id)] = value.outputs
            return original_set(node_id, value)

        executor.caches.outputs.set = capture
        executor.execute(graph, prompt_id, {}, outputs)
        error = None
        for event, data in executor.status_messages:
            if event in ("execution_error", "execution_interrupted"):
                error = {"event": event, **data}
        result = GraphResult(
            success=executor.success and error is None,
            outputs=captured,
            ui=executor.history_result.get("outputs", {}),
            error=error,
            messages=executor.status_messages,
        )
        if expect_success and not result.success:
            raise AssertionError(f"graph failed: {error}")
        return result
