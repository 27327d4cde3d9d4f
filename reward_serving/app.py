"""One reward as a Ray Serve application, speaking the Remote Reward protocol unchanged:

    POST <route_prefix>   {"prompt": str, "images": [base64 PNG, ...]}  ->  {"scores": [float, ...]}
    GET  <route_prefix>   health: {"status": "ok", "reward": ..., "replica": ...} (no key needed)

A Serve config file (serve_local.yaml, serve_cluster.yaml) lists one application per reward, each
with its own route, replicas, autoscaling and GPU share; `app_builder` turns the application's
`args` (reward_serving.settings.ServingSettings) into the deployment. Each image of a request is
one call of the batched scorer, so a replica scores the images of every request it has in flight
together (serve.batch), grouped by prompt and image size.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import io
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import ray
import torch
from PIL import Image
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from .pack import load_reward
from .settings import ServingSettings, read_api_key

# Serve routes this logger into the replica's own log file (logs/serve/replica_<app>_<...>.log).
logger = logging.getLogger("ray.serve")


class BadQuery(ValueError):
    """The request is not {"prompt": str, "images": [base64 PNG, ...]}; answered with HTTP 400."""


@dataclass(frozen=True)
class ImageQuery:
    prompt: str
    #: [H, W, 3] float32 in [0, 1], as ComfyUI's IMAGE.
    image: torch.Tensor


def decode_query(body: bytes) -> tuple[str, list[torch.Tensor]]:
    try:
        query = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadQuery(f"the body is not JSON ({error})") from error
    if not isinstance(query, dict) or not isinstance(query.get("images"), list):
        raise BadQuery('expected {"prompt": str, "images": [base64 PNG, ...]}')
    prompt = query.get("prompt", "")
    if not isinstance(prompt, str):
        raise BadQuery(f"prompt: expected a string, got {type(prompt).__name__}")
    return prompt, [decode_png(index, text) for index, text in enumerate(query["images"])]


def decode_png(index: int, text) -> torch.Tensor:
    """One base64 PNG as [H, W, 3] in [0, 1]: the 8-bit values Remote Reward sent, divided by 255."""
    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as image:
            array = np.asarray(image.convert("RGB"))
    except (binascii.Error, TypeError, ValueError, OSError) as error:
        raise BadQuery(f"images[{index}]: not a base64 PNG ({error})") from error
    return torch.from_numpy(array.copy()).float() / 255.0


@serve.deployment(name="Reward", max_ongoing_requests=32)
class RewardDeployment:
    def __init__(self, args: dict) -> None:
        self.settings = ServingSettings.from_args(args)
        self.api_key = read_api_key(self.settings.api_key_env)
        # The GPU (share) Ray gave this replica, if any: never a GPU the config did not ask for.
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.reward = load_reward(
            self.settings.reward,
            self.settings.weights_path(),
            self.settings.companion_path(),
            self.settings.dtype,
            device,
        )
        self.score_images.set_max_batch_size(self.settings.max_batch_size)
        self.score_images.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        self.replica = serve.get_replica_context().replica_id.unique_id

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(self.health())
        if request.method != "POST":
            return JSONResponse({"error": "use POST to score, GET for health"}, status_code=405)
        if not self.authorized(request):
            return JSONResponse(
                {"error": "missing or wrong API key"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            prompt, images = await asyncio.to_thread(decode_query, await request.body())
        except BadQuery as error:
            return JSONResponse({"error": f"bad request: {error}"}, status_code=400)
        if self.reward.needs_prompt and not prompt.strip():
            return JSONResponse(
                {"error": f"reward '{self.settings.reward}' scores against a prompt; the prompt is empty"},
                status_code=400,
            )
        # The replica's own record of what it scores, in its Serve log (the tests read it).
        logger.info("scoring %d images", len(images))
        scores = await asyncio.gather(*(self.score_images(ImageQuery(prompt, image)) for image in images))
        logger.info("scored %d images", len(images))
        return JSONResponse({"scores": scores})

    def authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {self.api_key}".encode())

    def health(self) -> dict:
        return {
            "status": "ok",
            "reward": self.settings.reward,
            "replica": self.replica,
            "images_scored": self.reward.images_seen,
        }

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def score_images(self, queries: list[ImageQuery]) -> list[float]:
        # In a thread, so the replica keeps taking requests (the next batch) while this one runs.
        return await asyncio.to_thread(self.score_groups, queries)

    def score_groups(self, queries: list[ImageQuery]) -> list[float]:
        """One reward call per (prompt, image size) group; scores back in the queries' order."""
        started = time.perf_counter()
        groups: dict[tuple, list[int]] = {}
        for index, query in enumerate(queries):
            groups.setdefault((query.prompt, tuple(query.image.shape)), []).append(index)
        scores = [0.0] * len(queries)
        for (prompt, _), indices in groups.items():
            batch = torch.stack([queries[index].image for index in indices])
            for index, score in zip(indices, self.reward.score(batch, prompt).tolist(), strict=True):
                scores[index] = score
        logger.info("batch of %d images in %.1f ms", len(queries), 1000 * (time.perf_counter() - started))
        return scores


def app_builder(args: dict) -> serve.Application:
    """`import_path: reward_serving.app:app_builder` in a Serve config; `args` as in ServingSettings."""
    settings = ServingSettings.from_args(args)  # fails the deploy, naming the argument
    return RewardDeployment.bind(dataclasses.asdict(settings))
