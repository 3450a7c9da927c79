"""A monitoring check's kept Evidently report: a header that says what was compared, and a
bounded number of reports per stream.

The header comes first on the page: the stream, the champion (version and kind, or none yet),
the reference and current windows with their dates, the check's decision, the drift of the
champion's served forecasts against its holdout forecasts, and its realized skill against
persistence where forecasts have been judged (else how many of the needed ones are realized).
Evidently's data drift report of the same tests follows.

Reports live under ``$CANDLECAST_HOME/monitoring/reports/<stream>/`` as
``drift-<as_of>-<written>.html``; each is a few megabytes (Evidently inlines its scripts), so
only the newest ``monitoring.reports_kept`` of a stream are kept, newest by when they were
written (a backfill's report of an old ``as_of`` is not deleted on arrival).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from candlecast.monitoring.result import CheckResult

#: ``drift-<as_of>-<written>.html``, the name every kept report has.
REPORT_NAME = re.compile(r"^drift-(\d{8}T\d{4})-(\d{8}T\d{6})\.html$")


@dataclass(frozen=True)
class ReportHeader:
    """What the top of a drift report says."""

    result: CheckResult
    #: The champion's kind (the result names its version), None with no champion.
    champion_kind: str | None

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) lines of the header, in reading order."""
        result = self.result
        champion = (
            f"v{result.champion_version} ({self.champion_kind})"
            if result.champion_version
            else "none yet: the reference is the window before the current one"
        )
        return [
            ("Stream", result.stream),
            ("Champion", champion),
            ("Reference window", _span(result.reference)),
            ("Current window", _span(result.current)),
            ("Decision", result.decision.reason),
            ("Prediction drift", self._prediction()),
            ("Realized skill", self._realized()),
        ]

    def _prediction(self) -> str:
        found = self.result.prediction
        if found is None:
            return "not measured (no served forecasts of the champion, or a baseline champion)"
        verdict = "drifted" if found.drifted else "no drift"
        return (
            f"{verdict}: served forecasts against the champion's holdout forecasts, "
            f"{found.method} {found.score:.4g} (threshold {found.threshold:g})"
        )

    def _realized(self) -> str:
        found, state = self.result.realized, self.result.realized_state
        if found is None or state != "judged":
            return state
        return (
            f"RMSE / persistence {found.rmse_ratio:.4f}, MAE / persistence "
            f"{found.mae_ratio:.4f}, directional accuracy {found.directional_accuracy:.1%} "
            f"on {found.forecasts} realized forecasts"
        )

    def html(self) -> str:
        """The header as an HTML block (escaped text, inline style: the page has no CSS of
        ours)."""
        cells = "".join(
            f'<tr><th style="text-align:left;padding:2px 16px 2px 0">{html.escape(label)}</th>'
            f"<td>{html.escape(text)}</td></tr>"
            for label, text in self.rows()
        )
        result = self.result
        title = html.escape(f"candlecast drift check: {result.stream} as of {_time(result.as_of)}")
        return (
            '<section id="candlecast-check" style="font-family:sans-serif;margin:16px">'
            f"<h1>{title}</h1><table>{cells}</table></section>"
        )


def with_header(page: str, header: ReportHeader) -> str:
    """Evidently's page with the header first in its body."""
    found = re.search(r"<body[^>]*>", page)
    if found is None:
        return header.html() + page
    return page[: found.end()] + header.html() + page[found.end() :]


def report_name(as_of: datetime, written: datetime) -> str:
    return f"drift-{as_of:%Y%m%dT%H%M}-{written:%Y%m%dT%H%M%S}.html"


def prune_reports(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest reports (by when written, then ``as_of``) in
    ``folder``; other files are left alone. Returns the deleted paths."""
    named = [(REPORT_NAME.match(p.name), p) for p in folder.glob("drift-*.html")]
    reports = sorted(((m.group(2), m.group(1)), p) for m, p in named if m is not None)
    stale = [path for _, path in reports[: max(len(reports) - keep, 0)]]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _span(span: Sequence[datetime]) -> str:
    start, end = span
    return f"{_time(start)} .. {_time(end)} (end exclusive)"
