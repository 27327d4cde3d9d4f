#!/usr/bin/env python3
"""Assemble the digits model's SD1.5 checkpoint from the committed compact weights.

    python scripts/digit_checkpoint.py ComfyUI/models/checkpoints

writes `multireward_digits_sd15.safetensors` (about 293 MB, fp16) there in seconds: every tensor of
a full SD1.5 checkpoint (320-channel UNet, the fixed-size CLIP-L text encoder, a TAESD VAE), zero
except the trained and hand-set parts stored in tests/support/digit_model/ (model card:
docs/digit_model.md). The same bytes every time; a second call finds the file and does nothing.
Needs only torch and safetensors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
COMPACT_WEIGHTS = PACK_ROOT / "tests" / "support" / "digit_model" / "digits_sd15_compact.safetensors"
CHECKPOINT_NAME = "multireward_digits_sd15.safetensors"


def _compact_module():
    sys.path.insert(0, str(PACK_ROOT / "tests"))  # the dev-only support package; no ComfyUI import
    from support.digit_model import compact

    return compact


def write_digit_checkpoint(folder: Path, compact_weights: Path = COMPACT_WEIGHTS) -> Path:
    """The assembled checkpoint in `folder` (e.g. ComfyUI's models/checkpoints), made if missing."""
    return _compact_module().write_checkpoint(compact_weights, Path(folder) / CHECKPOINT_NAME)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", type=Path, help="where to write the checkpoint (e.g. ComfyUI/models/checkpoints)"
    )
    parser.add_argument(
        "--compact", type=Path, default=COMPACT_WEIGHTS, help="the compact weights to assemble"
    )
    args = parser.parse_args(argv)
    print(write_digit_checkpoint(args.folder, args.compact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
