#!/usr/bin/env python3
"""Install a ComfyUI frontend (`comfyui-frontend-package` from PyPI) beside the test hosts, for the
browser tests to serve with `--front-end-root`:

    .host/frontends/<version>/comfyui_frontend_package/static

The package goes into its own folder (`pip install --no-deps --target`), outside every host venv's
resolution: the hosts keep the frontend their ComfyUI pins, and the browser tests run on both.
The wheel is checked against its sha256. Idempotent: an installed version is left as it is. Run
after scripts/install_host.py (it uses the primary host's pip).

    python3 scripts/install_frontend.py [VERSION ...]     # default: the newest tested frontend
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_hosts import FRONTEND_PACKAGE, HOSTS_DIR, PRIMARY, Host, frontend_version

FRONTENDS_DIR = HOSTS_DIR / "frontends"
NEWEST = "1.58.1"  # the newest comfyui-frontend-package (November 2026)
WHEEL_SHA256 = {"1.58.1": "37912597537a731a8f421179618a736c24184c5bdbfa327f38b2fb7c291852d9"}


def static_root(version: str) -> Path:
    """What `--front-end-root` takes for an installed frontend version."""
    return FRONTENDS_DIR / version / FRONTEND_PACKAGE / "static"


def installed(version: str) -> bool:
    root = static_root(version)
    return (root / "index.html").is_file() and frontend_version(root) == version


def install(version: str) -> Path:
    if installed(version):
        print(f"[install_frontend] frontend {version}: already in {static_root(version).parent.parent}")
        return static_root(version)
    FRONTENDS_DIR.mkdir(parents=True, exist_ok=True)
    requirement = f"comfyui-frontend-package=={version}"
    if version in WHEEL_SHA256:
        requirement += f" --hash=sha256:{WHEEL_SHA256[version]}"
    # Unpacked next to the destination and renamed into place, so an interrupted run leaves nothing
    # that looks installed.
    with tempfile.TemporaryDirectory(dir=FRONTENDS_DIR, prefix=f".{version}-") as work:
        requirements = Path(work) / "requirements.txt"
        requirements.write_text(requirement + "\n")
        target = Path(work) / "target"
        # The primary host's pip (the system python may have none); --target keeps the venv as it is.
        command = [
            str(Host(PRIMARY).python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
        ]
        if version in WHEEL_SHA256:
            command.append("--require-hashes")
        subprocess.run([*command, "-r", str(requirements)], check=True)
        destination = FRONTENDS_DIR / version
        shutil.rmtree(destination, ignore_errors=True)
        target.rename(destination)
    if not installed(version):
        raise SystemExit(
            f"[install_frontend] frontend {version}: no {static_root(version)} after pip install"
        )
    print(f"[install_frontend] frontend {version}: installed in {FRONTENDS_DIR / version}")
    return static_root(version)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("versions", nargs="*", default=[NEWEST])
    for version in parser.parse_args().versions:
        install(version)


if __name__ == "__main__":
    main()
