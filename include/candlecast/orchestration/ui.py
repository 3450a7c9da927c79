"""The Airflow UI's side of a stream's links (:mod:`candlecast.orchestration.links`).

Airflow 3's UI shows two things a plugin can give (``plugins/candlecast_plugin.py`` registers
them):

- operator extra links: buttons on every task instance's page. Global links are computed by
  the API server when the page asks, so they read what the task returned (its XCom) then.
- an external view on every DAG page: a tab showing, in an iframe, a page this module serves
  from the API server (a FastAPI app under ``/candlecast``), with the pair's links.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import attrs
from airflow.sdk import BaseOperatorLink

from candlecast.orchestration import links

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

#: Where the plugin mounts :func:`create_app` in the API server.
URL_PREFIX = "/candlecast"
#: The link that points at the MLflow run a task returned (else at the experiment).
RUN_LINK = "MLflow run"
LINK_NAMES = (
    "MLflow experiment",
    RUN_LINK,
    "Registered model",
    "Prediction service",
    "Grafana dashboard",
)
#: Targets of ``/candlecast/dags/<dag_id>/go/<target>`` (a redirect resolved at click time).
GO_TARGETS = {
    "experiment": "MLflow experiment",
    "model": "Registered model",
    "service": "Prediction service",
    "dashboard": "Grafana dashboard",
}


@attrs.define()
class StreamLink(BaseOperatorLink):
    """One of a stream's links on each task instance of its DAGs (empty for other DAGs, which
    the UI then leaves out)."""

    label: str

    @property
    def name(self) -> str:
        return self.label

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        stream = links.stream_of_dag(ti_key.dag_id)
        if stream is None:
            return ""
        run_id = links.run_id_of(task_return_value(ti_key)) if self.label == RUN_LINK else None
        found = links.links(stream, run_id=run_id)
        if self.label == RUN_LINK:
            return found.run or found.experiment
        return found.named()[self.label]


def operator_links() -> list[StreamLink]:
    return [StreamLink(label) for label in LINK_NAMES]


def task_return_value(ti_key: TaskInstanceKey) -> Any:
    """What a task instance returned (its ``return_value`` XCom), read from the metadata
    database as the API server sees it; None if it returned nothing (yet)."""
    from airflow.models.xcom import XCOM_RETURN_KEY, XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=XCOM_RETURN_KEY,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else row[0]


def external_views() -> list[dict[str, str]]:
    """The "Pair links" tab of every DAG page (the UI fills in ``{DAG_ID}``)."""
    return [
        {
            "name": "Pair links",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "candlecast-links",
        }
    ]


def fastapi_apps() -> list[dict[str, Any]]:
    return [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "candlecast links"}]


class LazyApp:
    """:func:`create_app`, built on the first request. Every Airflow process loads the plugin,
    each task's included; only the API server serves it, so only it pays for FastAPI and
    Airflow's API security (0.6-0.9 s of a task's start otherwise)."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


def create_app() -> FastAPI:
    """The pages behind the tab, mounted at :data:`URL_PREFIX`; each asks the UI's login
    (its ``_token`` cookie reaches the iframe) for read access to the DAG."""
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, RedirectResponse

    app = FastAPI(title="candlecast links", docs_url=None, redoc_url=None, openapi_url=None)
    can_read = [Depends(requires_access_dag("GET"))]

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=can_read)
    def dag_links(dag_id: str) -> HTMLResponse:
        stream = links.stream_of_dag(dag_id)
        if stream is None:
            return HTMLResponse(_page(dag_id, None))
        return HTMLResponse(_page(dag_id, links.links(stream)))

    @app.get("/dags/{dag_id}/go/{target}", dependencies=can_read)
    def go(dag_id: str, target: str) -> RedirectResponse:
        stream = links.stream_of_dag(dag_id)
        if stream is None or target not in GO_TARGETS:
            raise HTTPException(404, f"no {target!r} link for DAG {dag_id!r}")
        return RedirectResponse(links.links(stream).named()[GO_TARGETS[target]])

    return app


# Airflow shows the tab's page in an iframe sandboxed without "allow-popups", where a link
# with target=_blank does nothing. The frame is same-origin with the UI (served by its API
# server, sandbox "allow-same-origin"), so the link is followed by an anchor in the UI's own
# document, as the UI's own extra-link buttons are. Outside a frame the links work as they are.
_OPEN_FROM_PARENT = """
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[target=_blank]");
  if (!link || window.parent === window) return;
  try {
    const doc = window.parent.document;
    const anchor = doc.createElement("a");
    anchor.href = link.href;
    anchor.target = "_blank";
    anchor.rel = "noopener noreferrer";
    doc.body.appendChild(anchor);
    anchor.click();
    anchor.remove();
    event.preventDefault();
  } catch (error) {
    console.warn("candlecast: opening the link in this frame", error);
  }
});
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
h2 { margin: 0 0 .25rem; font-size: 1.25rem; }
p { margin: 0 0 1rem; color: #4a5568; }
ul { list-style: none; padding: 0; margin: 0; }
li { margin: .5rem 0; display: flex; gap: 1rem; align-items: baseline; }
a { min-width: 11rem; font-weight: 600; color: #0b6bcb; text-decoration: none; }
a:hover { text-decoration: underline; }
code, .url { font-family: ui-monospace, monospace; font-size: .85rem; color: #4a5568; }
"""


def _page(dag_id: str, found: links.Links | None) -> str:
    title = f"Links of {dag_id}"
    if found is None:
        body = f"<p><code>{html.escape(dag_id)}</code> is not a candlecast pair's DAG.</p>"
    else:
        items = "".join(
            f'<li><a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer" '
            f'data-link="{html.escape(name)}">{html.escape(name)}</a>'
            f'<span class="url">{html.escape(url)}</span></li>'
            for name, url in found.named().items()
        )
        stream = found.stream
        body = (
            f"<h2>{html.escape(stream.label)}</h2>"
            f"<p>stream <code>{html.escape(stream.key)}</code>, DAGs "
            + ", ".join(f"<code>{html.escape(d)}</code>" for d in stream.dag_ids)
            + f"</p><ul>{items}</ul>"
        )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}<script>{_OPEN_FROM_PARENT}</script></body></html>"
    )
