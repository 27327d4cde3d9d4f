#!/usr/bin/env python3
"""Build the Ray venv the serving tests and the serving benchmark run Ray Serve from.

Ray stays out of the ComfyUI venv's resolution: it gets its own venv (default `.host/ray-venv`)
with torch, the rewards' own dependencies (reward_serving/requirements.txt) and Ray Serve. The
repository is not installed into it: `serve run` is started from the repository root, and
reward_serving finds the pack as its parent folder.

torch: the test host's own torch and torchvision (install_host.HOST_TORCH) with what they require,
hard-linked from the host venv: the same files, no copy and no download (uv installs the same way),
seconds instead of minutes for the 5.5 GB CUDA build. Where that cannot be done (no host venv,
another Python, another filesystem) pip installs the same pair from this machine's disk. The small
CPU build torch 2.13.0 would do for torch alone, but the rewards need torchvision (open_clip
imports it), and PyPI's Linux torchvision is a CUDA build that fails to import beside a CPU torch
("operator torchvision::nms does not exist").

Idempotent: a marker holds a digest of what was installed; a second run takes a fraction of a second.

    python3 scripts/install_ray.py [--venv DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_hosts import PRIMARY, Host
from install_host import HOST_TORCH, PACK_ROOT

DEFAULT_VENV = PACK_ROOT / ".host" / "ray-venv"
# The primary test host's venv: its torch stack is the one the Ray venv hard-links.
HOST_PYTHON = Host(PRIMARY).python
SERVING_REQUIREMENTS = PACK_ROOT / "reward_serving" / "requirements.txt"
# The Ray release the serving tests were written against (they read its JSON replica logs).
TESTED_RAY = "ray[serve]==2.60.0"


def log(message: str) -> None:
    print(f"[install_ray] {message}", flush=True)


def stamp() -> str:
    digest = hashlib.sha256(SERVING_REQUIREMENTS.read_bytes())
    digest.update(" ".join([*HOST_TORCH, TESTED_RAY]).encode())
    return digest.hexdigest()


def site_packages(python: Path) -> Path:
    command = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(
        subprocess.run(
            [str(python), "-c", command], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


def torch_stack_files() -> dict:
    """This interpreter's torch and torchvision and everything they require (installed files,
    relative to site-packages), found through the packages' own metadata."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    names, files, seen = ["torch", "torchvision"], [], set()
    while names:
        name = re.sub(r"[-_.]+", "-", names.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement for another platform
        for requirement in distribution.requires or []:
            if "extra ==" not in requirement:
                names.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
        for file in distribution.files or []:
            path = Path(distribution.locate_file(file)).resolve()
            if path.is_relative_to(site) and path.is_file():
                files.append(str(path.relative_to(site)))
    return {"site": str(site), "python": list(sys.version_info[:2]), "files": files}


def link_host_torch(python: Path) -> bool:
    """Hard-link the host venv's torch stack into the venv of `python`; False where it cannot."""
    if not HOST_PYTHON.exists():
        return False
    listing = subprocess.run(
        [str(HOST_PYTHON), __file__, "--list-torch-files"], capture_output=True, text=True, check=True
    )
    stack = json.loads(listing.stdout)
    if tuple(stack["python"]) != sys.version_info[:2]:
        return False
    source, target = Path(stack["site"]), site_packages(python)
    try:
        for relative in stack["files"]:
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not destination.exists():
                os.link(source / relative, destination)
    except OSError as error:  # another filesystem, or links not allowed: pip installs instead
        log(f"cannot link the host's torch ({error}); installing it")
        return False
    log(f"linked the host venv's torch stack ({len(stack['files'])} files)")
    return True


def ensure_ray_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The venv's python, installing what is missing first."""
    python = venv / "bin" / "python"
    marker = venv / ".multireward-ray-installed"
    if python.exists() and marker.exists() and marker.read_text() == stamp():
        return python
    started = time.monotonic()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch first, by itself: the requirements below then find it installed and keep it.
    if not link_host_torch(python):
        log(" ".join(HOST_TORCH))
        subprocess.run([*pip, *HOST_TORCH], check=True)
    step = ["-r", str(SERVING_REQUIREMENTS), TESTED_RAY]
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
    parser.add_argument("--list-torch-files", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.list_torch_files:  # run by the host venv's python for link_host_torch
        print(json.dumps(torch_stack_files()))
        return 0
    ensure_ray_venv(options.venv.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
