"""Per stream in the pair config (CANDLECAST_PAIRS, default config/pairs.yaml), three DAGs: a
candles DAG (`candles_<stream key>`), a train DAG (`train_<stream key>`) and a monitor DAG
(`monitor_<stream key>`).

Thin wiring only: the config is read and each stream handed to the factory; a task run builds
only its own DAG (get_parsing_context). Nothing heavy is imported here.
"""

from airflow.sdk import get_parsing_context

from candlecast.config import load_pairs
from candlecast.orchestration.dags import build_dags

_current = get_parsing_context().dag_id

for _pair in sorted(load_pairs().pairs, key=lambda p: p.key):
    globals().update(build_dags(_pair, only=_current))
