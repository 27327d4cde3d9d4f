#!/usr/bin/env bash
# The test command: builds the ComfyUI test host if needed (idempotent), then the linter and the
# whole suite (maths, in-process ComfyUI, a real server, a real browser). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 scripts/install_host.py

# The browser tests drive Debian's chromium (never a browser downloaded by playwright).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Reference implementations for the reward parity tests, kept out of the venv (--no-deps --target).
.host/venv/bin/python tests/rewards/install_reward_references.py

.host/venv/bin/ruff check .
.host/venv/bin/ruff format --check .
exec .host/venv/bin/python -m pytest "$@"
