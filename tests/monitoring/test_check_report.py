"""A check's windows never overlap; its kept Evidently report opens with a header that says
what was compared and found; only the newest ``monitoring.reports_kept`` reports are kept."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from candlecast.monitoring.check import check_windows
from candlecast.monitoring.decisions import RetrainDecision
from candlecast.monitoring.drift import DriftResult, FeatureDrift
from candlecast.monitoring.report import ReportHeader, prune_reports, report_name, with_header
from candlecast.monitoring.result import CheckResult
from tests.helpers import btc_pair

AS_OF = datetime(2020, 3, 22, tzinfo=UTC)
WINDOW = timedelta(hours=500)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("trained", "reference"),
    [
        # a champion trained up to the check: its window is cut where the current one starts
        ((day("2019-11-01"), AS_OF), (day("2019-11-01"), AS_OF - WINDOW)),
        # trained up to inside the current window: cut there too
        ((day("2019-11-01"), AS_OF - WINDOW / 2), (day("2019-11-01"), AS_OF - WINDOW)),
        # trained well before: the whole training window
        ((day("2019-06-01"), day("2019-12-01")), (day("2019-06-01"), day("2019-12-01"))),
        # a training window starting inside the current one: the window before it
        ((AS_OF - WINDOW / 2, AS_OF), (AS_OF - 2 * WINDOW, AS_OF - WINDOW)),
        # no champion: the window before the current one
        (None, (AS_OF - 2 * WINDOW, AS_OF - WINDOW)),
    ],
)
def test_the_reference_never_overlaps_the_current_window(trained, reference):
    found, current = check_windows(AS_OF, WINDOW, trained)
    assert current == (AS_OF - WINDOW, AS_OF)
    assert found == reference
    assert found[0] < found[1] <= current[0]


def written(folder: Path, as_of: datetime, at: datetime) -> Path:
    path = folder / report_name(as_of, at)
    path.write_text("<html><body></body></html>")
    return path


def test_only_the_newest_reports_by_writing_time_are_kept(tmp_path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    live = [
        written(tmp_path, start + timedelta(days=i), start + timedelta(days=i)) for i in range(5)
    ]
    # a backfill writes a report of an old as_of last: it is the newest, kept
    backfilled = written(tmp_path, day("2020-01-01"), start + timedelta(days=9))
    other = tmp_path / "notes.html"
    other.write_text("not a report")
    deleted = prune_reports(tmp_path, keep=3)
    assert sorted(deleted) == sorted(live[:3])
    assert sorted(tmp_path.iterdir()) == sorted([*live[3:], backfilled, other])
    assert prune_reports(tmp_path, keep=3) == []


def header(champion_kind: str | None = "lightgbm", **changes) -> ReportHeader:
    """The header of a check result with ``changes``."""
    fields = {
        "stream": "replay_btc_usd_1h",
        "as_of": AS_OF,
        "champion_version": "3",
        "reference": (day("2019-11-01"), AS_OF - WINDOW),
        "current": (AS_OF - WINDOW, AS_OF),
        "drift": DriftResult([], 500, 500, 0.5, []),
        "prediction": FeatureDrift("prediction", "wasserstein", 0.71, 0.5, True),
        "realized": None,
        "forecasts_logged": 40,
        "feature_staleness_s": None,
        "decision": RetrainDecision(True, "data drift: 10 of 15 features"),
        "min_forecasts": 100,
    }
    return ReportHeader(CheckResult(**(fields | changes)), champion_kind)


def test_the_header_names_stream_champion_windows_and_findings():
    page = with_header("<html><head></head><body class='x'><div>evidently</div></body>", header())
    top = page[: page.index("<div>evidently</div>")]
    assert "<body class='x'>" in top  # first in the body, Evidently's page follows
    text = html.unescape(re.sub(r"<[^>]+>", " ", top))
    for expected in (
        "replay_btc_usd_1h",
        "v3 (lightgbm)",
        "Reference window 2019-11-01 00:00 UTC .. 2020-03-01 04:00 UTC",
        "Current window 2020-03-01 04:00 UTC .. 2020-03-22 00:00 UTC",
        "drifted: served forecasts against the champion's holdout forecasts, wasserstein 0.71",
        "not judged yet (0 of 100 forecasts realized)",
    ):
        assert expected in " ".join(text.split()), text


def test_a_header_without_champion_says_so_and_escapes_text():
    found = header(
        champion_version=None,
        champion_kind=None,
        prediction=None,
        decision=RetrainDecision(False, "<b>"),
    )
    assert "none yet" in found.html() and "&lt;b&gt;" in found.html()
    assert "not measured" in found.html()


@pytest.mark.slow
def test_checks_keep_headed_reports_up_to_the_configured_number(tmp_path, monkeypatch):
    """Real checks of the bundled BTC/USD history (no champion yet) with reports_kept 2: three
    checks leave the two newest reports, each headed by its stream and windows."""
    from candlecast.data import ingestion
    from candlecast.monitoring.check import check_pair
    from candlecast.monitoring.store import MetricsStore

    monkeypatch.setenv("CANDLECAST_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CANDLECAST_METRICS_URL", raising=False)
    pair = btc_pair(
        start=datetime(2020, 1, 1), end=datetime(2020, 3, 25), monitoring={"reports_kept": 2}
    )
    ingestion.ingest(pair, day("2020-01-15"), day("2020-03-25"), with_history=False)
    ingestion.validate(pair, day("2020-01-15"), day("2020-03-25"))
    store = MetricsStore()
    results = [
        check_pair(pair, day(f"2020-03-{d}"), store=store, now=day(f"2026-01-0{i + 1}"))
        for i, d in enumerate(("20", "21", "22"))
    ]
    folder = Path(results[-1].report_path or "").parent
    kept = sorted(folder.iterdir())
    assert [str(p) for p in kept] == [r.report_path for r in results[1:]]
    page = kept[-1].read_text()
    top = page[page.index('<section id="candlecast-check"') : page.index("</section>")]
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", top)).split())
    assert "candlecast drift check: replay_btc_usd_1h as of 2020-03-22 00:00 UTC" in text
    assert "Reference window 2020-02-09 08:00 UTC .. 2020-03-01 04:00 UTC" in text
    assert "Current window 2020-03-01 04:00 UTC .. 2020-03-22 00:00 UTC" in text
    assert "none yet" in text
    header_in_browser(kept[-1])


def header_in_browser(page: Path) -> None:
    """The kept report in headless Chromium: the header reads first, above Evidently's own
    report; a screenshot is kept as a test artifact (DOM assertions, the PNG is for people)."""
    import os

    from tests.browser import Browser, chromium
    from tests.helpers import REPO

    if chromium() is None:
        pytest.skip("chromium missing (scripts/setup.sh)")
    folder = Path(os.environ.get("CANDLECAST_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    with Browser.launch(page.parent / "chromium") as browser:
        browser.goto(page.as_uri())
        text = browser.wait_for(
            "(() => { const s = document.querySelector('#candlecast-check');"
            " return s && document.body.innerText.length > s.innerText.length + 500"
            " ? s.innerText : null; })()",
            "the header above Evidently's rendered report",
        )
        top = browser.evaluate(
            "document.querySelector('#candlecast-check').getBoundingClientRect().top"
        )
        browser.screenshot(folder / "evidently-drift-header.png")
    assert "Current window" in text and "replay_btc_usd_1h" in text
    assert top < 100  # first on the page
