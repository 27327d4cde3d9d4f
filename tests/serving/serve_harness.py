"""A real local Ray Serve for tests and the serving benchmark: `serve run <config>` from the Ray venv
(scripts/install_ray.py), in a Ray temp folder of its own, stopped by whoever started it.

The config is the shipped one-machine config (reward_serving/serve_local.yaml) with the test's own
applications, port and CPU shares (no GPU here). What the replicas did is read from Ray's own logs:
each replica writes a JSON log file (logging_config.encoding: JSON) with its process id, the
requests it answered (Serve's access log) and the images it scored; the proxy logs every request
with its HTTP status.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACK_ROOT = Path(__file__).resolve().parents[2]
from comfy_server import free_port  # noqa: E402
from install_ray import DEFAULT_VENV, ensure_ray_venv  # noqa: E402

SHIPPED_CONFIG = PACK_ROOT / "reward_serving" / "serve_local.yaml"
ACCESS_LINE = re.compile(r"^(GET|POST) (\S+) (\d{3}) ([\d.]+)ms$")
PROXY_LINE = re.compile(r" -- (GET|POST) (\S+) (\d{3}) ([\d.]+)ms$")
SCORED_LINE = re.compile(r"^scored (\d+) images$")
STARTED_LINE = re.compile(r"^scoring (\d+) images$")
BATCH_LINE = re.compile(r"^batch of (\d+) images in ([\d.]+) ms$")


def application(name: str, replicas: int = 1, cpus: float = 0.25, **args) -> dict:
    """One entry of `applications`, shaped like the shipped config's first one: route /<name>,
    the given reward args, `replicas` replicas with a CPU share each and no GPU."""
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())["applications"][0]
    entry = copy.deepcopy(shipped)
    entry["name"] = name
    entry["route_prefix"] = f"/{name}"
    entry["args"] = {**{k: v for k, v in shipped["args"].items() if k in ("dtype",)}, **args}
    deployment = entry["deployments"][0]
    deployment["num_replicas"] = replicas
    deployment["ray_actor_options"] = {"num_cpus": cpus, "num_gpus": 0}
    return entry


@dataclass
class ReplicaLog:
    """One replica's own log file, as Ray wrote it."""

    app: str
    replica: str
    pid: int
    ready: bool = False
    #: request_id -> images, for requests it finished scoring.
    scored: dict = field(default_factory=dict)
    #: Serve's access log: (method, route, status, milliseconds) per answered request.
    answered: list = field(default_factory=list)
    #: Images in each forward (serve.batch gathers them from every request in flight).
    batches: list = field(default_factory=list)
    #: Milliseconds each of those forwards took (preprocessing included).
    batch_ms: list = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(self.scored.values())

    @property
    def scoring_requests(self) -> list:
        return [a for a in self.answered if a[0] == "POST" and a[2] == 200]


def read_replica_log(path: Path) -> ReplicaLog | None:
    record = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if record is None:
            # actor_name is "SERVE_REPLICA::<app>#<deployment>#<replica id>"
            app, _, replica = entry["actor_name"].split("::", 1)[1].split("#")
            record = ReplicaLog(app, replica, int(entry["process"]))
        message = entry.get("message", "")
        request = entry.get("request_id")
        if message == "Finished initializing replica.":
            record.ready = True
        elif match := SCORED_LINE.match(message):
            record.scored[request] = int(match.group(1))
        elif match := BATCH_LINE.match(message):
            record.batches.append(int(match.group(1)))
            record.batch_ms.append(float(match.group(2)))
        elif match := ACCESS_LINE.match(message):
            method, route, status, ms = match.groups()
            record.answered.append((method, route, int(status), float(ms)))
    return record


class ReplicaTail:
    """A replica's log read incrementally: the requests it has begun and not finished."""

    def __init__(self, replica: ReplicaLog, path: Path):
        self.replica, self.path = replica, path
        self.offset, self.open, self.requests_seen = 0, set(), 0

    def kill_if_in_flight(self) -> bool:
        if not pid_alive(self.replica.pid):
            return False
        os.kill(self.replica.pid, signal.SIGSTOP)  # frozen: nothing it holds can finish now
        try:
            self._read_new_lines()
        except BaseException:
            os.kill(self.replica.pid, signal.SIGCONT)
            raise
        if self.open:
            os.kill(self.replica.pid, signal.SIGKILL)
            return True
        os.kill(self.replica.pid, signal.SIGCONT)
        return False

    def _read_new_lines(self) -> None:
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message, request = entry.get("message", ""), entry.get("request_id")
            if STARTED_LINE.match(message):
                self.open.add(request)
                self.requests_seen += 1
            elif SCORED_LINE.match(message):
                self.open.discard(request)


class LocalRayServe:
    """`with LocalRayServe([application(...), ...], env={...}) as serve:` -> serve.url("<app>")."""

    def __init__(self, applications: list[dict], env: dict | None = None, venv: Path = DEFAULT_VENV):
        self.applications = applications
        self.env = env or {}
        self.venv = venv
        # Short: Ray puts unix sockets under it (at most 107 characters a path).
        self.temp = Path(tempfile.mkdtemp(prefix="mr-ray-", dir="/tmp"))
        self.port = free_port()
        self.log_path = self.temp / "serve-run.log"
        self.process: subprocess.Popen | None = None
        self.started_s = 0.0

    def url(self, app: str) -> str:
        return f"http://127.0.0.1:{self.port}/{app}"

    def config(self) -> dict:
        config = yaml.safe_load(SHIPPED_CONFIG.read_text())
        config["http_options"]["port"] = self.port
        config["applications"] = self.applications
        return config

    def __enter__(self) -> LocalRayServe:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        ensure_ray_venv(self.venv)
        config_path = self.temp / "serve.yaml"
        config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        env = {
            **os.environ,
            **self.env,
            "RAY_TMPDIR": str(self.temp),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        }
        for variable in ("RAY_ADDRESS", "VIRTUAL_ENV", "PYTHONPATH"):
            env.pop(variable, None)
        started = time.monotonic()
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(self.venv / "bin" / "serve"), "run", str(config_path)],
            cwd=PACK_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends Ray and nothing else
        )
        self._started_at = started

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds from start until every replica of every application has initialised."""
        wanted = {app["name"]: app["deployments"][0]["num_replicas"] for app in self.applications}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve run exited with {self.process.returncode}:\n{self.log()}")
            ready = {name: 0 for name in wanted}
            for replica in self.replicas(alive_only=True):
                ready[replica.app] = ready.get(replica.app, 0) + replica.ready
            if all(ready[name] >= count for name, count in wanted.items()) and self._routes_answer():
                self.started_s = time.monotonic() - self._started_at
                return self.started_s
            time.sleep(0.5)
        raise TimeoutError(f"Ray Serve not ready within {timeout} s:\n{self.log()}")

    def _routes_answer(self) -> bool:
        for app in self.applications:
            try:
                with urllib.request.urlopen(self.url(app["name"]), timeout=5) as response:
                    if response.status != 200:
                        return False
            except (urllib.error.URLError, OSError):
                return False
        return True

    def logs_dir(self) -> Path:
        return self.temp / "ray" / "session_latest" / "logs" / "serve"

    def replicas(self, app: str | None = None, alive_only: bool = False) -> list[ReplicaLog]:
        found = []
        for path in sorted(self.logs_dir().glob("replica_*.log")):
            record = read_replica_log(path)
            if record is None or (app and record.app != app):
                continue
            if alive_only and not pid_alive(record.pid):
                continue
            found.append(record)
        return found

    def proxy_requests(self, route: str) -> list[tuple[str, int]]:
        """(method, status) of every request the proxy answered on `route`."""
        answered = []
        for path in self.logs_dir().glob("proxy_*.log"):
            for line in path.read_text(errors="replace").splitlines():
                match = PROXY_LINE.search(line)
                if match and match.group(2) == route:
                    answered.append((match.group(1), int(match.group(3))))
        return answered

    def kill_replica_mid_request(self, app: str, still_running, timeout: float = 120.0) -> ReplicaLog:
        """SIGKILL a replica of `app` while it holds a scoring request. Each try freezes a replica
        (SIGSTOP) and reads what its log gained since the last try: a request it began scoring and
        has not finished is still in flight when it dies. Tries are milliseconds apart (a tiny
        judge answers in tens of milliseconds). `still_running()` says whether the run that sends
        the requests goes on."""
        tails: dict[str, ReplicaTail] = {}
        deadline = time.monotonic() + timeout
        checked_run = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - checked_run > 0.5:
                if not still_running():
                    break
                checked_run = time.monotonic()
                for replica in self.replicas(app, alive_only=True):
                    tails.setdefault(replica.replica, ReplicaTail(replica, self._log_file(replica)))
            for tail in tails.values():
                if tail.kill_if_in_flight():
                    return tail.replica
            time.sleep(0.005)
        started = {tail.replica.replica: tail.requests_seen for tail in tails.values()}
        raise TimeoutError(
            f"no replica of '{app}' was caught holding a request; requests it began: {started}"
        )

    def _log_file(self, replica: ReplicaLog) -> Path:
        return next(self.logs_dir().glob(f"replica_{replica.app}_*_{replica.replica}.log"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Ctrl-C for `serve run` (it shuts Serve and its local Ray down), then the process group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything of that group still running
        except ProcessLookupError:
            pass
        self._log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
