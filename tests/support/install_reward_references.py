"""Install the published reward packages used as test references, where they cannot touch the
environment: `pip install --no-deps --target <folder>` (never into site-packages).

hpsv2 1.2.0 pins protobuf<4 and pytest==7.2.0; image-reward 1.5 pins timm==0.6.13 and fairscale.
With --no-deps none of that is installed; the tests import only the model code they need.

Run:  python tests/support/install_reward_references.py     (idempotent; CI runs it before pytest)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = Path(os.environ.get("MULTIREWARD_REFERENCE_DIR", PACK_ROOT / ".host" / "reward_refs"))
REQUIREMENTS = Path(__file__).with_name("reference-requirements.txt")
# The hpsv2 wheel lacks the CLIP BPE vocabulary its tokenizer opens at import time; open_clip ships
# the same file.
HPS_VOCAB = Path("hpsv2/src/open_clip/bpe_simple_vocab_16e6.txt.gz")
MARKERS = (Path("hpsv2/src/open_clip/model.py"), Path("ImageReward/models/BLIP/med.py"), HPS_VOCAB)


def installed() -> bool:
    return all((REFERENCE_DIR / marker).exists() for marker in MARKERS)


def install() -> Path:
    if installed():
        return REFERENCE_DIR
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(REFERENCE_DIR)]
    result = subprocess.run([*command, "-r", str(REQUIREMENTS)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"installing the reference packages failed:\n{result.stdout}\n{result.stderr}")
    import open_clip

    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    shutil.copyfile(vocab, REFERENCE_DIR / HPS_VOCAB)
    return REFERENCE_DIR


if __name__ == "__main__":
    print(f"reference packages in {install()}")
