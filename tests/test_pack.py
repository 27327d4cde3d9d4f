"""The pack as ComfyUI sees it: registration, folders, cheap import, layering."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import harness
import pytest


def test_pack_registers_its_nodes(comfy):
    mappings = comfy.nodes.NODE_CLASS_MAPPINGS
    for node_id in ("MultiReward_RewardLoader", "MultiReward_RewardScore"):
        assert node_id in mappings, node_id
    assert comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS["MultiReward_RewardLoader"] == "Reward Loader"


def test_web_directory_is_registered(comfy):
    web_dirs = {str(v) for v in comfy.nodes.EXTENSION_WEB_DIRS.values()}
    assert str(harness.PACK_ROOT / "js") in web_dirs


def test_rewards_folder_is_registered_under_models(comfy):
    paths = comfy.folder_paths.get_folder_paths("rewards")
    assert paths[0] == str(comfy.base_dir / "models" / "rewards")
    assert ".safetensors" in comfy.folder_paths.folder_names_and_paths["rewards"][1]


def test_rewards_folder_keeps_paths_from_extra_model_paths(comfy, tmp_path):
    from multireward.comfy_adapter.folders import register_rewards_folder

    entries = comfy.folder_paths.folder_names_and_paths
    saved = entries["rewards"]
    try:
        # What extra_model_paths.yaml leaves behind when a user names a rewards folder.
        user_folder = str(tmp_path / "my_rewards")
        entries["rewards"] = ([user_folder], set())
        register_rewards_folder()
        paths, extensions = entries["rewards"]
        assert paths[0] == user_folder
        assert str(comfy.base_dir / "models" / "rewards") in paths
        assert {".safetensors", ".pt"} <= extensions
    finally:
        entries["rewards"] = saved


def test_importing_the_pack_loads_no_model_and_no_torch():
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location(
            "pack", {str(harness.PACK_ROOT / "__init__.py")!r},
            submodule_search_locations=[{str(harness.PACK_ROOT)!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules["pack"] = module
        spec.loader.exec_module(module)
        heavy = [m for m in ("torch", "comfy", "open_clip", "transformers") if m in sys.modules]
        print(heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["sampling_math", "rewards", "plots"])
def test_maths_rewards_and_plots_never_import_comfyui(package):
    """Every module of the package imports in a Python without ComfyUI on its path."""
    code = textwrap.dedent(
        f"""
        import importlib, importlib.util, pkgutil, sys
        spec = importlib.util.spec_from_file_location(
            "pack", {str(harness.PACK_ROOT / "__init__.py")!r},
            submodule_search_locations=[{str(harness.PACK_ROOT)!r}])
        sys.modules["pack"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["pack"])
        package = importlib.import_module("pack.{package}")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module("pack.{package}." + info.name)
        print([m for m in sys.modules if m == "comfy" or m.startswith(("comfy.", "folder_paths", "nodes"))])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_maths_tier_runs_without_comfyui():
    """`pytest tests/math` (the first test tier) imports no ComfyUI module. Run in the host's own
    Python, where ComfyUI is one path entry away: a tier that set up the host would show here."""
    code = textwrap.dedent(
        """
        import json, sys, pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/math/test_srsoup_weights_ledger_pareto.py"])
        loaded = [m for m in sys.modules if m.split(".")[0] in ("comfy", "comfy_api", "folder_paths", "nodes")]
        print(json.dumps({"exit": int(code), "comfy_modules": loaded}))
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=harness.PACK_ROOT)
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome == {"exit": 0, "comfy_modules": []}, run.stdout[-2000:]
    assert "passed" in run.stdout and "the maths alone, without ComfyUI" in run.stdout


@pytest.mark.parametrize(
    ("path", "flagged"),
    [
        ("pack_nodes/probe.py", 4),
        ("rewards/probe.py", 4),
        ("sampling_math/probe.py", 4),
        ("plots/probe.py", 4),
        ("comfy_adapter/probe.py", 0),
    ],
)
def test_the_linter_lets_only_the_adapter_import_comfyui(path, flagged):
    """ruff's banned-api rule (pyproject.toml): ComfyUI's modules, ComfyUI's nodes.py and comfy_api
    beyond the node schema are refused outside comfy_adapter/; the node schema itself is allowed."""
    source = (
        "import comfy.samplers\n"
        "import folder_paths\n"
        "import nodes\n"
        "from comfy_api.internal import register_versions\n"
        "from comfy_api.latest import ComfyExtension, io, ui\n"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "TID251",
            "--stdin-filename",
            path,
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        cwd=harness.PACK_ROOT,
    )
    assert run.stdout.count("TID251") == flagged, run.stdout + run.stderr


#: Which of the pack's packages each package may import (docs/architecture.md): arrows point down.
ALLOWED_IMPORTS = {
    "pack_nodes": {"comfy_adapter", "sampling_math", "rewards", "plots"},
    "comfy_adapter": {"sampling_math", "rewards"},
    "plots": {"sampling_math"},
    "sampling_math": set(),
    "rewards": set(),
}


def test_the_packages_import_one_way():
    import ast

    for package, allowed in ALLOWED_IMPORTS.items():
        for path in sorted((harness.PACK_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level >= 2:
                    targets = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                    for target in targets:
                        assert target in allowed, f"{path.relative_to(harness.PACK_ROOT)} imports {target}"


def test_the_registry_icon_is_a_file_of_the_pack():
    import tomllib

    config = tomllib.loads((harness.PACK_ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    # The Registry shows the Icon from the repository's main branch: it must be a file here.
    relative = config["Icon"].split("/main/", 1)[1]
    assert (harness.PACK_ROOT / relative).is_file(), relative


def test_pyproject_declares_a_comfyui_range_that_admits_every_test_host():
    """Read by ComfyUI's own pyproject parser (what Manager and the registry see)."""
    import comfy_hosts
    from comfy_config.config_parser import extract_node_configuration
    from packaging.specifiers import SpecifierSet

    declared = SpecifierSet(
        extract_node_configuration(str(harness.PACK_ROOT)).project.supported_comfyui_version
    )
    assert f">={comfy_hosts.OLDEST}" in {str(clause) for clause in declared}, declared
    assert all(declared.contains(version) for version in comfy_hosts.VERSIONS), declared
