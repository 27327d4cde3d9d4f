#!/usr/bin/env bash
# The test command: builds both ComfyUI test hosts if needed (idempotent), runs the linter, then the
# whole suite on ComfyUI 0.33.0 (maths, in-process ComfyUI, a real server, a real browser) and the
# in-process, server and browser tests on ComfyUI 0.3.75, the oldest version the pack supports. Extra
# arguments go to both pytest runs. Exits non-zero when either run fails.
#
# The two hosts are built, and then tested, side by side: the in-process tests use one torch thread,
# so on two cores the second run mostly fills the idle core. The 0.3.75 output follows the 0.33.0 run.
set -euo pipefail
cd "$(dirname "$0")/.."
unset MULTIREWARD_HOST # each command below names its host; unset, the primary one

logs="$(mktemp -d)"
# A failure stops whatever still runs in the background.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$logs"' EXIT

python3 scripts/install_host.py 0.3.75 >"$logs/install-0.3.75.log" 2>&1 &
oldest_install=$!
python3 scripts/install_host.py 0.33.0
wait "$oldest_install" || { cat "$logs/install-0.3.75.log"; exit 1; }
grep '^\[install_host\]' "$logs/install-0.3.75.log"

# Ray Serve for the serving tests (tests/serving), in its own venv: the ComfyUI venvs never see Ray.
# It hard-links the primary host's torch, so it comes after that host.
python3 scripts/install_ray.py

# The browser tests run on each host's pinned frontend and, on the primary host, on the newest one
# too, installed beside the hosts (outside their venvs) and served with --front-end-root.
python3 scripts/install_frontend.py

# The browser tests drive Debian's chromium (never a browser downloaded by playwright).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

host_python() { MULTIREWARD_HOST="$1" python3 scripts/comfy_hosts.py python; }
PRIMARY_PYTHON="$(host_python 0.33.0)"

"$PRIMARY_PYTHON" -m ruff check .
"$PRIMARY_PYTHON" -m ruff format --check .

# What both runs share, made before they start: the reward parity tests' reference implementations
# (kept out of the venvs: --no-deps --target) and the test checkpoints (random tiny, learned digits).
"$PRIMARY_PYTHON" tests/support/install_reward_references.py
PYTHONPATH=tests:scripts "$PRIMARY_PYTHON" -c 'import harness; harness.build_shared_checkpoints()'

# run_on VERSION PYTEST_ARGS...: one pytest run on one host, its output in $logs/VERSION.log.
run_on() {
  local version="$1"
  shift
  echo "=== tests on $(MULTIREWARD_HOST="$version" python3 scripts/comfy_hosts.py describe)"
  MULTIREWARD_HOST="$version" "$(host_python "$version")" -m pytest "$@"
}

# Maths never imports ComfyUI and the serving tier is Ray's: they run on 0.33.0 only. The browser
# tier runs on both, each host with its pinned frontend (0.33.0 with frontend 1.58.1 as well).
run_on 0.3.75 -m "not serving" --ignore=tests/math "$@" >"$logs/0.3.75.log" 2>&1 &
oldest_run=$!
status=0
run_on 0.33.0 "$@" 2>&1 | tee "$logs/0.33.0.log" || status=1
wait "$oldest_run" || status=1
cat "$logs/0.3.75.log"

echo "=== summary"
closing=""
for version in 0.33.0 0.3.75; do
  last="$(grep -E 'passed|failed|error|no tests ran' "$logs/$version.log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//' || true)"
  echo "$(MULTIREWARD_HOST="$version" python3 scripts/comfy_hosts.py describe): ${last:-no result}"
  closing+=" $last"
done
count() { grep -oE "[0-9]+ $1" <<<"$closing" | awk '{n += $1} END {print n + 0}'; }
# One closing line for both runs.
echo "total: $(count passed) passed, $(($(count failed) + $(count error))) failed"
exit "$status"
