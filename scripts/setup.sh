#!/usr/bin/env bash
# Set up cytostudy on a fresh Debian/Ubuntu machine: a virtual environment in .venv with everything installed.
#   bash scripts/setup.sh          # the toolkit (demo, training, study, analysis)
#   bash scripts/setup.sh --test   # + test tools: PostgreSQL server and Chromium (Debian packages), pytest, playwright
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$want_test" = 1 ]; then
  need=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing system packages: ${need[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "warning: ${need[*]} not installed (needs root + apt-get); those tests will be skipped" >&2
    fi
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 is a CPU wheel on the project's machines; an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[all,test]"
else
  .venv/bin/python -m pip install -q -e ".[all]"
fi
echo "cytostudy installed in .venv"
