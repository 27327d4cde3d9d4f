#!/usr/bin/env python3
"""Build the Ray venv the serving tests and the serving benchmark run Ray Serve from.

Ray stays out of the ComfyUI venv's resolution: it gets its own venv (default `.host/ray-venv`)
with torch, the rewards' own dependencies (reward_serving/requirements.txt) and Ray Serve. The
repository is not installed into it: `serve run` is started from the repository root, and
reward_serving finds the pack as its parent folder.

torch: the pair the ComfyUI test host uses (install_host.HOST_TORCH), which lies on this machine's
disk. The small CPU build torch 2.13.0 would do for torch alone, but the rewards need torchvision
(open_clip imports it), and PyPI's torchvision for Linux is a CUDA build that fails to import
beside a CPU torch ("operator torchvision::nms does not exist").

Idempotent: a marker holds a digest of what was installed; a second run takes a fraction of a second.

    python3 scripts/install_ray.py [--venv DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from install_host import HOST_TORCH, PACK_ROOT

DEFAULT_VENV = PACK_ROOT / ".host" / "ray-venv"
SERVING_REQUIREMENTS = PACK_ROOT / "reward_serving" / "requirements.txt"
# The Ray release the serving tests were written against (they read its JSON replica logs).
TESTED_RAY = "ray[serve]==2.60.0"


def log(message: str) -> None:
    print(f"[install_ray] {message}", flush=True)


def stamp() -> str:
    digest = hashlib.sha256(SERVING_REQUIREMENTS.read_bytes())
    digest.update(" ".join([*HOST_TORCH, TESTED_RAY]).encode())
    return digest.hexdigest()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_ray_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The venv's python, installing what is missing first."""
    python = venv_python(venv)
    marker = venv / ".multireward-ray-installed"
    if python.exists() and marker.exists() and marker.read_text() == stamp():
        return python
    started = time.monotonic()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch first, by itself: a resolver that meets an unpinned torch later takes it as satisfied.
    for step in (HOST_TORCH, ["-r", str(SERVING_REQUIREMENTS), TESTED_RAY]):
        log(" ".join(step))
        subprocess.run([*pip, *step], check=True)
    marker.write_text(stamp())
    log(f"Ray venv ready in {time.monotonic() - started:.0f} s: {python}")
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--venv", type=Path, default=Path(os.environ.get("MULTIREWARD_RAY_VENV", DEFAULT_VENV))
    )
    ensure_ray_venv(parser.parse_args().venv.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
