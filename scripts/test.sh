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
# Two workers, a file to a worker (its module fixtures, a trained home or a running service, are
# built once): half the suite waits on servers and schedulers, and the other worker uses that
# time. `-n 0` as an extra argument runs it in one process. (`--dist loadgroup` would also keep
# files that share a session fixture together, but xdist 3.8 ignores its marks under pytest 9.)
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
