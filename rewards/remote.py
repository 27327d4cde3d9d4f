"""A black-box reward behind HTTP: the case Sample Reward Soups exists for (expensive judges such as
a VLM). Protocol:

    POST <url>   {"prompt": str, "images": [base64 PNG, ...]}
    answer       {"scores": [float, ...]}   one score per image, in order

Images go in batches of `batch_size`, at most `max_concurrent` requests at a time. A request that
fails (connection refused, timeout, HTTP 5xx/408/429, malformed JSON) is retried `retries` times,
waiting backoff_s, 2*backoff_s, ...; then scoring stops with an error naming the URL. A wrong
number of scores is an error at once (a server bug, not a hiccup). An API key is read from the
environment variable the node names and sent as "Authorization: Bearer <key>"; it never appears
in the workflow.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .base import Reward, RewardError

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RemoteSettings:
    url: str
    batch_size: int = 8
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 1.0
    max_concurrent: int = 2
    api_key_env: str = ""
    label: str = "remote"
    needs_prompt: bool = True

    def check(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise RewardError(f"url: '{self.url}' is not an http:// or https:// address")
        for field, value, lowest in (
            ("batch_size", self.batch_size, 1),
            ("max_concurrent", self.max_concurrent, 1),
            ("retries", self.retries, 0),
        ):
            if value < lowest:
                raise RewardError(f"{field}: must be at least {lowest}, got {value}")
        if not self.timeout_s > 0 or self.backoff_s < 0:
            raise RewardError(
                f"timeout_s must be > 0 and backoff_s >= 0, got {self.timeout_s}, {self.backoff_s}"
            )


class RetryableFailure(Exception):
    """A failure worth another attempt (the server may recover)."""


def png_base64(image: torch.Tensor) -> str:
    """One [H, W, 3] image in [0, 1] as base64 PNG (8 bits, rounded like ComfyUI's SaveImage)."""
    array = (image.cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class RemoteHttpReward(Reward):
    name = "remote_http"

    def __init__(self, settings: RemoteSettings) -> None:
        super().__init__()
        settings.check()
        self.settings = settings
        self.needs_prompt = settings.needs_prompt
        self.requests_sent = 0

    @property
    def label(self) -> str:
        return self.settings.label or self.name

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        size = self.settings.batch_size
        batches = [images[start : start + size] for start in range(0, images.shape[0], size)]
        headers = self._headers()
        workers = min(self.settings.max_concurrent, len(batches))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote-reward") as pool:
            results = list(pool.map(lambda batch: self._score_batch(batch, prompt, headers), batches))
        return torch.tensor(
            [score for batch_scores in results for score in batch_scores], dtype=torch.float64
        )

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        variable = self.settings.api_key_env.strip()
        if variable:
            key = os.environ.get(variable)
            if not key:
                raise RewardError(
                    f"reward '{self.label}': api_key_env names the environment variable '{variable}', "
                    "but it is not set in the environment ComfyUI runs in"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _score_batch(self, batch: torch.Tensor, prompt: str, headers: dict) -> list[float]:
        body = json.dumps({"prompt": prompt, "images": [png_base64(image) for image in batch]}).encode()
        attempts = self.settings.retries + 1
        failure = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                return self._post_once(body, headers, batch.shape[0])
            except RetryableFailure as error:
                failure = error
        raise RewardError(
            f"reward '{self.label}': the scoring server at {self.settings.url} gave no valid answer "
            f"after {attempts} attempt(s): {failure}"
        )

    def _post_once(self, body: bytes, headers: dict, count: int) -> list[float]:
        request = urllib.request.Request(self.settings.url, data=body, headers=headers, method="POST")
        self.requests_sent += 1
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            if error.code in RETRYABLE_STATUS:
                raise RetryableFailure(f"HTTP {error.code} {error.reason}") from error
            raise RewardError(
                f"reward '{self.label}': the scoring server at {self.settings.url} refused the request: "
                f"HTTP {error.code} {error.reason}"
                + (" (check the API key)" if error.code in (401, 403) else "")
            ) from error
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
                raise RetryableFailure(f"no answer within {self.settings.timeout_s:g} s (timeout)") from error
            raise RetryableFailure(f"cannot reach the server ({reason})") from error
        return self._parse_scores(raw, count)

    def _parse_scores(self, raw: bytes, count: int) -> list[float]:
        try:
            reply = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise RetryableFailure(f"the answer is not JSON ({raw[:80]!r})") from error
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list) or not all(_is_number(s) for s in scores):
            raise RetryableFailure(f'the answer lacks a "scores" list of numbers ({str(reply)[:80]})')
        if len(scores) != count:
            raise RewardError(
                f"reward '{self.label}': the scoring server at {self.settings.url} returned "
                f"{len(scores)} scores for {count} images"
            )
        return [float(s) for s in scores]


def _is_number(value) -> bool:
    # NaN and inf pass here on purpose: Reward.score reports them naming the reward.
    return isinstance(value, (int, float)) and not isinstance(value, bool)
