"""Test-only nodes for the end-to-end server tests (tiny in-memory models, an empty image batch).

The server tests link this folder into the temporary server's custom_nodes; it is never shipped.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from test_nodes import NODE_CLASS_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS"]
