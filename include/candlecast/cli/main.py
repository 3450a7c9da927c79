"""The ``candlecast`` entry point: the app with every command group registered."""

from __future__ import annotations

import atexit
import os
import sys
import threading

from candlecast.cli import (  # noqa: F401
    airflow_local,
    bento,
    dvc,
    evaluate,
    models,
    monitor,
    replay,
)
from candlecast.cli.app import app, error_line
from candlecast.errors import ConfigError

__all__ = ["app", "main"]


def main() -> None:
    """Run the CLI, then leave without the interpreter's teardown when DuckDB was loaded.

    Feast's offline store loads DuckDB, whose nanobind bindings print ``nanobind: leaked …``
    (about 40 lines) at every interpreter teardown: its module-level types outlive the
    interpreter, a report of nanobind's that is benign and that DuckDB offers no switch for.
    So after the command, this does what a normal exit does before the teardown (threading's
    exit hooks and the join of non-daemon threads, the ``atexit`` handlers, a flush) and ends
    the process.
    """
    code: int | str | None = 0
    try:
        app()
    except SystemExit as done:
        code = done.code
    except ConfigError as exc:  # a bad setting wherever it is read: one line, not a traceback
        error_line(str(exc))
        code = 2
    if "_duckdb" not in sys.modules:
        sys.exit(code)
    _exit_without_teardown(code)


def _exit_without_teardown(code: int | str | None) -> None:
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    # the interpreter's own order: threading's exit hooks (a thread pool's workers are told to
    # stop there) and the join of non-daemon threads, then the atexit handlers
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
