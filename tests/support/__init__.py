"""What only tests and benchmarks use, kept out of the shipped pack.

- toy: a closed-form Gaussian-mixture problem with an exact denoiser, for guided sampling.
- paper_costs: the SRSoup paper's query formulas, to compare the pack's exact counts against.
- digit_model: a small learned SD1.5-layout digits model (committed weights, checkpoint assembly),
  for the demo, the example-workflow pictures and the benchmarks (docs/digit_model.md).

Tests find this package through tests/ on sys.path (tests/conftest.py); bench scripts put tests/
on sys.path themselves.
"""
