"""A black-box reward behind HTTP: the case Sample Reward Soups exists for (expensive judges such as
a VLM). Protocol:

    POST <url>   {"prompt": str, "images": [base64 PNG, ...]}
    answer       {"scores": [float, ...]}   one score per image, in order

Images go in batches of `batch_size`, at most `max_concurrent` requests at a time. A request that
fails (connection refused, timeout, HTTP 5xx/408/429, malformed JSON) is retried `retries` times,
waiting backoff_s, 2*backoff_s, ... (all waits of one batch together at most MAX_TOTAL_BACKOFF_S);
then scoring stops with an error naming the URL. A wrong number of scores is an error at once (a
server bug, not a hiccup).

The API key is read from the environment variable the node names and sent as
"Authorization: Bearer <key>" to the configured server only: a redirect within the same origin
(scheme, host and port) is followed with the same POST, a redirect anywhere else is refused before
anything is sent there. Text in api_key_env that is not a set variable is refused, and repeated in
the message only when it looks like a variable name (it may be a pasted key).

While the scoring thread waits on the judge it asks the model manager's stop check (ComfyUI's
interrupt) every INTERRUPT_POLL_S; on a stop it cuts the open connections and the retry waits.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .base import Reward, RewardError
from .model_manager import ModelManager, TorchModelManager

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
#: Redirects within the configured origin followed for one request; more is a loop.
MAX_REDIRECTS = 5
#: The waits before the retries of one batch add up to at most this many seconds; retrying stops
#: once they have. A judge that is still down after a minute of patience is down.
MAX_TOTAL_BACKOFF_S = 60.0
#: How often the scoring thread asks the host whether to stop while it waits on the judge.
INTERRUPT_POLL_S = 0.1
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RemoteSettings:
    url: str
    batch_size: int = 8
    timeout_s: float = 120.0
    retries: int = 2
    backoff_s: float = 1.0
    max_concurrent: int = 2
    api_key_env: str = field(default="", repr=False)
    label: str = "remote"
    needs_prompt: bool = True

    def check(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise RewardError(f"url: '{self.url}' is not an http:// or https:// address")
        for name, value, lowest in (
            ("batch_size", self.batch_size, 1),
            ("max_concurrent", self.max_concurrent, 1),
            ("retries", self.retries, 0),
        ):
            if value < lowest:
                raise RewardError(f"{name}: must be at least {lowest}, got {value}")
        if not self.timeout_s > 0 or self.backoff_s < 0:
            raise RewardError(
                f"timeout_s must be > 0 and backoff_s >= 0, got {self.timeout_s}, {self.backoff_s}"
            )
        problem = api_key_env_problem(self.api_key_env)
        if problem:
            raise RewardError(problem)


def api_key_env_problem(variable: str) -> str | None:
    """Why `variable` cannot name the environment variable holding the API key; None when it can
    (it is empty, or a variable that is set).

    The message repeats the text only when it looks like a conventional variable name: anything
    else may be the key itself, pasted in by mistake, and the message reaches the UI, the server
    log and, at run time, /history.
    """
    variable = str(variable).strip()
    if not variable or os.environ.get(variable):
        return None
    if looks_like_variable_name(variable):
        return (
            f"api_key_env: the environment variable '{variable}' is not set (or is empty) in the "
            "environment ComfyUI runs in; set it to the API key before starting ComfyUI"
        )
    return (
        "api_key_env: this is not the name of a set environment variable, and it may be the API key "
        "itself, so it is not repeated here. A key never goes into a workflow: set an environment "
        "variable (for example JUDGE_API_KEY) to the key before starting ComfyUI and type only the "
        "variable's name here."
    )


def looks_like_variable_name(text: str) -> bool:
    """A conventional environment variable name: letters of one case, digits and _, in short words
    with few digits (OPENAI_API_KEY, hf_token). Keys are long runs of mixed case or many digits
    (ghp_x9Kq..., 5f4dcc3b...), or contain characters a name cannot (sk-...)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", text) or not (text.isupper() or text.islower()):
        return False
    return all(0 < len(word) <= 16 and sum(c.isdigit() for c in word) <= 4 for word in text.split("_"))


def retry_waits(retries: int, backoff_s: float, budget_s: float = MAX_TOTAL_BACKOFF_S) -> list[float]:
    """The wait before each retry: backoff_s * 2^(k-1) before retry k, the last one shortened so the
    waits add up to at most budget_s; no retries after that."""
    waits, spent = [], 0.0
    for k in range(retries):
        if backoff_s > 0 and spent >= budget_s:
            break
        wait_s = min(backoff_s * 2**k, budget_s - spent)
        waits.append(wait_s)
        spent += wait_s
    return waits


def same_origin(url: str, other: str) -> bool:
    """Same scheme, host and port (a missing port is the scheme's default)."""
    try:
        a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(other)
        ports = [parts.port or DEFAULT_PORTS.get(parts.scheme.lower()) for parts in (a, b)]
    except ValueError:  # a port that is not a number
        return False
    return a.scheme.lower() == b.scheme.lower() and a.hostname == b.hostname and ports[0] == ports[1]


class RetryableFailure(Exception):
    """A failure worth another attempt (the server may recover)."""


class Redirected(Exception):
    """The server answered a redirect; RemoteHttpReward decides whether to follow it."""

    def __init__(self, code: int, location: str) -> None:
        super().__init__(f"HTTP {code} to {location}")
        self.code, self.location = code, location


class Cancellation:
    """Lets the scoring thread stop its workers at once: it wakes their retry waits and cuts the
    connections they hold open (a slow judge would otherwise keep a thread until timeout_s)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._connections: list = []

    def track(self, connection) -> None:
        with self._lock:
            self._connections.append(connection)
            cancelled = self.event.is_set()
        if cancelled:
            _cut(connection)

    def cancel(self) -> None:
        with self._lock:
            self.event.set()
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)


def _cut(connection) -> None:
    """Shut a connection's socket down, which wakes a thread blocked reading from it."""
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


class _CancellableConnections:
    """A urllib HTTP(S) handler whose connections the Cancellation can cut."""

    def __init__(self, cancellation: Cancellation) -> None:
        super().__init__()
        self.cancellation = cancellation

    def do_open(self, http_class, req, **kwargs):
        cancellation = self.cancellation

        class Cancellable(http_class):
            def connect(self):
                super().connect()
                cancellation.track(self)

        return super().do_open(Cancellable, req, **kwargs)


class _CancellableHTTPHandler(_CancellableConnections, urllib.request.HTTPHandler):
    pass


class _CancellableHTTPSHandler(_CancellableConnections, urllib.request.HTTPSHandler):
    pass


class _RedirectsAsErrors(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect with the Authorization header; hand it back instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError(code), with the Location header


def _opener(cancellation: Cancellation) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        _RedirectsAsErrors(), _CancellableHTTPHandler(cancellation), _CancellableHTTPSHandler(cancellation)
    )


def png_base64(image: torch.Tensor) -> str:
    """One [H, W, 3] image in [0, 1] as base64 PNG (8 bits, rounded like ComfyUI's SaveImage)."""
    array = (image.cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class RemoteHttpReward(Reward):
    name = "remote_http"

    def __init__(self, settings: RemoteSettings, manager: ModelManager | None = None) -> None:
        super().__init__()
        settings.check()
        self.settings = settings
        self.needs_prompt = settings.needs_prompt
        # Only its stop check is used: ComfyUI's interrupt inside ComfyUI, nothing outside it.
        self.manager = manager if manager is not None else TorchModelManager()
        self.requests_sent = 0

    @property
    def label(self) -> str:
        return self.settings.label or self.name

    def _score(self, images: torch.Tensor, prompt: str) -> torch.Tensor:
        size = self.settings.batch_size
        batches = [images[start : start + size] for start in range(0, images.shape[0], size)]
        headers = self._headers()
        cancellation = Cancellation()
        opener = _opener(cancellation)
        workers = min(self.settings.max_concurrent, len(batches))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote-reward")
        try:
            futures = [
                pool.submit(self._score_batch, batch, prompt, headers, opener, cancellation)
                for batch in batches
            ]
            self._wait_for(futures)
            scores = [score for future in futures for score in future.result()]
        finally:
            cancellation.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
        return torch.tensor(scores, dtype=torch.float64)

    def _wait_for(self, futures: list[Future]) -> None:
        """Wait for every batch, asking the host to stop (interrupt) every INTERRUPT_POLL_S; the
        first batch that fails ends the wait with its error."""
        pending = set(futures)
        while pending:
            self.manager.check_interrupt()
            done, pending = wait(pending, timeout=INTERRUPT_POLL_S, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        variable = self.settings.api_key_env.strip()
        if variable:
            problem = api_key_env_problem(variable)
            if problem:
                raise RewardError(f"reward '{self.label}': {problem}")
            headers["Authorization"] = f"Bearer {os.environ[variable]}"
        return headers

    def _score_batch(self, batch, prompt: str, headers: dict, opener, cancellation: Cancellation) -> list:
        body = json.dumps({"prompt": prompt, "images": [png_base64(image) for image in batch]}).encode()
        waits = retry_waits(self.settings.retries, self.settings.backoff_s)
        failure = None
        for wait_s in (0.0, *waits):
            if cancellation.event.wait(wait_s):
                return []  # the scoring thread stopped (interrupt or another batch's error)
            try:
                return self._post(body, headers, batch.shape[0], opener)
            except RetryableFailure as error:
                failure = error
        capped = len(waits) < self.settings.retries
        raise RewardError(
            f"reward '{self.label}': the scoring server at {self.settings.url} gave no valid answer "
            f"after {len(waits) + 1} attempt(s)"
            + (f" (retries stop once their waits add up to {MAX_TOTAL_BACKOFF_S:g} s)" if capped else "")
            + f": {failure}"
        )

    def _post(self, body: bytes, headers: dict, count: int, opener) -> list[float]:
        """POST to the configured url, following redirects that stay on its origin."""
        url = self.settings.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return self._parse_scores(self._post_once(url, body, headers, opener), count)
            except Redirected as redirect:
                url = self._redirect_target(url, redirect)
        raise RewardError(
            f"reward '{self.label}': the scoring server at {self.settings.url} redirected more than "
            f"{MAX_REDIRECTS} times (last to {url})"
        )

    def _redirect_target(self, url: str, redirect: Redirected) -> str:
        """Where to POST next; an error for a redirect off the configured origin."""
        configured = self.settings.url
        if not redirect.location:
            raise RewardError(
                f"reward '{self.label}': the scoring server at {configured} answered HTTP {redirect.code} "
                "without a Location"
            )
        target = urllib.parse.urljoin(url, redirect.location)
        if not same_origin(target, configured):
            raise RewardError(
                f"reward '{self.label}': the scoring server at {configured} redirected the request "
                f"(HTTP {redirect.code}) to {target}, another server. The API key, prompt and images go "
                "only to the configured server, so nothing was sent there; if the judge has moved, set "
                "url to its new address."
            )
        return target

    def _post_once(self, url: str, body: bytes, headers: dict, opener) -> bytes:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        self.requests_sent += 1
        try:
            with opener.open(request, timeout=self.settings.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            if error.code in REDIRECT_STATUS:
                raise Redirected(error.code, error.headers.get("Location", "")) from None
            if error.code in RETRYABLE_STATUS:
                raise RetryableFailure(f"HTTP {error.code} {error.reason}") from error
            raise RewardError(
                f"reward '{self.label}': the scoring server at {url} refused the request: "
                f"HTTP {error.code} {error.reason}"
                + (" (check the API key)" if error.code in (401, 403) else "")
            ) from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
                raise RetryableFailure(f"no answer within {self.settings.timeout_s:g} s (timeout)") from error
            raise RetryableFailure(f"cannot reach the server ({reason})") from error

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
