"""The corruption suite: every kind of bad input we know of, offered to a store that holds a
month of validated BTC/USD candles, and what becomes of it.

Each class has one expected outcome: rejected by the reader with one line naming the file and
the problem, rejected by the data API (a candle from the future, a batch that would change
stored candles) with the batch kept in the quarantine, or rejected by the named Great
Expectations expectation with the batch quarantined; or, for harmless variants (a byte-order
mark), read correctly and stored as a no-op. In every case the files of the store are
byte-identical afterwards (hashed before and after), so nothing stored changed.

An impossible row in an otherwise sound batch (:data:`ROWS_REFUSED`) is refused alone: it is
kept in the quarantine with the rule that caught it, every stored file is byte-identical
afterwards, and only the batch's new, sound candles are added.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from candlecast.data import ingestion
from candlecast.data.importers import read_history
from candlecast.data.integrity import FutureCandleError, OverlapConflictError
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import CandleValidationError, ExchangeUnavailableError, HistoryFormatError
from candlecast.timeframes import to_ms
from tests.data.test_validation import CORRUPTIONS, SEVERITY
from tests.helpers import REPO, btc_pair, settings_in

HOUR = 3_600_000
STORED = (datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 2, 1, tzinfo=UTC))
#: A batch that repeats the stored last week and adds the next one.
NEXT = (datetime(2022, 1, 25, tzinfo=UTC), datetime(2022, 2, 8, tzinfo=UTC))
PAIR = btc_pair()


@dataclass
class Store:
    settings: object
    candles: pd.DataFrame  # the whole bundled history

    def slice(self, span: tuple[datetime, datetime]) -> pd.DataFrame:
        ts = self.candles["ts"]
        return self.candles[(ts >= to_ms(span[0])) & (ts < to_ms(span[1]))].reset_index(drop=True)

    def digest(self) -> dict[str, str]:
        home = Path(self.settings.home)
        files = [p for d in ("raw", "validated") for p in (home / d).rglob("*") if p.is_file()]
        return {str(p.relative_to(home)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def store(tmp_path_factory, btc_candles) -> Store:
    settings = settings_in(tmp_path_factory.mktemp("corruption"))
    held = Store(settings, btc_candles)
    report = ingestion.import_history(PAIR, held.slice(STORED), "clean-january", settings)
    assert report.success and report.rows == 744
    return held


# -- how each class is offered ------------------------------------------------------------------


def offer_frame(store: Store, batch: pd.DataFrame, name: str, **options) -> None:
    ingestion.import_history(PAIR, batch, f"case-{name}", store.settings, **options)


def offer_file(store: Store, path: Path, name: str, fmt: str | None = None) -> None:
    batch = read_history(path, fmt, symbol=PAIR.symbol)
    offer_frame(store, batch, name)


def plain_csv(frame: pd.DataFrame) -> str:
    return frame[CANDLE_COLUMNS].to_csv(index=False)


def write(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def with_next_week(store: Store, corrupt: Callable[[pd.DataFrame], pd.DataFrame]):
    return lambda tmp: corrupt(store.slice(NEXT).copy())


@dataclass(frozen=True)
class Case:
    """A corruption class: ``make(store, tmp)`` returns a frame or a file path; ``outcome`` is
    the error kind, ``detail`` what its message (or the failed expectation) must name."""

    make: Callable[[Store, Path], pd.DataFrame | Path]
    outcome: type[Exception] | str | None
    detail: str
    fmt: str | None = None


#: The outcome of a class whose impossible rows are refused alone (the rest stored).
ROWS_REFUSED = "rows refused"


def _ge_case(name: str) -> Case:
    corrupt, expectation, column = CORRUPTIONS[name]
    detail = f"{expectation} on {column}" if column else expectation
    # rows 3..40 of the batch repeat stored candles: a flagged row there differs from the
    # stored candle (a conflict, nothing stored); a refused row leaves the stored one alone
    outcome = {"refuse": ROWS_REFUSED, "flag": OverlapConflictError}.get(
        SEVERITY[name], CandleValidationError
    )
    if outcome is OverlapConflictError:
        detail = "1 candle(s) differ"
    return Case(lambda s, t: corrupt(s.slice(NEXT).copy()), outcome, detail)


def _shifted_tz(store: Store, tmp: Path) -> pd.DataFrame:
    """The stored month exported with local time (UTC+1) taken for UTC: every candle one hour
    late, so 743 of 744 stored timestamps get their neighbour's values."""
    batch = store.slice(STORED).copy()
    batch["ts"] = batch["ts"] + HOUR
    return batch


def _plus_two_percent(store: Store, tmp: Path) -> pd.DataFrame:
    """The stored month from another source, prices 2% higher (OHLCV only, as most files)."""
    batch = store.slice(STORED)[CANDLE_COLUMNS].copy()
    for column in ("open", "high", "low", "close"):
        batch[column] = batch[column] * 1.02
    return batch


def _from_2030(store: Store, tmp: Path) -> pd.DataFrame:
    batch = store.slice(NEXT).copy()
    batch.loc[len(batch) - 24 :, "ts"] += 8 * 365 * 86_400_000  # the last day, dated 2030
    return batch.sort_values("ts").reset_index(drop=True)


def _truncated_csv(store: Store, tmp: Path) -> Path:
    text = plain_csv(store.slice(NEXT))
    return write(tmp, "cut.csv", text[: len(text) // 2])  # ends in the middle of a row


def _truncated_gzip(store: Store, tmp: Path) -> Path:
    packed = gzip.compress(plain_csv(store.slice(NEXT)).encode())
    return write(tmp, "cut.csv.gz", packed[: len(packed) // 2])


def _truncated_parquet(store: Store, tmp: Path) -> Path:
    path = tmp / "cut.parquet"
    store.slice(NEXT).to_parquet(path, index=False)
    return write(tmp, "cut.parquet", path.read_bytes()[:-200])


def _truncated_json(store: Store, tmp: Path) -> Path:
    rows = store.slice(NEXT)[CANDLE_COLUMNS].to_numpy().tolist()
    text = json.dumps([[int(r[0]), *r[1:]] for r in rows])
    return write(tmp, "cut.json", text[: len(text) // 2])


def _utf16_without_bom(store: Store, tmp: Path) -> Path:
    return write(tmp, "utf16.csv", plain_csv(store.slice(NEXT)).encode("utf-16-le"))


def _latin1(store: Store, tmp: Path) -> Path:
    text = "# Données BTC/USD\n" + plain_csv(store.slice(NEXT))
    return write(tmp, "latin1.csv", text.encode("latin-1"))


def _utf8_bom(store: Store, tmp: Path) -> Path:
    return write(tmp, "bom.csv", codecs.BOM_UTF8 + plain_csv(store.slice(STORED)).encode())


def _utf16_bom(store: Store, tmp: Path) -> Path:
    return write(tmp, "utf16bom.csv", plain_csv(store.slice(STORED)).encode("utf-16"))


def _mixed_timeframes(store: Store, tmp: Path) -> pd.DataFrame:
    """A week of 1h candles, then two days of 4h candles (every fourth hour, aggregated)."""
    hours = store.slice((datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 2, 10, tzinfo=UTC)))
    tail = hours.iloc[7 * 24 :]
    buckets = tail.groupby(tail["ts"] // (4 * HOUR))
    four_hourly = buckets.agg(
        ts=("ts", "first"),
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        quote_volume=("quote_volume", "sum"),
    ).reset_index(drop=True)
    return pd.concat([hours.iloc[: 7 * 24], four_hourly], ignore_index=True)


def _five_minute_file(store: Store, tmp: Path) -> Path:
    return REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather"


def _cdd_of_another_pair(store: Store, tmp: Path) -> Path:
    frame = store.slice(NEXT).iloc[::-1]
    lines = ["https://www.CryptoDataDownload.com", "unix,date,symbol,open,high,low,close,Volume"]
    for r in frame.itertuples():
        lines.append(f"{r.ts // 1000},x,ETH/BTC,{r.open},{r.high},{r.low},{r.close},{r.volume}")
    return write(tmp, "Bitstamp_ETHBTC_1h.csv", "\n".join(lines) + "\n")


def _unlabelled_other_pair(store: Store, tmp: Path) -> Path:
    """ETH/BTC 5m prices put on the stored hours, in a file that names no symbol."""
    eth = read_history(_five_minute_file(store, tmp)).head(744)
    eth["ts"] = store.slice(STORED)["ts"].to_numpy()
    return write(tmp, "prices.csv", plain_csv(eth))


def _conflicting_duplicates(store: Store, tmp: Path) -> pd.DataFrame:
    batch = store.slice(NEXT)
    twin = batch.iloc[[200]].assign(close=lambda f: f["close"] * 1.01)
    return pd.concat([batch, twin]).sort_values("ts", kind="stable").reset_index(drop=True)


def _zero_volume(store: Store, tmp: Path) -> pd.DataFrame:
    batch = store.slice((datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 2, 8, tzinfo=UTC)))
    return batch.assign(volume=0.0, quote_volume=0.0)


GE_CLASSES = {name: _ge_case(name) for name in CORRUPTIONS}
CASES: dict[str, Case] = {
    **GE_CLASSES,
    "timezone-shifted copy over stored candles": Case(
        _shifted_tz, OverlapConflictError, "743 candle(s) differ"
    ),
    "prices +2% over stored candles": Case(
        _plus_two_percent, OverlapConflictError, "744 candle(s) differ"
    ),
    "candles dated 2030": Case(_from_2030, FutureCandleError, "the first opens 2030-"),
    "csv cut mid-row": Case(_truncated_csv, HistoryFormatError, "(corrupt or truncated)"),
    "gzip cut short": Case(_truncated_gzip, HistoryFormatError, "corrupt or truncated archive"),
    "parquet cut short": Case(_truncated_parquet, HistoryFormatError, "corrupt or truncated"),
    "json cut short": Case(_truncated_json, HistoryFormatError, "corrupt or truncated JSON"),
    "UTF-16 without BOM": Case(
        _utf16_without_bom, HistoryFormatError, "nor UTF-8 or UTF-16 text with a byte-order mark"
    ),
    "latin-1 text": Case(_latin1, HistoryFormatError, "byte 0xe9 at offset 6 (line 1)"),
    "UTF-8 BOM copy of stored candles": Case(_utf8_bom, None, "744 already stored"),
    "UTF-16 BOM copy of stored candles": Case(_utf16_bom, None, "744 already stored"),
    "1h and 4h candles in one file": Case(
        _mixed_timeframes, CandleValidationError, "expect_column_values_to_be_in_set on coarse"
    ),
    "5m file into a 1h stream": Case(
        _five_minute_file, HistoryFormatError, "the file is for ETH/BTC, not BTC/USD"
    ),
    "CryptoDataDownload file of another pair": Case(
        _cdd_of_another_pair, HistoryFormatError, "the file is for ETH/BTC, not BTC/USD"
    ),
    "unlabelled file of another pair over stored candles": Case(
        _unlabelled_other_pair, OverlapConflictError, "744 candle(s) differ"
    ),
    "duplicated, conflicting rows": Case(
        _conflicting_duplicates, ROWS_REFUSED, "expect_column_values_to_be_unique on ts"
    ),
    "all-zero volume": Case(
        _zero_volume, CandleValidationError, "expect_column_mean_to_be_between on zero_volume"
    ),
}
#: Injected clock for the future class: the store's present is the end of its data.
NOW = to_ms(datetime(2022, 3, 1, tzinfo=UTC))


def test_there_are_at_least_twenty_classes():
    assert len(CASES) + 1 >= 20  # + empty pages mid-range, offered through ingestion below


@pytest.mark.slow  # one GE validation with data docs per class: about 1 s each
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.outcome != ROWS_REFUSED])
def test_each_corruption_is_rejected_and_the_store_is_unchanged(store, tmp_path, name):
    case = CASES[name]
    before = store.digest()
    made = case.make(store, tmp_path)
    offer = (
        (lambda: offer_file(store, made, name, case.fmt))
        if isinstance(made, Path)
        else (lambda: offer_frame(store, made, name, now_ms=NOW))
    )
    if case.outcome is None:
        offer()  # read as it is, and a no-op for the store
    else:
        assert isinstance(case.outcome, type)
        with pytest.raises(case.outcome) as caught:
            offer()
        message = str(caught.value)
        assert case.detail in message, message
        if case.outcome is HistoryFormatError:
            assert "\n" not in message and str(made) in message  # one line, naming the file
        else:
            folder = PAIR.stream.candle_dir(store.settings.paths.quarantine) / f"case-{name}"
            assert (folder / "batch.parquet").is_file() and (folder / "summary.txt").is_file()
    assert store.digest() == before


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.outcome == ROWS_REFUSED])
def test_each_impossible_row_is_refused_alone_and_stored_files_are_unchanged(store, tmp_path, name):
    shutil.copytree(Path(store.settings.home), tmp_path / "home")
    copy = Store(settings_in(tmp_path / "home"), store.candles)
    before = copy.digest()
    batch = CASES[name].make(copy, tmp_path)
    assert isinstance(batch, pd.DataFrame)
    report = ingestion.import_history(PAIR, batch, f"case-{name}", copy.settings, now_ms=NOW)

    assert CASES[name].detail in report.summary() and "counted as missing" in report.summary()
    after = copy.digest()
    assert {path: after[path] for path in before} == before  # stored files untouched
    folder = PAIR.stream.candle_dir(copy.settings.paths.quarantine) / f"case-{name}"
    refused = pd.read_parquet(folder / "refused.parquet")
    assert 1 <= len(refused) <= 2 and refused["rule"].str.contains(CASES[name].detail).all()
    validated = ingestion.validated_table(PAIR.stream, copy.settings).read()
    new = copy.slice((STORED[1], NEXT[1]))
    refused_new = set(refused["ts"]) & set(new["ts"])
    assert len(validated) == 744 + len(new) - len(refused_new)  # the sound new week added
    assert not refused_new & set(validated["ts"])
    assert report.completeness is not None and report.completeness.missing >= 1


def test_a_conflict_report_lists_every_differing_value(store):
    batch = _plus_two_percent(store, Path())
    with pytest.raises(OverlapConflictError) as caught:
        offer_frame(store, batch, "report")
    differences = pd.read_parquet(caught.value.quarantine / "differences.parquet")
    assert len(differences) == 744 * 4 and set(differences["column"]) == {
        "open", "high", "low", "close",
    }  # fmt: skip
    first = differences.iloc[0]
    stored = store.slice(STORED).set_index("ts")
    assert first["stored"] == stored.loc[first["ts"], first["column"]]
    assert first["new"] == pytest.approx(first["stored"] * 1.02, rel=1e-12)
    assert "2022-01-01T00:00:00+00:00 (open stored" in str(caught.value)


def test_empty_pages_mid_range_fail_naming_where_fetching_stopped(store):
    """Ingestion past the stored month from a source that has the candles but answers with
    empty pages: it fails naming the first missing candle, and stores nothing."""
    from candlecast.data.sources import ReplayExchange

    class Silent(ReplayExchange):
        def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None):
            return (
                []
                if since is not None and since >= to_ms(STORED[1])
                else super().fetch_ohlcv(symbol, timeframe, since, limit)
            )

    before = store.digest()
    source = Silent({("BTC/USD", "1h"): store.candles})
    with pytest.raises(ExchangeUnavailableError, match="since 2022-02-01T00:00:00") as caught:
        ingestion.ingest(PAIR, STORED[1], NEXT[1], source=source, settings=store.settings)
    assert "fetching stopped at 2022-02-01T00:00:00+00:00" in str(caught.value)
    assert store.digest() == before


def test_identical_overlap_is_a_no_op(store):
    before = store.digest()
    report = ingestion.import_history(PAIR, store.slice(STORED), "again", store.settings)
    assert report.unchanged == 744 and report.replaced == 0
    assert store.digest() == before


def test_overwrite_keeps_the_replaced_candles_and_undo_restores_them(tmp_path, btc_candles):
    settings = settings_in(tmp_path)
    held = Store(settings, btc_candles)
    ingestion.import_history(PAIR, held.slice(STORED), "clean", settings)
    clean = held.digest()

    changed = _plus_two_percent(held, tmp_path).iloc[:48]  # two days, +2%
    report = ingestion.import_history(PAIR, changed, "fix", settings, overwrite=True)

    assert report.replaced == 48 and "to undo: candlecast import-candles" in report.summary()
    stored = ingestion.validated_table(PAIR.stream, settings).read()
    assert np.allclose(stored["close"].iloc[:48], held.slice(STORED)["close"].iloc[:48] * 1.02)
    kept = PAIR.stream.candle_dir(settings.paths.quarantine) / "fix" / "replaced.parquet"
    assert report.undo and str(kept) in report.undo
    # undo: the command the note gives, i.e. import the kept rows with overwrite
    undone = read_history(kept, symbol=PAIR.symbol)
    ingestion.import_history(PAIR, undone, "undo", settings, overwrite=True)
    assert held.digest() == clean
