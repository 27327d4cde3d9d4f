#!/usr/bin/env bash
# The test command: builds both ComfyUI test hosts if needed (idempotent), runs the linter, then the
# whole suite on ComfyUI 0.33.0 (maths, in-process ComfyUI, a real server, a real browser) and the
# in-process and server tests on ComfyUI 0.3.75, the oldest version the pack supports. Extra
# arguments go to both pytest runs. Exits non-zero when either run fails.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 scripts/install_host.py

# The browser tests drive Debian's chromium (never a browser downloaded by playwright).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

host_python() { MULTIREWARD_HOST="$1" python3 scripts/comfy_hosts.py python; }
PRIMARY_PYTHON="$(host_python 0.33.0)"

# Reference implementations for the reward parity tests, kept out of the venvs (--no-deps --target).
"$PRIMARY_PYTHON" tests/rewards/install_reward_references.py

"$PRIMARY_PYTHON" -m ruff check .
"$PRIMARY_PYTHON" -m ruff format --check .

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summary=() closing=() status=0

# run_on VERSION PYTEST_ARGS...: one pytest run on one host; its closing line goes into the summary.
run_on() {
  local version="$1" tested last
  shift
  tested="$(MULTIREWARD_HOST="$version" python3 scripts/comfy_hosts.py describe)"
  echo "=== tests on ${tested}"
  MULTIREWARD_HOST="$version" "$(host_python "$version")" -m pytest "$@" 2>&1 | tee "$logs/$version.log" || status=1
  last="$(grep -E 'passed|failed|error|no tests ran' "$logs/$version.log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//' || true)"
  summary+=("${tested}: ${last}")
  closing+=("$last")
}

run_on 0.33.0 "$@"
# Maths never imports ComfyUI and the browser tier is the frontend's: both ran above only.
run_on 0.3.75 -m "not browser" --ignore=tests/math "$@"

count() { grep -oE "[0-9]+ $1" <<<"${closing[*]}" | awk '{n += $1} END {print n + 0}'; }
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "both hosts: $(count passed) passed, $(($(count failed) + $(count error))) failed"
exit "$status"
