"""Workflows in both of ComfyUI's formats: the UI format (what the frontend saves, loads and shows
in the template browser) and the API format (what POST /prompt takes).

`build_ui_workflow` turns a compact description into a UI workflow whose widget values are laid
out exactly as the frontend expects for the node definitions in /object_info; `ui_to_api` does
what the frontend's "queue prompt" does. Both read the widget order from /object_info, so the
example workflows stay in step with the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: Nodes that exist only in the frontend and never reach the server.
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
BYPASSED_MODES = {2, 4}  # muted, bypassed


def ordered_inputs(definition: dict) -> list[tuple[str, list]]:
    """(name, spec) of required then optional inputs, in the node's declared order."""
    order = definition.get("input_order", {})
    inputs = definition.get("input", {})
    result = []
    for group in ("required", "optional"):
        specs = inputs.get(group, {})
        for name in order.get(group, list(specs)):
            result.append((name, specs[name]))
    return result


def is_widget(spec: list) -> bool:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def has_control_widget(name: str, spec: list) -> bool:
    """The frontend adds a 'control after generate' value after seed-like INT widgets."""
    options = spec[1] if len(spec) > 1 else {}
    if "control_after_generate" in options:
        return bool(options["control_after_generate"])
    return spec[0] == "INT" and name in ("seed", "noise_seed")


def widget_layout(definition: dict) -> list[tuple[str, bool]]:
    """(input name, is a control value) for every entry of the node's widgets_values."""
    layout = []
    for name, spec in ordered_inputs(definition):
        if is_widget(spec):
            layout.append((name, False))
            if has_control_widget(name, spec):
                layout.append((name, True))
    return layout


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI workflow, as the frontend would queue it."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", 0) in BYPASSED_MODES:
            continue
        definition = object_info.get(node["type"])
        if definition is None:
            raise KeyError(f"node type '{node['type']}' (node {node['id']}) is not installed on this server")
        inputs = {}
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                _, source, slot, *_ = links[socket["link"]]
                inputs[socket["name"]] = [str(source), slot]
        values = node.get("widgets_values", [])
        for (name, is_control), value in zip(widget_layout(definition), values, strict=False):
            if not is_control and name not in inputs:
                inputs[name] = value
        # A workflow saved before a node gained a widget: the frontend gives it its default.
        for name, default in widget_defaults(definition).items():
            inputs.setdefault(name, default)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def widget_defaults(definition: dict) -> dict:
    """The declared default of every widget that has one."""
    return {
        name: spec[1]["default"]
        for name, spec in ordered_inputs(definition)
        if is_widget(spec) and len(spec) > 1 and "default" in spec[1]
    }


@dataclass
class NodeSpec:
    """One node of a compact workflow description: widget values by name, links by input name."""

    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: str | None = None
    size: tuple[int, int] = (320, 160)


def build_ui_workflow(nodes: list[NodeSpec], object_info: dict, extra: dict | None = None) -> dict:
    by_id = {node.id: node for node in nodes}
    link_rows, outgoing = [], {}
    ui_nodes = []
    for order, node in enumerate(nodes):
        definition = object_info[node.type]
        sockets = []
        for name, spec in ordered_inputs(definition):
            if name in node.links:
                source, slot = node.links[name]
                kind = object_info[by_id[source].type]["output"][slot]
                link_id = len(link_rows) + 1
                link_rows.append([link_id, source, slot, node.id, len(sockets), kind])
                outgoing.setdefault((source, slot), []).append(link_id)
                socket = {
                    "name": name,
                    "type": spec[0] if isinstance(spec[0], str) else "COMBO",
                    "link": link_id,
                }
                if is_widget(spec):
                    socket["widget"] = {"name": name}
                sockets.append(socket)
            elif not is_widget(spec):
                sockets.append({"name": name, "type": spec[0], "link": None})
        values = []
        for name, is_control in widget_layout(definition):
            if is_control:
                values.append("fixed")
            else:
                spec = dict(ordered_inputs(definition))[name]
                default = (spec[1] if len(spec) > 1 else {}).get("default")
                if default is None and isinstance(spec[0], list) and spec[0]:
                    default = spec[0][0]
                values.append(node.widgets.get(name, default))
        unknown = set(node.widgets) - {name for name, _ in widget_layout(definition)}
        if unknown:
            raise KeyError(f"{node.type} has no widget named {sorted(unknown)}")
        ui_nodes.append(
            {
                "id": node.id,
                "type": node.type,
                "pos": list(node.pos),
                "size": list(node.size),
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": sockets,
                "outputs": [],
                "properties": {"Node name for S&R": node.type},
                "widgets_values": values,
                **({"title": node.title} if node.title else {}),
            }
        )
    for ui_node in ui_nodes:
        definition = object_info[ui_node["type"]]
        ui_node["outputs"] = [
            {"name": name, "type": kind, "links": outgoing.get((ui_node["id"], slot), []), "slot_index": slot}
            for slot, (name, kind) in enumerate(
                zip(definition["output_name"], definition["output"], strict=True)
            )
        ]
    return {
        "last_node_id": max(by_id),
        "last_link_id": len(link_rows),
        "nodes": ui_nodes,
        "links": link_rows,
        "groups": [],
        "config": {},
        "extra": extra or {},
        "version": 0.4,
    }


def replace_widget(workflow: dict, node_type: str, name: str, value, object_info: dict) -> int:
    """Set a widget value on every node of a type (e.g. swap the checkpoint); returns how many."""
    count = 0
    for node in workflow["nodes"]:
        if node["type"] == node_type:
            for index, (widget, is_control) in enumerate(widget_layout(object_info[node_type])):
                if widget == name and not is_control:
                    node["widgets_values"][index] = value
                    count += 1
    return count
