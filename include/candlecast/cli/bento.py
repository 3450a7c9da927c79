"""``candlecast build-bento``: the prediction service and every stream's deployed model as a
Bento, ready for ``bentoml containerize``."""

from __future__ import annotations

import typer

from candlecast.cli.app import app, console
from candlecast.errors import NotReadyError
from candlecast.settings import get_settings


@app.command("build-bento", rich_help_panel="Models")
def build_bento() -> None:
    """Build a Bento of the service with the models deployed now (one per stream)."""
    from candlecast.serving import bento

    settings = get_settings()
    try:
        tag = bento.build(settings)
    except (NotReadyError, RuntimeError) as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(1) from None
    store = settings.paths.bentoml
    console.print(f"built Bento [bold]{tag}[/bold] in {store}")
    console.print(f"container: BENTOML_HOME={store} bentoml containerize {tag}")
    console.print(
        f"run:       docker run -p 3000:3000 -e CANDLECAST_ONLINE_STORE=redis "
        f"-e CANDLECAST_REDIS_URL=<host>:6379,db=1 -e CANDLECAST_API_KEYS=<key> {tag}"
    )
