"""The service's documentation page, ``GET /docs``, complete without internet.

FastAPI's own ``/docs`` loads Swagger UI from a CDN (cdn.jsdelivr.net), so on a machine
without internet it renders blank; BentoML's index page loads a tag manager from Google. This
page loads Swagger UI from the copy BentoML ships (``bentoml/_internal/server/static_content``),
served under ``/docs/assets/``, and renders the service's OpenAPI document (``/docs.json``,
see :mod:`.openapi`). Every URL in it is relative, so it works under a path prefix too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

#: Where the page's scripts and styles are served (a path of the API app).
ASSETS_PATH = "/docs/assets"
#: The Swagger UI files the page loads, all from BentoML's shipped copy.
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js")

PAGE = """\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="docs/assets/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/assets/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script>
      window.onload = () => {{
        window.ui = SwaggerUIBundle({{
          url: "docs.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          validatorUrl: null,
          presets: [SwaggerUIBundle.presets.apis],
          layout: "BaseLayout",
        }});
      }};
    </script>
  </body>
</html>
"""


def assets_dir() -> Path:
    """BentoML's Swagger UI files (found without importing BentoML's server).

    Raises:
        FileNotFoundError: the installed BentoML ships no Swagger UI (the page cannot work).
    """
    spec = importlib.util.find_spec("bentoml")
    origin = Path(spec.origin) if spec and spec.origin else Path()
    folder = origin.parent / "_internal" / "server" / "static_content"
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"BentoML's Swagger UI is missing {missing} in {folder}")
    return folder


def add_docs_page(app: FastAPI, title: str) -> None:
    """Serve the page at ``/docs`` and its assets under :data:`ASSETS_PATH` (neither is in the
    OpenAPI document). ``app`` must be made with ``docs_url=None``."""
    html = PAGE.format(title=title)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html)

    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
