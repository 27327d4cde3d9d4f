"""How the weights parser's time grows with the number of rows (issue 10 item 6): typed rows of two
rewards and simplex grids of four, each size timed side by side with its double in one run. A linear
parser doubles its time when the rows double (ratio about 2); the pairwise duplicate check it had
before was quadratic (ratio about 4; 1,771 grid rows took minutes).

    .host/comfyui-0.33.0/venv/bin/python bench/bench_weights.py
    .host/comfyui-0.33.0/venv/bin/python bench/bench_weights.py --repeats 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.pack_alias import install_pack_alias  # noqa: E402

install_pack_alias()

from multireward.sampling_math.weights import MAX_WEIGHT_ROWS, resolve_weights  # noqa: E402


def typed_rows(count: int) -> str:
    """`count` distinct two-reward rows, none of them one-hot."""
    return "\n".join(f"{i + 1},{count - i}" for i in range(count))


def best_seconds(text: str, rewards: int, divisions: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        resolve_weights(text, rewards, divisions, check=lambda: None)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="best of this many runs per size")
    args = parser.parse_args()
    print(f"weights parser, best of {args.repeats}; limit {MAX_WEIGHT_ROWS} rows")
    print(f"{'input':<36}{'rows':>7}{'ms':>9}{'rows':>7}{'ms':>9}{'rows x':>8}{'time x':>8}")
    cases = [
        (f"typed, 2 rewards ({n} / {2 * n} rows)", typed_rows(n - 2), typed_rows(2 * n - 2), 2, 5, 5)
        for n in (256, 1024)
    ]
    # grids of 4 rewards: 10 divisions give 286 rows, 13 give 560, 16 give 969, 20 give 1,771
    cases += [(f"grid, 4 rewards ({d} / {e} divisions)", "", "", 4, d, e) for d, e in ((10, 13), (16, 20))]
    for name, text, double, rewards, small, large in cases:
        rows = len(resolve_weights(text, rewards, small))
        rows2 = len(resolve_weights(double, rewards, large))
        seconds = best_seconds(text, rewards, small, args.repeats)
        seconds2 = best_seconds(double, rewards, large, args.repeats)
        print(
            f"{name:<36}{rows:>7}{1000 * seconds:>9.2f}{rows2:>7}{1000 * seconds2:>9.2f}"
            f"{rows2 / rows:>8.2f}{seconds2 / seconds:>8.2f}"
        )
    print("time x close to rows x: linear; close to (rows x)^2: quadratic")


if __name__ == "__main__":
    main()
