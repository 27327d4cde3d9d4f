"""A small learned SD1.5-layout model of scikit-learn's handwritten digits (docs/digit_model.md).

Dev-only, like the rest of tests/support: the demo, the example-workflow pictures, the tests and
the benchmarks use it; the pack itself never imports it. Plain torch: nothing here imports ComfyUI
or scikit-learn, so the checkpoint can be assembled anywhere. `compact` turns the committed weights
(digits_sd15_compact.safetensors, beside this file) into the full checkpoint; `narrow_sd15` is the
small network those weights belong to; `codec` sets the VAE by hand; `recognise` reads a digit
back (nearest load_digits centroid).
"""
