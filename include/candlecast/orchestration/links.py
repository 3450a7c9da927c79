"""Where a stream's work can be seen outside Airflow, for the Airflow plugin's links.

From a DAG id or a stream: its MLflow experiment, an MLflow run, its registered model, the
prediction service's API docs and its Grafana dashboard, with base URLs from the settings
(the URLs themselves are :mod:`candlecast.urls`).
MLflow's UI addresses experiments by id, not by name, so the id is looked up by name in the
tracking store; when that store cannot be reached the experiment link becomes a search of
the experiment list for the name, so a link always works (never an error, never a hang).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candlecast.names import Stream
from candlecast.settings import Settings, get_settings
from candlecast.urls import dashboard_url, experiment_url, model_url, run_url, service_url

log = logging.getLogger(__name__)

#: Seconds a link waits for an HTTP tracking server before falling back to a search link.
LOOKUP_TIMEOUT = 3.0
#: Keys under which tasks return MLflow run ids, most specific first: the run a training task
#: opened (its parent run), a run the task is about, then the challenger it chose.
RUN_ID_KEYS = ("parent_run_id", "run_id")
NESTED_RUN_KEYS = ("challenger",)

# Experiment ids found by name, per tracking URI. An experiment's id never changes while it
# exists; misses are not kept, so a store that comes up later is asked again.
_experiment_ids: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Links:
    """The URLs of one stream (and, where a task returned one, of its MLflow run)."""

    stream: Stream
    experiment: str
    model: str
    service: str
    dashboard: str
    run: str | None = None

    def named(self) -> dict[str, str]:
        """Link text -> URL, in the order the UI shows them."""
        named = {"MLflow experiment": self.experiment}
        if self.run is not None:
            named["MLflow run"] = self.run
        named |= {
            "Registered model": self.model,
            "Prediction service": self.service,
            "Grafana dashboard": self.dashboard,
        }
        return named


def stream_of_dag(dag_id: str) -> Stream | None:
    """The stream whose DAG this is (``candles_<key>``, ``train_<key>``, ``monitor_<key>``), or
    None for any other DAG. The DAG ids are derived from the stream and compared, never parsed
    by prefix here."""
    _, _, key = dag_id.partition("_")
    try:
        stream = Stream.from_key(key)
    except ValueError:
        return None
    return stream if dag_id in stream.dag_ids else None


def links(stream: Stream, settings: Settings | None = None, run_id: str | None = None) -> Links:
    """Every link of a stream; ``run_id`` adds the link to that MLflow run."""
    settings = settings or get_settings()
    found = experiment_id(stream, settings)
    return Links(
        stream=stream,
        experiment=experiment_url(stream, settings, found),
        model=model_url(stream, settings),
        service=service_url(settings),
        dashboard=dashboard_url(stream, settings),
        run=None if run_id is None else run_url(settings, run_id, found),
    )


# -- run ids returned by tasks ---------------------------------------------------------------


def run_id_of(value: Any) -> str | None:
    """The MLflow run id a task returned (its XCom value), or None.

    Looks at ``parent_run_id`` and ``run_id``, then the same keys under ``challenger``
    (a training result's chosen run); only strings shaped like MLflow run ids count.
    """
    for _ in range(2):  # XCom keeps JSON; a value may come back as its text, even twice
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            return None
    for candidate in _run_id_candidates(value):
        if _is_run_id(candidate):
            return candidate
    return None


def _run_id_candidates(value: Any) -> Iterator[Any]:
    if not isinstance(value, Mapping):
        return
    for key in RUN_ID_KEYS:
        yield value.get(key)
    for nested in NESTED_RUN_KEYS:
        yield from _run_id_candidates(value.get(nested))


def _is_run_id(candidate: Any) -> bool:
    # MLflow run ids are uuid4 hex: 32 lower-case hexadecimal characters
    return (
        isinstance(candidate, str)
        and len(candidate) == 32
        and all(c in "0123456789abcdef" for c in candidate)
    )


# -- experiment ids --------------------------------------------------------------------------


def experiment_id(stream: Stream, settings: Settings | None = None) -> str | None:
    """The id of the stream's MLflow experiment, or None when it does not exist or the tracking
    store cannot be reached (logged; asked again next time)."""
    settings = settings or get_settings()
    uri = settings.tracking_uri
    cached = _experiment_ids.get((uri, stream.experiment))
    if cached is not None:
        return cached
    try:
        if uri.startswith(("http://", "https://")):
            found = _lookup_over_http(uri, stream.experiment)
        else:
            found = _lookup_in_store(uri, stream.experiment)
    except Exception as exc:
        log.warning("MLflow experiment %s not looked up (%s): %s", stream.experiment, uri, exc)
        return None
    if found is not None:
        _experiment_ids[(uri, stream.experiment)] = found
    return found


def _lookup_over_http(uri: str, name: str) -> str | None:
    # The REST call itself, with a short timeout: MLflow's client retries a down server for
    # minutes, which would hold up the Airflow page that asked for the link.
    query = urllib.parse.urlencode({"experiment_name": name})
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}"
    try:
        with urllib.request.urlopen(url, timeout=LOOKUP_TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # RESOURCE_DOES_NOT_EXIST: no such experiment (yet)
            return None
        raise
    return str(body["experiment"]["experiment_id"])


def _lookup_in_store(uri: str, name: str) -> str | None:
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None  # never create a tracking database just to look for an experiment
    from candlecast.modeling import registry

    found = registry.tracking_client(uri).get_experiment_by_name(name)
    return None if found is None else str(found.experiment_id)
