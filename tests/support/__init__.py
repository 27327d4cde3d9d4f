"""What only tests and benchmarks use, kept out of the shipped pack.

- toy: a closed-form Gaussian-mixture problem with an exact denoiser, for guided sampling.
- paper_costs: the SRSoup paper's query formulas, to compare the pack's exact counts against.
- paper_metrics: the papers' measures and settings only the benchmarks compare with.
- pack_alias: `multireward.*` importable whatever the checkout's folder is called.
- reward_references, install_reward_references: independent reward implementations for parity.
- srsoup_graphs: API-format SRSoup graphs; judges: counting and misbehaving reward servers.
- digit_model: a small learned SD1.5-layout digits model (committed weights, checkpoint assembly),
  for the demo, the example-workflow pictures and the benchmarks (docs/digit_model.md).

pytest finds this package through `pythonpath` in pyproject.toml; bench scripts put tests/ on their
path themselves.
"""
