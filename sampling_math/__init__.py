"""The maths of both methods as pure functions on tensors. Never imports ComfyUI.

- ancestral: the ancestral split of one step, for k-diffusion (eps/v) and rectified-flow models.
- search_gradient: z-scores, search directions, the shell update and the soup noise correction.
- weights: simplex weight rows, their parsing and grids.
- guidance: the multi-reward guided sampling loop (weighted sum, Sample Reward Soups, single).
- soup_schedule: how many guided steps each chain soups (one K for all, or per chain by its row).
- ledger: exact counts of reward queries and look-ahead passes.
- pareto: non-dominated filtering and exact hypervolume.
- blend: Diffusion Blend combinations and the stochastic per-step draw schedule.
"""
