"""The one place that touches ComfyUI internals (ruff's banned-api rule refuses ComfyUI imports
anywhere else in the pack).

Everything else in the pack calls these small helpers, so when ComfyUI changes only this package
changes. Nothing here runs at import time beyond importing ComfyUI modules.

- srsoup: SRSoup's run on comfy.sample.sample_custom and its SAMPLER (the CFG model, the VAE and
  the rewards behind the maths' denoise and score).
- blend_model, lora: Diffusion Blend's MODEL patch and the LoRA variants it swaps in per call.
- sampling: ComfyUI's sampler and scheduler lists and the stock KSampler run.
- reward_models: ComfyModelManager, which puts the rewards under ComfyUI's model management.
- folders: the rewards models folder and report files in the output folder.
- interrupt: ComfyUI's interrupt, checked in every long loop.
"""
