"""multireward: inference-time multi-preference alignment for ComfyUI.

ComfyUI loads this folder as a custom-node pack. Importing it is cheap on purpose: no model is
loaded and no device is touched here; the nodes are imported when ComfyUI asks for them.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .pack_nodes import MultirewardExtension

    return MultirewardExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
