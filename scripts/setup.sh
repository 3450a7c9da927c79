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
  # -qq: errors only (a machine's pip config may name index folders it lacks: pip warns of each)
  .venv/bin/pip install -qq --disable-pip-version-check uv==0.13.9
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

# Debian tools the tests and benchmarks use: a real Prometheus, headless Chromium for UI
# screenshots, wrk for load. Installed only when missing (CI machines start without them).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # another setup (a second checkout) may hold dpkg's lock: wait for it, do not fail
    apt=($SUDO apt-get -o DPkg::Lock::Timeout=900)
    "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
      "${apt[@]}" update -q >/dev/null
      "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    }
  else
    echo "warning: cannot install ${missing[*]} (not root, no sudo); tests that need them skip" >&2
  fi
fi
