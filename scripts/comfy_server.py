"""A real ComfyUI server on a free loopback port, started and stopped by tests and the demo runner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from comfy_hosts import PACK_ROOT, selected

HOST = selected()  # MULTIREWARD_HOST=<version>; the primary host when unset
# What the servers this process started ran ("ComfyUI x, frontend y"), for the test summary.
SERVED: set[str] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """`with ComfyServer() as server:` starts the selected host's main.py --cpu with the pack linked
    into custom_nodes; `front_end_root` serves another frontend (a `comfyui_frontend_package/static`
    folder) instead of the host's pinned one."""

    def __init__(
        self,
        base_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        packs: dict | None = None,
        front_end_root: Path | None = None,
    ):
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="multireward-server-"))
        self.front_end_root = Path(front_end_root) if front_end_root else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.log_path = self.base_dir / "server.log"
        self.packs = {"multireward": PACK_ROOT, **(packs or {})}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ComfyServer:
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        for name, target in self.packs.items():
            link = custom_nodes / name
            if not link.exists():
                link.symlink_to(target, target_is_directory=True)
        command = [
            str(HOST.python),
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--base-directory",
            str(self.base_dir),
            # A file, not sqlite:///:memory: (which makes /object_info fail on ComfyUI 0.9-0.16).
            "--database-url",
            f"sqlite:///{self.base_dir / 'comfyui.db'}",
            *(("--front-end-root", str(self.front_end_root)) if self.front_end_root else ()),
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=HOST.comfyui, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self._wait_ready()
        SERVED.add(self.describe())
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def _wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.get("/queue")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer within {timeout} s:\n{self.log()}")

    def describe(self) -> str:
        """The ComfyUI and frontend versions this server runs."""
        return HOST.describe(self.front_end_root)

    def log(self, since: int = 0) -> str:
        """The server's log from byte `since` on (a `log_size()` taken earlier)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                return response.status, (json.loads(body) if body else {})
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def queue_prompt(self, graph: dict) -> tuple[int, dict]:
        return self.post("/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})

    def wait_for(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The history entry of a finished prompt (success or error)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def run(self, graph: dict, timeout: float = 300.0) -> dict:
        status, body = self.queue_prompt(graph)
        if status != 200:
            raise AssertionError(f"/prompt refused the graph ({status}): {body}")
        return self.wait_for(body["prompt_id"], timeout)


def error_message(entry: dict) -> str:
    """The execution_error text of a failed history entry."""
    for event, data in entry["status"].get("messages", []):
        if event == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return ""
