#!/usr/bin/env bash
# Set up everything candlecast needs on a fresh machine: a virtualenv with the locked
# dependency set (CPU-only PyTorch) and the package installed editable. Idempotent and quick
# when nothing changed. Services (PostgreSQL, Redis) are only needed by the integration tests;
# scripts/services.sh starts them where they are installed but stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "candlecast needs Python 3.11"'

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
fi

# PyTorch's CPU wheel: the lock pins torch==2.13.0+cpu. uv does not read pip's config, so the
# folder pip's find-links names (or PyTorch's CPU index) is passed explicitly; without it uv
# would resolve the CUDA build.
links=()
for dir in $(pip config get global.find-links 2>/dev/null || true) /opt/wheels; do
  [ -d "$dir" ] && links+=(--find-links "$dir")
done
[ ${#links[@]} -eq 0 ] && links+=(--extra-index-url https://download.pytorch.org/whl/cpu)

stamp=.venv/.candlecast-lock.sha256
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # Bytecode is compiled at install: this environment sets PYTHONDONTWRITEBYTECODE=1, so
  # otherwise every process would compile ~5,000 modules again.
  .venv/bin/uv pip sync --python .venv/bin/python --compile-bytecode "${links[@]}" requirements.lock
  .venv/bin/uv pip install --python .venv/bin/python --no-deps -e .
  echo "$want" > "$stamp"
fi
.venv/bin/python -c 'import candlecast, torch; assert "+cpu" in torch.__version__, torch.__version__'
