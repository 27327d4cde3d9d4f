"""RewardLoader and RewardScore."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..comfy_adapter.folders import resolve_reward_file, reward_files
from ..comfy_adapter.reward_models import ComfyModelManager
from ..rewards.base import Reward, RewardError
from ..rewards.model_manager import DTYPE_NAMES
from ..rewards.registry import build_reward, get_spec, reward_names
from ..rewards.remote import MAX_TOTAL_BACKOFF_S, RemoteHttpReward, RemoteSettings, api_key_env_problem
from ..rewards.scoring import score_table
from .types import NO_FILE, RewardType

CATEGORY = "multireward/rewards"
PROMPT_TOOLTIP = (
    "The prompt the images were made from, for prompt-based rewards (HPSv2, PickScore, ImageReward, "
    "CLIP score). Tip: wire one String node into both CLIPTextEncode and this input."
)
#: The reward inputs of every node that scores: the first is required, the others optional.
REWARD_SLOTS = ("reward", "reward_2", "reward_3", "reward_4")


def reward_inputs(first_tooltip: str, second_tooltip: str | None = None) -> list:
    """The REWARD inputs, one per slot of REWARD_SLOTS."""
    tooltips = [first_tooltip, second_tooltip]
    return [
        RewardType.Input(slot, optional=index > 0, tooltip=tooltips[index] if index < len(tooltips) else None)
        for index, slot in enumerate(REWARD_SLOTS)
    ]


def connected_rewards(inputs: dict) -> list[Reward]:
    """The rewards on a node's reward slots, in slot order; a clear error for a wrong input."""
    rewards = []
    for slot in REWARD_SLOTS:
        reward = inputs.get(slot)
        if reward is None:
            continue
        if not isinstance(reward, Reward):
            raise RewardError(f"{slot}: expected a REWARD from Reward Loader, got {type(reward).__name__}")
        rewards.append(reward)
    if not rewards:
        raise RewardError("reward: no reward connected; connect a REWARD from Reward Loader")
    return rewards


class RewardLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_RewardLoader",
            display_name="Reward Loader",
            category=CATEGORY,
            description="Loads a reward (a scorer of images, higher is better) for RewardScore and the "
            "SRSoup samplers. Weights come only from models/rewards; nothing is downloaded.",
            inputs=[
                io.Combo.Input(
                    "reward_name",
                    options=reward_names(),
                    tooltip="Which reward. "
                    + " ".join(f"{n}: {get_spec(n).description}" for n in reward_names()),
                ),
                io.Combo.Input(
                    "weights_file",
                    options=[NO_FILE, *reward_files()],
                    default=NO_FILE,
                    tooltip="Weights file from models/rewards (or a rewards path in extra_model_paths.yaml). "
                    "Weight-free rewards such as jpeg_compressibility ignore it.",
                ),
                io.Combo.Input(
                    "companion_file",
                    options=[NO_FILE, *reward_files()],
                    default=NO_FILE,
                    optional=True,
                    tooltip="A second file some rewards need, also from models/rewards: laion_aesthetic's "
                    "CLIP ViT-L/14 image tower (unless the head file already holds it). Others ignore it.",
                ),
                io.Combo.Input(
                    "dtype",
                    options=list(DTYPE_NAMES),
                    default="auto",
                    tooltip="Precision of a neural reward: auto is fp16 on GPUs that support it, fp32 on CPU.",
                ),
            ],
            outputs=[RewardType.Output(display_name="REWARD")],
        )

    @classmethod
    def execute(
        cls, reward_name: str, weights_file: str, dtype: str, companion_file: str = NO_FILE
    ) -> io.NodeOutput:
        spec = get_spec(reward_name)
        path = companion_path = None
        if spec.needs_checkpoint:
            if weights_file == NO_FILE:
                raise RewardError(
                    f"weights_file: reward '{reward_name}' needs a checkpoint file "
                    f"(e.g. {spec.expected_file}) in models/rewards; none was chosen"
                )
            path = resolve_reward_file(weights_file)
        if spec.companion and companion_file not in (None, NO_FILE):
            companion_path = resolve_reward_file(companion_file)
        reward = build_reward(
            reward_name, path, dtype=dtype, companion_path=companion_path, manager=ComfyModelManager()
        )
        return io.NodeOutput(reward)


class RewardScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_RewardScore",
            display_name="Reward Score",
            category=CATEGORY,
            description="Scores every image with one to four rewards and shows a table per image.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="The images to score."),
                *reward_inputs("A REWARD from Reward Loader."),
                io.String.Input("prompt", default="", multiline=True, optional=True, tooltip=PROMPT_TOOLTIP),
            ],
            outputs=[
                io.Float.Output(
                    display_name="scores",
                    is_output_list=True,
                    tooltip="Scores of the first reward, one per image.",
                ),
                io.String.Output(display_name="table", tooltip="The scores as readable text."),
                io.String.Output(display_name="json", tooltip="Every reward's scores per image, as JSON."),
            ],
        )

    @classmethod
    def execute(cls, images, prompt="", **reward_slots) -> io.NodeOutput:
        table = score_table(images, connected_rewards(reward_slots), prompt or "")
        text = table.as_text()
        return io.NodeOutput(
            table.columns[0],
            text,
            json.dumps(table.as_dict()),
            ui=ui.PreviewText(text),
        )


class RemoteReward(io.ComfyNode):
    """The remote_http reward: a black-box scorer over HTTP (protocol in docs/rewards.md)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MultiReward_RemoteReward",
            display_name="Remote Reward (HTTP)",
            category=CATEGORY,
            description="A reward computed by a server: POST {prompt, images: [base64 PNG]} -> {scores}. "
            "rewards/reference_server.py is a small example server.",
            inputs=[
                io.String.Input("url", default="http://127.0.0.1:8765/", tooltip="Where to POST the images."),
                io.String.Input(
                    "label", default="remote", tooltip="The reward's name in tables and reports."
                ),
                io.Int.Input("batch_size", default=8, min=1, max=1024, tooltip="Images per request."),
                io.Int.Input(
                    "max_concurrent", default=2, min=1, max=64, tooltip="Requests in flight at once."
                ),
                io.Float.Input(
                    "timeout_s",
                    default=120.0,
                    min=0.1,
                    max=3600.0,
                    step=0.1,
                    tooltip="Seconds to wait for one answer. Cancel stops the wait within a second.",
                ),
                io.Int.Input(
                    "retries",
                    default=2,
                    min=0,
                    max=20,
                    tooltip="Extra attempts after a failure (down, timeout, HTTP 5xx/408/429, bad answer). "
                    f"Retrying stops once the waits between attempts add up to {MAX_TOTAL_BACKOFF_S:g} s.",
                ),
                io.Float.Input(
                    "backoff_s",
                    default=1.0,
                    min=0.0,
                    max=600.0,
                    step=0.1,
                    tooltip="Wait before retry k: backoff_s * 2^(k-1); all waits of one batch add up to at "
                    f"most {MAX_TOTAL_BACKOFF_S:g} s (the last is shortened, later retries dropped). Cancel "
                    "ends a wait at once.",
                ),
                io.String.Input(
                    "api_key_env",
                    default="",
                    tooltip="NAME of an environment variable holding the API key (e.g. JUDGE_API_KEY), sent "
                    "as a Bearer token to this url's server only (redirects elsewhere are refused). Never "
                    "paste the key itself here: text that is not a set variable is refused.",
                ),
                io.Boolean.Input(
                    "requires_prompt",
                    default=True,
                    tooltip="Refuse to score with an empty prompt (most judges need it).",
                ),
            ],
            outputs=[RewardType.Output(display_name="REWARD")],
        )

    @classmethod
    def validate_inputs(cls, api_key_env=None):
        # Before the prompt is queued, so a key pasted here never reaches /history. None: the text
        # comes through a link and is checked when the node runs.
        if api_key_env is None:
            return True
        return api_key_env_problem(api_key_env) or True

    @classmethod
    def execute(
        cls,
        url,
        label,
        batch_size,
        max_concurrent,
        timeout_s,
        retries,
        backoff_s,
        api_key_env,
        requires_prompt,
    ) -> io.NodeOutput:
        settings = RemoteSettings(
            url=url.strip(),
            batch_size=batch_size,
            timeout_s=timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            max_concurrent=max_concurrent,
            api_key_env=api_key_env,
            label=label.strip() or "remote",
            needs_prompt=requires_prompt,
        )
        return io.NodeOutput(RemoteHttpReward(settings, manager=ComfyModelManager()))


NODES = [RewardLoader, RewardScore, RemoteReward]
