"""A first run stopped between raw ingest and validation (killed, or a validation that wrote
only its oldest days before the disk filled) does not wedge the stream: the re-run validates
every raw candle of the history no validation passed, and ``candlecast gaps`` reports the
validated store, saying how many fetched candles wait for validation.

The stages run as ``candlecast run`` runs them, against the replay exchange of the bundled
candles, in a data directory of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from candlecast.cli.app import app
from candlecast.data import ingestion
from candlecast.orchestration import stages
from candlecast.timeframes import ms_to_datetime, to_ms
from tests.helpers import BTC_FILE

START, END = datetime(2022, 1, 10, tzinfo=UTC), datetime(2022, 1, 11, tzinfo=UTC)
TRAIN_DAYS = 20


@pytest.fixture
def env(tmp_path, monkeypatch):
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(
        "pairs:\n"
        f"  - {{symbol: BTC/USD, exchange: replay, replay_file: {BTC_FILE}, timeframe: 1h,\n"
        f"     start: 2021-06-01, training: {{train_days: {TRAIN_DAYS}}}}}\n"
    )
    values = {"CANDLECAST_HOME": str(tmp_path / "home"), "CANDLECAST_PAIRS": str(pairs)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def gaps_output(env) -> str:
    result = CliRunner().invoke(app, ["gaps", "--pair", "BTC/USD"], env=env)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def assert_history_validated(pair, since_ms: int) -> None:
    raw = ingestion.raw_table(pair.stream).keys(since_ms, to_ms(END))
    validated = ingestion.validated_table(pair.stream).keys(since_ms, to_ms(END))
    assert sorted(validated) == sorted(raw) and len(raw) > TRAIN_DAYS * 24
    window = ingestion.stored_completeness(pair.stream, END - timedelta(days=TRAIN_DAYS), END)
    assert window.missing == 0, window.describe()


def test_a_rerun_validates_the_history_a_run_killed_after_ingest_left_raw(env):
    pair = stages.pair_config("BTC/USD")
    first = stages.ingest(pair, START, END)  # the first run, killed before validation
    assert first.start_ms < to_ms(START)
    waiting = gaps_output(env)
    assert f"{first.rows} fetched candles not validated yet" in waiting, waiting

    rerun = stages.backfill(pair, START, END)
    assert rerun.ingest.rows == 0 and rerun.ingest.start_ms == first.start_ms
    assert rerun.validate.rows == first.rows
    assert_history_validated(pair, first.start_ms)
    assert "not validated" not in gaps_output(env)


def test_a_rerun_validates_what_a_validation_stopped_part_way_did_not_write(env):
    pair = stages.pair_config("BTC/USD")
    first = stages.ingest(pair, START, END)
    # What a full disk leaves: the validated store's partitions are written oldest day
    # first, and the write failed after ten of them.
    stopped = ms_to_datetime(first.start_ms) + timedelta(days=10)
    ingestion.validate(pair, ms_to_datetime(first.start_ms), stopped)

    rerun = stages.backfill(pair, START, END)
    assert rerun.ingest.start_ms == to_ms(stopped)
    assert_history_validated(pair, first.start_ms)


def test_gaps_reports_the_holes_of_the_validated_store(env):
    pair = stages.pair_config("BTC/USD")
    stages.backfill(pair, START, END)
    hole = [to_ms(START) + hour * 3_600_000 for hour in (3, 4)]
    ingestion.validated_table(pair.stream).delete(hole)  # raw keeps them
    assert "1 gaps, 2 candles missing" in gaps_output(env)
