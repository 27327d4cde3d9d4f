"""The one place that touches ComfyUI internals.

Everything else in the pack calls these small helpers, so when ComfyUI changes only this package
changes. Nothing here runs at import time beyond importing ComfyUI modules.
"""
