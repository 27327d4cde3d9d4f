"""Rewards: scorers of images, higher is better, one interface for all (base.Reward).

Never imports ComfyUI, so rewards run anywhere torch runs (a script, a Ray Serve replica):

    from multireward.rewards.registry import build_reward      # or `rewards.registry` from the pack root
    reward = build_reward("hpsv2", "HPS_v2_compressed.pt", device="cuda:0")
    scores = reward.score(images, "a red fox")                  # images: [B, H, W, 3] in [0, 1]

- base: the Reward interface and RewardError; registry: which rewards exist and build_reward.
- model_manager: where a neural reward's module runs (plain torch here; ComfyUI's model management
  comes from comfy_adapter.reward_models); checkpoints: reading checkpoint files safely.
- one module per reward family (jpeg, colorfulness, sharpness, aesthetic, clip_rewards, imagereward),
  what they share (neural, clip_arch, preprocess), and the remote HTTP scorer (remote).
"""
