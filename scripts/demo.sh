#!/usr/bin/env bash
# Quick start, command 1: set up, then run the demo (Airflow DAG for the default pairs on the
# bundled data, then a forecast served over HTTP). State goes to $CANDLECAST_HOME
# (default ~/.candlecast). Pass --no-wait to exit instead of keeping the UIs up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/candlecast demo "$@"
