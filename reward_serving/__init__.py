"""The pack's rewards on Ray Serve, behind the Remote Reward protocol (docs/serving.md).

A separate application for a Ray cluster: ComfyUI and the nodes never import it, and `ray[serve]`
is not a dependency of the pack (see reward_serving/requirements.txt).
"""
