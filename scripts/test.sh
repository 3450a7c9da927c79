#!/usr/bin/env bash
# Quick start, command 2: set up, then run the whole test suite (lint, types and layers too).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` (the fast group).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
