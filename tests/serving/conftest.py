"""The serving tests: a real local Ray Serve, from its own venv (scripts/install_ray.py)."""

from __future__ import annotations

import sys
from pathlib import Path

SERVING_TESTS = Path(__file__).resolve().parent
PACK_ROOT = SERVING_TESTS.parents[1]
for folder in (
    SERVING_TESTS,
    PACK_ROOT / "tests" / "rewards",
    PACK_ROOT / "tests" / "srsoup",
    PACK_ROOT / "scripts",
):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "serving: tests that start a real local Ray Serve (select with -m serving)"
    )
