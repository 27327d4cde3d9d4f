"""V3 node classes, one module per feature; this module gathers them into the extension."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from ..comfy_adapter.folders import register_rewards_folder
from . import blend as blend_nodes
from . import pareto as pareto_nodes
from . import rewards as reward_nodes
from . import srsoup as srsoup_nodes

FEATURE_MODULES = [reward_nodes, srsoup_nodes, pareto_nodes, blend_nodes]


class MultirewardExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_rewards_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # on_load is not called by every ComfyUI version; registering twice is harmless.
        register_rewards_folder()
        return [node for module in FEATURE_MODULES for node in module.NODES]
