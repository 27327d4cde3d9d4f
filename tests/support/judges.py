"""Stand-in remote judges for the Remote Reward tests: stdlib HTTP servers on free loopback ports.

Each judge keeps its own record of every request that reached it (method, path, headers), so a
test learns what the pack sent where from the receiving server, not from the pack. A judge scores
(0.5 per image), answers a fixed HTTP status, redirects some paths, or answers slowly.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict
    received_at: float  # time.monotonic() on arrival


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up (an interrupted request) is expected here


class Judge:
    """`with Judge(...) as judge:` serves on judge.url until the block ends.

    status: answer every POST with this HTTP status instead of scores (e.g. 500).
    redirects: {path: (code, location)}: answer requests for `path` with a redirect.
    delay_s: wait this long before answering (cut short when the judge stops).
    """

    def __init__(self, *, status: int | None = None, redirects: dict | None = None, delay_s: float = 0.0):
        self.status = status
        self.redirects = redirects or {}
        self.delay_s = delay_s
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Judge:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise TimeoutError(f"the judge at {self.url} got {len(self.requests)} of {count} requests")

    def _record(self, handler: BaseHTTPRequestHandler) -> None:
        request = RecordedRequest(handler.command, handler.path, dict(handler.headers), time.monotonic())
        with self._lock:
            self.requests.append(request)

    def _handler_class(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):
                pass

            def do_GET(self):
                judge._record(self)
                self._answer(405, {"error": "POST only"})

            def do_POST(self):
                judge._record(self)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if judge.delay_s:
                    judge._stopping.wait(judge.delay_s)
                if self.path in judge.redirects:
                    code, location = judge.redirects[self.path]
                    return self._answer(code, {}, {"Location": location})
                if judge.status is not None:
                    return self._answer(judge.status, {"error": "judge failure for the test"})
                images = json.loads(body)["images"]
                self._answer(200, {"scores": [0.5] * len(images)})

            def _answer(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
