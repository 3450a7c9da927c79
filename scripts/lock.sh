#!/usr/bin/env bash
# Re-resolve requirements.in into the fully pinned requirements.lock (existing pins are kept
# unless a requirement forces a change). PyTorch's CPU wheel comes from pip's find-links.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
links=()
for dir in $(pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
  [ -d "$dir" ] && links+=(--find-links "$dir")
done
[ ${#links[@]} -eq 0 ] && links+=(--extra-index-url https://download.pytorch.org/whl/cpu)
.venv/bin/uv pip compile requirements.in --python-version 3.11 -o requirements.lock "${links[@]}" "$@"
