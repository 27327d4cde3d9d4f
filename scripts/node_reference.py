"""Write docs/nodes.md: every node of the pack with every input, its type, default and range,
read from a real server's /object_info so the reference never drifts from the code.

    .host/comfyui-0.33.0/venv/bin/python scripts/node_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = PACK_ROOT / "docs" / "nodes.md"


def describe_input(name: str, spec: list, optional: bool) -> str:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        shown = ", ".join(f"`{c}`" for c in choices[:8]) + (", ..." if len(choices) > 8 else "")
        kind_text, range_text = "choice", shown or "(files in the folder)"
    else:
        kind_text = kind
        bounds = [f"{k} {options[k]}" for k in ("min", "max", "step") if k in options]
        range_text = ", ".join(bounds)
    default = options.get("default")
    default_text = "" if default is None else f"`{default}`".replace("\n", " ")
    tooltip = (options.get("tooltip") or "").replace("\n", " ").replace("|", "\\|")
    label = f"{name}{' (optional)' if optional else ''}"
    return f"| {label} | {kind_text} | {default_text} | {range_text} | {tooltip} |"


def node_section(node_id: str, info: dict) -> list[str]:
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
            lines.append(describe_input(name, specs[name], group == "optional"))
    outputs = [
        f"`{name}` ({kind})"
        for name, kind in zip(info.get("output_name", []), info.get("output", []), strict=False)
    ]
    lines += ["", "Outputs: " + (", ".join(outputs) if outputs else "none (saves or shows its result)"), ""]
    return lines


def main() -> int:
    sys.path.insert(0, str(PACK_ROOT / "scripts"))
    from comfy_server import ComfyServer

    with ComfyServer() as server:
        object_info = server.get("/object_info")
    ours = sorted((k, v) for k, v in object_info.items() if k.startswith("MultiReward_"))
    lines = ["# Node reference", "", "Generated from a running ComfyUI by `scripts/node_reference.py`.", ""]
    for node_id, info in ours:
        lines += node_section(node_id, info)
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text("\n".join(lines))
    print(f"wrote {OUTPUT.relative_to(PACK_ROOT)} ({len(ours)} nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
