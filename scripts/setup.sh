#!/usr/bin/env bash
# Create .venv when missing and install rlvr into it. torch is installed first and pinned (TORCH_SPEC, default
# torch==2.13.0, a CPU build) so that no dependency pulls another one; GPU users set TORCH_SPEC themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
EXTRAS="${EXTRAS:-dev}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q "$TORCH_SPEC"
.venv/bin/pip install -q -e ".[${EXTRAS}]" "$TORCH_SPEC"

# The code sandbox uses bubblewrap for Linux namespaces when it is present (it falls back to unshare).
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
        || echo "setup: could not install bubblewrap; the sandbox will use unshare" >&2
fi
