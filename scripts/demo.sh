#!/usr/bin/env bash
# Quick start, command 1: set up, then run the demo: the embedded Airflow (127.0.0.1:8080, a
# login) backfills each default pair's candles DAG over the last days of the bundled data
# through its REST API, the scheduler runs them and the train runs their features trigger,
# then a forecast per pair is served over HTTP. State goes to $CANDLECAST_HOME (default
# ~/.candlecast). The UIs stay up until Ctrl-C; --no-wait stops everything and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/candlecast demo "$@"
