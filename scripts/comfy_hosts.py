"""The ComfyUI test hosts: where each lives, and which one a run uses.

    .host/comfyui-0.33.0/{venv,ComfyUI}   the primary host (current ComfyUI)
    .host/comfyui-0.3.75/{venv,ComfyUI}   the oldest ComfyUI the pack supports
    .host/cache, .host/reward_refs         shared by both (tiny checkpoint, reward reference code)

MULTIREWARD_HOST=<version> selects the host for the in-process harness, the server harness and the
scripts; unset, it is the primary one. Standard library only: the installer imports this before any
venv exists.

    python3 scripts/comfy_hosts.py python     # the selected host's python
    python3 scripts/comfy_hosts.py describe   # its ComfyUI and frontend versions
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
HOSTS_DIR = PACK_ROOT / ".host"
HOST_VARIABLE = "MULTIREWARD_HOST"
PRIMARY = "0.33.0"
OLDEST = "0.3.75"
VERSIONS = (PRIMARY, OLDEST)
FRONTEND_PACKAGE = "comfyui_frontend_package"


@dataclass(frozen=True)
class Host:
    version: str

    @property
    def version_info(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    @property
    def root(self) -> Path:
        return HOSTS_DIR / f"comfyui-{self.version}"

    @property
    def comfyui(self) -> Path:
        return self.root / "ComfyUI"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))

    def frontend_root(self) -> Path:
        """The frontend this host serves by default (its pinned comfyui-frontend-package)."""
        return self.site_packages() / FRONTEND_PACKAGE / "static"

    def comfyui_version(self) -> str:
        text = (self.comfyui / "comfyui_version.py").read_text()
        return re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)

    def describe(self, front_end_root: Path | None = None) -> str:
        frontend = frontend_version(front_end_root or self.frontend_root())
        return f"ComfyUI {self.comfyui_version()}, frontend {frontend} ({self.root.relative_to(PACK_ROOT)})"


def selected() -> Host:
    version = os.environ.get(HOST_VARIABLE) or PRIMARY
    if version not in VERSIONS:
        raise SystemExit(
            f"{HOST_VARIABLE}={version!r} is not a test host; choose one of {', '.join(VERSIONS)}"
        )
    return Host(version)


def frontend_version(static_root: Path) -> str:
    """The comfyui-frontend-package version of a frontend folder (`.../comfyui_frontend_package/static`),
    read from the package's dist-info beside it; 'unknown' for a folder from elsewhere."""
    package = Path(static_root).resolve().parent
    for dist_info in package.parent.glob(f"{FRONTEND_PACKAGE}-*.dist-info"):
        return dist_info.name[len(FRONTEND_PACKAGE) + 1 : -len(".dist-info")]
    return "unknown"


if __name__ == "__main__":
    host = selected()
    command = sys.argv[1] if len(sys.argv) > 1 else "describe"
    print(host.python if command == "python" else host.describe())
