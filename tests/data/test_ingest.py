"""Ingestion from the replay exchange: idempotent, and a corrupted batch stops at validation."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from candlecast.data import ingestion as data
from candlecast.data import quality
from candlecast.data.sources import ReplayExchange
from candlecast.errors import CandleValidationError, EmptyBatchError, MissingDataError
from candlecast.features import featurestore
from candlecast.timeframes import to_ms
from tests.helpers import REPO, btc_pair, settings_in

DAY1 = (datetime(2022, 1, 10, tzinfo=UTC), datetime(2022, 1, 11, tzinfo=UTC))
DAY2 = (datetime(2022, 1, 11, tzinfo=UTC), datetime(2022, 1, 12, tzinfo=UTC))


def test_same_interval_twice_gives_identical_data(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    first = data.ingest(pair, *DAY1, settings=settings)
    snapshot = {p: Path(p).read_bytes() for p in first.files}
    second = data.ingest(pair, *DAY1, settings=settings)
    # The interval is stored whole: the re-run resumes at its end and fetches nothing.
    assert first.rows == 24 and first.resumed_ms == to_ms(DAY1[0])
    assert second.rows == 0 and second.resumed_ms == to_ms(DAY1[1])
    assert (second.start_ms, second.end_ms) == (first.start_ms, first.end_ms)
    assert {p: Path(p).read_bytes() for p in first.files} == snapshot
    stored = data.raw_table(pair.stream, settings).read()
    assert len(stored) == 24 and stored["ts"].is_unique


def test_corrupted_batch_is_quarantined_and_never_reaches_features(tmp_path, btc_candles):
    settings, pair = settings_in(tmp_path), btc_pair()
    corrupted = btc_candles.copy()
    for hour in (5, 6):  # two of the day's 24 candles: more than one rule may refuse alone
        bad_row = corrupted.index[corrupted["ts"] == to_ms(DAY2[0]) + hour * 3_600_000][0]
        corrupted.loc[bad_row, "high"] = corrupted.loc[bad_row, "low"] / 2  # high below low
    exchange = ReplayExchange({("BTC/USD", "1h"): corrupted})
    start = datetime(2021, 12, 1, tzinfo=UTC)
    data.ingest(pair, start, DAY1[1], source=exchange, settings=settings)
    data.validate(pair, start, DAY1[1], settings=settings)
    featurestore.write_features(pair, *DAY1, settings=settings)

    data.ingest(pair, *DAY2, source=exchange, settings=settings)
    with pytest.raises(CandleValidationError) as failure:
        data.validate(pair, *DAY2, settings=settings)
    message = str(failure.value)
    assert "expect_column_pair_values_a_to_be_greater_than_b on high >= open" in message
    assert "2022-01-11T05:00:00+00:00" in message

    folder = failure.value.report.quarantine
    assert {p.name for p in folder.iterdir()} == {"batch.parquet", "validation.json", "summary.txt"}
    assert "data docs: file://" in message
    assert json.loads((folder / "validation.json").read_text())["success"] is False
    assert data.validated_table(pair.stream, settings).read(to_ms(DAY2[0]), to_ms(DAY2[1])).empty
    with pytest.raises(MissingDataError, match="no feature rows"):
        featurestore.write_features(pair, *DAY2, settings=settings)
    offline = featurestore.offline_table(pair.stream, settings).read()
    assert offline["candle_ts"].max() < to_ms(DAY2[0])
    assert len(data.raw_table(pair.stream, settings).read(to_ms(DAY2[0]), to_ms(DAY2[1]))) == 24


def test_one_impossible_candle_of_a_day_is_refused_alone(tmp_path, btc_candles):
    settings, pair = settings_in(tmp_path), btc_pair()
    corrupted = btc_candles.copy()
    bad = to_ms(DAY2[0]) + 5 * 3_600_000
    row = corrupted.index[corrupted["ts"] == bad][0]
    corrupted.loc[row, "high"] = corrupted.loc[row, "low"] / 2
    exchange = ReplayExchange({("BTC/USD", "1h"): corrupted})
    data.ingest(pair, *DAY2, source=exchange, settings=settings)
    report = data.validate(pair, *DAY2, settings=settings)
    assert report.success and report.refused_rows == 1
    assert report.completeness.missing == 1 and "23 candles passed" in report.summary()
    stored = data.validated_table(pair.stream, settings).read(to_ms(DAY2[0]), to_ms(DAY2[1]))
    assert len(stored) == 23 and bad not in set(stored["ts"])
    refused = pd.read_parquet(report.quarantine / "refused.parquet")
    assert refused["ts"].tolist() == [bad] and "high >= open" in refused["rule"].iloc[0]
    assert quality.refused_candles(pair.stream, settings).tolist() == [bad]  # for `gaps`


def test_a_candle_from_the_future_is_refused_alone(tmp_path, btc_candles):
    settings, pair = settings_in(tmp_path), btc_pair()
    batch = btc_candles[btc_candles["ts"] >= to_ms(DAY1[0])].head(48).reset_index(drop=True)
    now = int(batch["ts"].iloc[-1]) + 1_800_000  # the last candle is still open
    report = data.import_history(pair, batch, "open-candle", settings, now_ms=now)
    assert report.success and report.refused_rows == 1
    assert report.refused["rule"].tolist() == [data.FUTURE_RULE]
    stored = data.validated_table(pair.stream, settings).read()
    assert len(stored) == 47 and stored["ts"].max() == batch["ts"].iloc[-2]
    assert (report.quarantine / "future.parquet").is_file()


def test_validate_without_ingest_says_so(tmp_path):
    with pytest.raises(EmptyBatchError, match="run ingest"):
        data.validate(btc_pair(), *DAY1, settings=settings_in(tmp_path))


DAY3 = (datetime(2022, 1, 12, tzinfo=UTC), datetime(2022, 1, 13, tzinfo=UTC))


def test_a_missed_interval_is_caught_up_from_the_last_stored_candle(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    data.ingest(pair, *DAY1, settings=settings)
    result = data.ingest(pair, *DAY3, settings=settings)
    assert result.start_ms == to_ms(DAY2[0]) and result.rows == 48
    assert len(data.raw_table(pair.stream, settings).read()) == 72
    assert data.stored_gaps(pair.stream, settings) == []


def test_gaps_are_reported_and_refetched_by_the_next_run(tmp_path, btc_candles):
    settings, pair = settings_in(tmp_path), btc_pair()
    hole = (to_ms(DAY1[0]) + 3 * 3_600_000, to_ms(DAY1[0]) + 8 * 3_600_000)
    patchy = btc_candles[~btc_candles["ts"].between(hole[0], hole[1] - 1)]
    data.ingest(pair, *DAY1, source=ReplayExchange({("BTC/USD", "1h"): patchy}), settings=settings)
    gaps = data.stored_gaps(pair.stream, settings)
    assert [(g.start_ms, g.end_ms, g.missing) for g in gaps] == [(*hole, 5)]

    result = data.ingest(pair, *DAY2, settings=settings)  # the exchange has them now
    assert result.refetched == [hole]
    assert data.stored_gaps(pair.stream, settings) == []
    report = data.validate(pair, datetime.fromtimestamp(hole[0] / 1000, UTC), DAY2[1], settings)
    assert report.success and report.rows == 21 + 24


def test_imported_history_goes_through_validation_into_both_stores(tmp_path):
    from candlecast.data.importers import read_history

    settings = settings_in(tmp_path)
    pair = btc_pair(symbol="ETH/BTC", timeframe="5m", exchange="binance", replay_file=None)
    batch = read_history(REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather")
    report = data.import_history(pair, batch, "import-eth", settings)
    assert report.success and report.rows == 5760
    assert len(data.validated_table(pair.stream, settings).read()) == 5760
    assert len(data.raw_table(pair.stream, settings).read()) == 5760


def test_an_impossible_row_is_refused_alone_and_kept_with_its_rule(tmp_path):
    from candlecast.data.importers import read_history

    settings = settings_in(tmp_path)
    pair = btc_pair(symbol="ETH/BTC", timeframe="5m", exchange="binance", replay_file=None)
    batch = read_history(REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather")
    batch.loc[100, "low"] = -1.0
    report = data.import_history(pair, batch, "import-eth", settings)
    stored = data.validated_table(pair.stream, settings).read()
    assert len(stored) == len(batch) - 1 and batch.loc[100, "ts"] not in set(stored["ts"])
    assert len(data.raw_table(pair.stream, settings).read()) == len(batch) - 1
    folder = tmp_path / "quarantine" / "binance" / "ETH_BTC" / "5m" / "import-eth"
    refused = pd.read_parquet(folder / "refused.parquet")
    assert refused["ts"].tolist() == [batch.loc[100, "ts"]]
    assert "expect_column_values_to_be_between on low" in refused["rule"].iloc[0]
    assert report.completeness.missing == 1 and "1 refused" in report.summary()


def test_a_corrupt_history_file_is_quarantined_whole(tmp_path):
    from candlecast.data.importers import read_history

    settings = settings_in(tmp_path)
    pair = btc_pair(symbol="ETH/BTC", timeframe="5m", exchange="binance", replay_file=None)
    batch = read_history(REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather")
    batch.loc[100:200, "low"] = -1.0  # 101 of 5,760 rows: more than the 1% a rule may refuse
    with pytest.raises(CandleValidationError, match="low"):
        data.import_history(pair, batch, "import-eth", settings)
    assert data.validated_table(pair.stream, settings).read().empty
    assert data.raw_table(pair.stream, settings).read().empty
    assert (tmp_path / "quarantine" / "binance" / "ETH_BTC" / "5m" / "import-eth").is_dir()


def test_validation_builds_linkable_data_docs(tmp_path):
    settings, pair = settings_in(tmp_path), btc_pair()
    data.ingest(pair, *DAY1, settings=settings)
    report = data.validate(pair, *DAY1, settings=settings)
    docs = tmp_path / "data_docs" / "replay" / "BTC_USD" / "1h"
    assert (docs / "index.html").exists()
    assert report.docs.is_file() and report.docs.is_relative_to(docs / "validations")
    page = report.docs.read_text()
    assert "candles_1h" in page
    # the page names the stream and the interval it validated, not GE's defaults
    run = "replay_btc_usd_1h_20220110T0000-20220111T0000"
    assert report.docs.relative_to(docs / "validations").parts[:2] == ("candles_1h", run)
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Data asset: replay_btc_usd_1h candles 2022-01-10 00:00 .. 2022-01-11 00:00 UTC" in text
    assert f"Run Name {run}" in text
    assert "__none__" not in page and "Data asset: None" not in text


def test_higher_timeframes_are_derived_from_validated_candles(tmp_path):
    settings = settings_in(tmp_path)
    pair = btc_pair(derived_timeframes=["4h", "1d"])
    start, end = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 8, tzinfo=UTC)
    data.ingest(pair, start, end, settings=settings)
    data.validate(pair, start, end, settings=settings)
    assert data.derive_timeframes(pair, start, end, settings) == {"4h": 42, "1d": 7}
    days = data.validated_table(pair.stream.at("1d"), settings).read()
    hours = data.validated_table(pair.stream, settings).read()
    first = hours[hours["ts"] < to_ms(start) + 86_400_000]
    assert days.iloc[0][["open", "high", "low", "close"]].tolist() == [
        first["open"].iloc[0],
        first["high"].max(),
        first["low"].min(),
        first["close"].iloc[-1],
    ]
    assert days.iloc[0]["volume"] == pytest.approx(first["volume"].sum())


def test_derived_timeframe_must_be_a_multiple():
    with pytest.raises(ValueError, match="not a multiple"):
        btc_pair(derived_timeframes=["90m"])
