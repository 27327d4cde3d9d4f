"""A reference scoring server for the remote_http reward: the protocol in a page of stdlib code.

    python rewards/reference_server.py --port 8765 [--reward colorfulness|brightness]
                                       [--api-key-env NAME] [--delay 0.5]

POST / with {"prompt": str, "images": [base64 PNG, ...]} answers {"scores": [float, ...]}.
It scores with a weight-free measure (colourfulness by default), so it runs anywhere; replace
`score_image` with a call to your judge (a VLM, an ensemble, ...) to serve a real reward.
This file imports nothing from the pack, so it also runs as a plain script.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def colorfulness(array: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003) on a 0..255 scale."""
    pixels = array.astype(np.float64)
    rg = pixels[..., 0] - pixels[..., 1]
    yb = 0.5 * (pixels[..., 0] + pixels[..., 1]) - pixels[..., 2]
    return float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def brightness(array: np.ndarray) -> float:
    return float(array.astype(np.float64).mean() / 255.0)


SCORERS = {"colorfulness": colorfulness, "brightness": brightness}


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


class ServerBehaviour:
    """What the server does; tests switch on faults to exercise the client's error handling."""

    def __init__(self, reward="colorfulness", api_key=None, delay_s=0.0, fault=None, fail_first=0):
        self.score_image = SCORERS[reward]
        self.api_key = api_key
        self.delay_s = delay_s
        #: None, "malformed", "wrong_count", "no_scores", "error500", or "nan".
        self.fault = fault
        #: Answer HTTP 503 to this many requests first (a server warming up).
        self.fail_first = fail_first
        self.requests = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> int:
        with self._lock:
            self.requests += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return self.requests

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def make_handler(behaviour: ServerBehaviour):
    class ScoreHandler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # quiet: tests start many requests
            pass

        def do_POST(self):
            number = behaviour.enter()
            try:
                self._answer(number)
            finally:
                behaviour.leave()

        def _answer(self, number: int) -> None:
            if behaviour.delay_s:
                time.sleep(behaviour.delay_s)
            if behaviour.api_key and self.headers.get("Authorization") != f"Bearer {behaviour.api_key}":
                return self._send(401, {"error": "missing or wrong API key"})
            if number <= behaviour.fail_first or behaviour.fault == "error500":
                return self._send(503 if number <= behaviour.fail_first else 500, {"error": "not ready"})
            length = int(self.headers.get("Content-Length", 0))
            try:
                request = json.loads(self.rfile.read(length))
                scores = [behaviour.score_image(decode_png(text)) for text in request["images"]]
            except (ValueError, KeyError, TypeError, OSError) as error:
                return self._send(400, {"error": f"bad request: {error}"})
            self._send(200, self._apply_fault({"scores": scores}))

        def _apply_fault(self, reply: dict):
            if behaviour.fault == "malformed":
                return b"{'scores': [1, 2"  # not JSON
            if behaviour.fault == "wrong_count":
                return {"scores": reply["scores"] + [0.0]}
            if behaviour.fault == "no_scores":
                return {"result": reply["scores"]}
            if behaviour.fault == "nan":
                return {"scores": [float("nan")] * len(reply["scores"])}
            return reply

        def _send(self, status: int, payload) -> None:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return ScoreHandler


def make_server(host="127.0.0.1", port=0, behaviour: ServerBehaviour | None = None) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one: see server.server_address)."""
    server = ThreadingHTTPServer((host, port), make_handler(behaviour or ServerBehaviour()))
    server.daemon_threads = True
    server.behaviour = behaviour
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reward", choices=sorted(SCORERS), default="colorfulness")
    parser.add_argument("--api-key-env", default="", help="require 'Bearer $NAME' when this variable is set")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each answer")
    options = parser.parse_args()
    api_key = os.environ.get(options.api_key_env) if options.api_key_env else None
    server = make_server(options.host, options.port, ServerBehaviour(options.reward, api_key, options.delay))
    print(f"scoring with {options.reward} on http://{options.host}:{server.server_address[1]}/")
    server.serve_forever()


if __name__ == "__main__":
    main()
