"""Write docs/nodes.md: every node of the pack with every input, its type, default and range,
read from a real server's /object_info so the reference never drifts from the code (a server test
renders it again on each supported ComfyUI and compares).

    .host/comfyui-0.33.0/venv/bin/python scripts/node_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = PACK_ROOT / "docs" / "nodes.md"


def combo_choices(spec: list) -> list | None:
    """The choices of a combo input, in either form /object_info writes (a list, or COMBO + options)."""
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        return kind
    return options.get("options", []) if kind == "COMBO" else None


def host_lists(object_info: dict) -> dict[tuple, str]:
    """ComfyUI's own sampler and scheduler lists (KSampler's), which differ between ComfyUI versions:
    the reference names them instead of listing them, so it reads the same on every version."""
    inputs = object_info["KSampler"]["input"]["required"]
    return {
        tuple(combo_choices(inputs["sampler_name"])): "ComfyUI's samplers (as KSampler)",
        tuple(combo_choices(inputs["scheduler"])): "ComfyUI's schedulers (as KSampler)",
    }


def describe_input(name: str, spec: list, optional: bool, named_lists: dict[tuple, str]) -> str:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    choices = combo_choices(spec)
    if choices is not None:
        shown = ", ".join(f"`{c}`" for c in choices[:8]) + (", ..." if len(choices) > 8 else "")
        kind_text, range_text = "choice", named_lists.get(tuple(choices)) or shown or "(files in the folder)"
    else:
        kind_text = kind
        bounds = [f"{k} {options[k]}" for k in ("min", "max", "step") if k in options]
        range_text = ", ".join(bounds)
    default = options.get("default")
    default_text = "" if default is None else f"`{default}`".replace("\n", " ")
    tooltip = (options.get("tooltip") or "").replace("\n", " ").replace("|", "\\|")
    label = f"{name}{' (optional)' if optional else ''}"
    return f"| {label} | {kind_text} | {default_text} | {range_text} | {tooltip} |"


def node_section(node_id: str, info: dict, named_lists: dict[tuple, str]) -> list[str]:
    lines = [
        f"## {info.get('display_name') or node_id}",
        "",
        f"`{node_id}` in {info.get('category', '')}",
        "",
    ]
    if info.get("description"):
        lines += [info["description"], ""]
    lines += [
        "| input | type | default | range / choices | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for group in ("required", "optional"):
        specs = info.get("input", {}).get(group, {})
        for name in info.get("input_order", {}).get(group, list(specs)):
            lines.append(describe_input(name, specs[name], group == "optional", named_lists))
    outputs = [
        f"`{name}` ({kind})"
        for name, kind in zip(info.get("output_name", []), info.get("output", []), strict=False)
    ]
    lines += ["", "Outputs: " + (", ".join(outputs) if outputs else "none (saves or shows its result)"), ""]
    return lines


def render(object_info: dict) -> str:
    """docs/nodes.md's text from a server's /object_info (a server with empty model folders)."""
    named_lists = host_lists(object_info)
    lines = ["# Node reference", "", "Generated from a running ComfyUI by `scripts/node_reference.py`.", ""]
    for node_id, info in sorted(object_info.items()):
        if node_id.startswith("MultiReward_"):
            lines += node_section(node_id, info, named_lists)
    return "\n".join(lines)


def main() -> int:
    sys.path.insert(0, str(PACK_ROOT / "scripts"))
    from comfy_server import ComfyServer

    with ComfyServer() as server:
        text = render(server.get("/object_info"))
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    sections = text.count("\n## ")
    print(f"wrote {OUTPUT.relative_to(PACK_ROOT)} ({sections} nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
