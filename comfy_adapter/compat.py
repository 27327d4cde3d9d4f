"""Names ComfyUI moved between the versions the pack supports (0.3.75 to 0.33): each imported from
its current home first, then from where older versions keep it. Nothing else here."""

try:
    from comfy.utils import string_to_seed  # moved here after 0.3.75
except ImportError:  # ComfyUI 0.3.75; newer versions keep a wrapper there that logs a warning per call
    from comfy.model_patcher import string_to_seed

__all__ = ["string_to_seed"]
