"""read_history on every supported format and every layout each format has had (fixtures
under tests/fixtures/importers, made from the real bundled data by make_fixtures.py), and on
broken files: every error names the file and the problem."""

from __future__ import annotations

import csv
import gzip
import json
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from candlecast.data.importers import detect_format, read_history
from candlecast.data.schema import CANDLE_COLUMNS
from candlecast.errors import HistoryFormatError

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "bundled"
FREQTRADE = BUNDLED / "freqtrade"
FIXTURES = REPO / "tests" / "fixtures" / "importers"
QUOTED = [*CANDLE_COLUMNS, "quote_volume"]
HOUR_MS = 3_600_000
#: The published files and what they hold: rows, first and last candle open time (unix ms).
FEATHERS = {
    "ETH_BTC-5m.feather": (5760, 1515560100000, 1517287800000),
    "LTC_BTC-5m.feather": (5760, 1515560100000, 1517287800000),
    "ADA_BTC-5m.feather": (5720, 1515560100000, 1517287800000),
    "TRX_BTC-5m.feather": (5754, 1515560100000, 1517287800000),
    "UNITTEST_BTC-1m.feather": (13681, 1509836520000, 1510700340000),
    "UNITTEST_BTC-30m.feather": (1920, 1512306000000, 1515760200000),
}


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """``got`` is ``expected`` exactly: candle columns, and ``quote_volume`` and ``trades``
    iff expected."""
    assert list(got.columns) == [c for c in [*QUOTED, "trades"] if c in expected]
    assert got["ts"].dtype == "int64"
    assert (got.dtypes.iloc[1:] == "float64").all()
    pd.testing.assert_frame_equal(
        got, expected.reset_index(drop=True), check_exact=True, check_dtype=True
    )


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    """The bundled BTC/USD hourly file as published (plus its quote volume), oldest first."""
    raw = pd.read_csv(BUNDLED / "BTC_USD-Hourly.csv", float_precision="round_trip")
    frame = raw.rename(columns={"unix": "ts", "Volume USD": "quote"})
    frame["ts"] = frame["ts"].astype("int64") * 1000
    frame["quote_volume"] = frame["quote"]
    return frame.sort_values("ts").reset_index(drop=True)


def feather_candles(name: str) -> pd.DataFrame:
    raw = pd.read_feather(FREQTRADE / name)
    ts = (raw["date"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return raw.drop(columns="date").assign(ts=ts.astype("int64"))[CANDLE_COLUMNS]


@pytest.fixture(scope="module")
def eth() -> pd.DataFrame:
    return feather_candles("ETH_BTC-5m.feather")


def binance_rows(frame: pd.DataFrame, unit: int) -> pd.DataFrame:
    """A Binance kline dump: open time, OHLCV, close time, quote volume, trades, takers, 0."""
    return pd.DataFrame(
        {
            "open_time": frame["ts"] * unit,
            **{c: frame[c] for c in CANDLE_COLUMNS[1:]},
            "close_time": (frame["ts"] + HOUR_MS - 1) * unit,
            "quote_volume": frame["quote"],
            "count": 100,
            "taker_buy_volume": frame["volume"] / 2,
            "taker_buy_quote_volume": frame["quote"] / 2,
            "ignore": 0,
        }
    )


# --- every format returns exactly the original candles ------------------------------------


@pytest.mark.parametrize("unit", [1, 1000], ids=["ms", "us"])
def test_binance_dump(tmp_path, btc, unit):
    path = tmp_path / f"BTCUSDT-1h-{unit}.csv"
    binance_rows(btc, unit).to_csv(path, header=False, index=False)
    assert path.read_text().split("\n")[0].split(",")[0] == str(1526364000000 * unit)
    assert detect_format(path) == "binance"
    expected = btc[QUOTED].assign(trades=100.0)  # quote volume and trade count kept
    assert_same(read_history(path), expected)
    assert_same(read_history(path, fmt="binance"), expected)


def test_binance_dump_zipped_with_header(tmp_path, btc):
    """Binance ships dumps as zip; its futures dumps carry a header line."""
    path = tmp_path / "BTCUSDT-1h-2022-02.zip"
    rows = binance_rows(btc.tail(672), 1)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("BTCUSDT-1h-2022-02.csv", rows.to_csv(index=False))
    assert detect_format(path) == "binance"
    assert_same(read_history(path), btc.tail(672)[QUOTED].assign(trades=100.0))


def cdd_text(frame: pd.DataFrame, unit: int, symbol: str, volumes: list[tuple[str, str]]) -> str:
    """A CryptoDataDownload file: banner, header, newest rows first."""
    out = frame.sort_values("ts", ascending=False)
    table = pd.DataFrame(
        {
            "unix": out["ts"] // 1000 * unit,
            "date": pd.to_datetime(out["ts"], unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S"),
            "symbol": symbol,
            **{c: out[c] for c in ["open", "high", "low", "close"]},
            **{name: out[column] for name, column in volumes},
        }
    )
    return "https://www.CryptoDataDownload.com\n" + table.to_csv(index=False)


def test_cryptodatadownload_unix_seconds(tmp_path, btc):
    path = tmp_path / "Bitstamp_BTCUSD_1h.csv"
    path.write_text(
        cdd_text(btc, 1, "BTC/USD", [("Volume BTC", "volume"), ("Volume USD", "quote")])
    )
    assert path.read_text().split("\n")[2].startswith("1646092800,2022-03-01 00:00:00,BTC/USD")
    assert detect_format(path) == "cryptodatadownload"
    assert_same(read_history(path), btc[QUOTED])


def test_cryptodatadownload_unix_ms_picks_the_base_volume_by_name(tmp_path, btc):
    path = tmp_path / "Binance_BTCUSDT_1h.csv"
    volumes = [("Volume USDT", "quote"), ("Volume BTC", "volume"), ("tradecount", "volume")]
    path.write_text(cdd_text(btc, 1000, "BTCUSDT", volumes))
    got = read_history(path, fmt="cryptodatadownload")
    assert_same(got, btc[QUOTED].assign(trades=btc["volume"]))  # tradecount kept as trades
    assert got["volume"].iloc[-1] == 52.05632  # base volume, not the 2254677.39 USD
    assert got["quote_volume"].iloc[-1] == 2254677.3870464


def test_bundled_btc_file_reads_as_cryptodatadownload(btc):
    path = BUNDLED / "BTC_USD-Hourly.csv"
    assert detect_format(path) == "cryptodatadownload"
    got = read_history(path)
    assert_same(got, btc[QUOTED])
    assert len(got) == 33259
    assert got["ts"].iloc[[0, -1]].tolist() == [1526364000000, 1646092800000]


@pytest.mark.parametrize("name", list(FEATHERS))
def test_freqtrade_feather_as_published(name):
    rows, first, last = FEATHERS[name]
    got = read_history(FREQTRADE / name)
    assert detect_format(FREQTRADE / name) == "freqtrade-feather"
    assert_same(got, feather_candles(name))
    assert (len(got), got["ts"].iloc[0], got["ts"].iloc[-1]) == (rows, first, last)


@pytest.mark.parametrize("compress", [False, True], ids=["json", "json.gz"])
def test_freqtrade_json(tmp_path, eth, compress):
    rows = [[int(r[0]), *map(float, r[1:])] for r in eth.itertuples(index=False)]
    text = json.dumps(rows)
    path = tmp_path / ("ETH_BTC-5m.json.gz" if compress else "ETH_BTC-5m.json")
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    assert text.startswith("[[1515560100000, 0.0984, 0.0994766, 0.09828605, 0.0994766,")
    assert detect_format(path) == "freqtrade-json"
    assert_same(read_history(path), eth)


# --- every layout each format has had: fixtures made from the bundled data -------------------

DAY_MS = 86_400_000
#: CryptoDataDownload fixtures: the bundled rows they hold, and whether they name a quote volume.
CDD_FIXTURES = {
    "cdd_bundled_layout.csv": ("hourly", True),
    "cdd_2019_am_pm.csv": ("hourly", True),
    "cdd_2020_unix_timestamp_ms.csv": ("hourly", True),
    "cdd_2021_unix_s.csv": ("hourly", True),
    "cdd_binance_usdt_tradecount.csv": ("hourly", True),
    "cdd_lowercase_iso_quote_first.csv": ("hourly", True),
    "cdd_bare_volume_named_quote.csv": ("hourly", True),
    "cdd_named_base_bare_volume.csv": ("hourly", False),
    "cdd_daily_date_only.csv": ("daily", True),
}
JSON_FIXTURES = [
    "ft_rows.json",
    "ft_columns_ms.json",
    "ft_columns_iso.json",
    "ft_split.json",
    "ft_records.json",
    "ft_index.json",
    "ft_table_iso.json",
]


def test_fixtures_are_what_make_fixtures_builds():
    """The committed fixtures are reproducible from the bundled data (and nothing else is
    lying around in the fixture folder untested)."""
    built = runpy.run_path(str(FIXTURES / "make_fixtures.py"), run_name="make_fixtures")["build"]()
    on_disk = {p.name: p.read_bytes() for p in FIXTURES.iterdir() if p.suffix in (".csv", ".json")}
    copied = {"kraken_trades_BCHEUR.csv"}  # real files, see SOURCES.md
    assert built == {name: data for name, data in on_disk.items() if name not in copied}
    assert set(built) == {
        *CDD_FIXTURES,
        *JSON_FIXTURES,
        "kraken_ohlcvt_BCHEUR_1.csv",
        "coinbase_btc_usd_page.json",
        "binance_BTCUSDT_1h.csv",
    }
    assert max(map(len, built.values())) < 6000


def btc_rows(btc: pd.DataFrame, rows: str) -> pd.DataFrame:
    """The bundled rows a fixture holds: the newest 30 hours, or the newest 30 00:00 candles."""
    return (btc[btc["ts"] % DAY_MS == 0] if rows == "daily" else btc).tail(30)


@pytest.mark.parametrize("name", list(CDD_FIXTURES))
def test_cryptodatadownload_layouts(btc, name):
    rows, quoted = CDD_FIXTURES[name]
    path = FIXTURES / name
    assert detect_format(path) == "cryptodatadownload"
    got = read_history(path)
    expected = btc_rows(btc, rows)[QUOTED if quoted else CANDLE_COLUMNS]
    if "tradecount" in name:  # the fixture's trade counts: unix hours modulo 9973
        expected = expected.assign(trades=(expected["ts"] // HOUR_MS % 9973).astype("float64"))
    assert_same(got, expected)
    assert_same(read_history(path, fmt="cryptodatadownload"), got)


def test_am_pm_hours_are_told_apart():
    """12-AM is midnight and 12-PM noon: 30 consecutive hours, each hour of the day there."""
    path = FIXTURES / "cdd_2019_am_pm.csv"
    got = read_history(path).set_index("ts")
    lines = {line.split(",")[0]: line for line in path.read_text().splitlines()}
    assert float(lines["2022-02-28 12-AM"].split(",")[2]) == got.loc[1646006400000, "open"]
    assert float(lines["2022-02-28 12-PM"].split(",")[2]) == got.loc[1646049600000, "open"]
    assert (np.diff(got.index) == HOUR_MS).all()
    assert set(pd.to_datetime(got.index, unit="ms").hour) == set(range(24))


@pytest.mark.parametrize("name", JSON_FIXTURES)
def test_freqtrade_json_layouts(eth, name):
    path = FIXTURES / name
    assert detect_format(path) == "freqtrade-json"
    assert_same(read_history(path), eth.head(30))


def test_json_object_detected_by_content_and_gzip(tmp_path, eth):
    text = (FIXTURES / "ft_columns_ms.json").read_bytes()
    plain, packed = tmp_path / "eth.txt", tmp_path / "eth.gz"
    plain.write_bytes(text)
    packed.write_bytes(gzip.compress(text))
    for path in (plain, packed):
        assert detect_format(path) == "freqtrade-json"
        assert_same(read_history(path), eth.head(30))


BANNER = "https://www.CryptoDataDownload.com"
#: Header and symbol spellings on top of a fixture: (fixture, change of its text).
CDD_VARIANTS = {
    "symbol BTCUSD": ("cdd_2021_unix_s.csv", [("BTC/USD", "BTCUSD")]),
    "symbol BTC-USD": ("cdd_2021_unix_s.csv", [("BTC/USD", "BTC-USD")]),
    "symbol BTC_USD": ("cdd_2021_unix_s.csv", [("BTC/USD", "BTC_USD")]),
    "symbol lower case": ("cdd_2021_unix_s.csv", [("BTC/USD", "btc/usd")]),
    "bare volume, symbol BTCUSD": ("cdd_bundled_layout.csv", [("BTC/USD", "BTCUSD")]),
    "bare volume, symbol BTC-USD": ("cdd_bundled_layout.csv", [("BTC/USD", "BTC-USD")]),
    "USDT quote in a USD column": ("cdd_2021_unix_s.csv", [("BTC/USD", "BTCUSDT")]),
    "USDC quote in a USD column": ("cdd_2021_unix_s.csv", [("BTC/USD", "BTC/USDC")]),
    "upper-case volume names": ("cdd_2021_unix_s.csv", [("Volume BTC", "VOLUME_BTC")]),
    "unix_timestamp": ("cdd_2020_unix_timestamp_ms.csv", [("Unix Timestamp", "unix_timestamp")]),
    "banner saved by a spreadsheet": ("cdd_2021_unix_s.csv", [(BANNER, BANNER + ",,,,,,,")]),
    "no banner": ("cdd_2019_am_pm.csv", [(BANNER + "\n", "")]),
    "BOM and CRLF": (
        "cdd_2020_unix_timestamp_ms.csv",
        [("\n", "\r\n"), (BANNER, "\ufeff" + BANNER)],
    ),
    "lower-case am/pm": ("cdd_2019_am_pm.csv", [("-AM", "-am"), ("-PM", "-pm")]),
}


@pytest.mark.parametrize("case", list(CDD_VARIANTS))
def test_cryptodatadownload_spellings(tmp_path, btc, case):
    source, changes = CDD_VARIANTS[case]
    text = (FIXTURES / source).read_text()
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "cdd.csv"
    path.write_bytes(text.encode())
    assert detect_format(path) == "cryptodatadownload"
    assert_same(read_history(path), btc.tail(30)[QUOTED])


def test_plain_csv_iso_times(tmp_path, eth):
    path = tmp_path / "eth.csv"
    stamps = pd.to_datetime(eth["ts"], unit="ms", utc=True)
    eth.drop(columns="ts").assign(date=stamps)[["date", *CANDLE_COLUMNS[1:]]].to_csv(
        path, index=False
    )
    assert path.read_text().split("\n")[1].startswith("2018-01-10 04:55:00+00:00,0.0984,")
    assert detect_format(path) == "csv"
    assert_same(read_history(path), eth)


def test_plain_csv_iso_z_times_capitalised_headers(tmp_path, eth):
    path = tmp_path / "eth.txt"
    table = eth.rename(columns=str.capitalize).drop(columns="Ts")
    table.insert(0, "Datetime", pd.to_datetime(eth["ts"], unit="ms").dt.strftime("%Y-%m-%dT%H:%MZ"))
    table.to_csv(path, index=False)
    assert_same(read_history(path, fmt="csv"), eth)


def test_plain_csv_unix_seconds(tmp_path, btc):
    path = tmp_path / "btc.csv"
    btc.assign(timestamp=btc["ts"] // 1000)[["timestamp", *CANDLE_COLUMNS[1:]]].to_csv(
        path, index=False
    )
    assert_same(read_history(path), btc[CANDLE_COLUMNS])


def test_plain_csv_unix_ms_newest_first_extra_columns(tmp_path, btc):
    path = tmp_path / "btc.csv"
    table = btc.rename(columns={"ts": "open_time"}).assign(trades=7)
    table.sort_values("open_time", ascending=False).to_csv(path, index=False)
    assert_same(read_history(path), btc[QUOTED])  # its quote_volume column is kept
    table.drop(columns="quote_volume").to_csv(path, index=False)
    assert_same(read_history(path), btc[CANDLE_COLUMNS])


@pytest.mark.parametrize("time", ["datetime", "unix ms"])
def test_parquet(tmp_path, eth, time):
    path = tmp_path / "eth.parquet"
    table = eth.copy()
    if time == "datetime":
        table = table.rename(columns={"ts": "time"})
        table["time"] = pd.to_datetime(table["time"], unit="ms", utc=True)
    table.to_parquet(path, index=False)
    assert detect_format(path) == "parquet"
    assert_same(read_history(path), eth)


def test_bad_rows_are_kept_as_published(tmp_path, eth):
    """Duplicates, empty cells and impossible prices are validation's to find, not the reader's."""
    table = eth.head(40).astype(object)
    table = pd.concat([table, table.iloc[[10]]]).reset_index(drop=True)
    table.loc[20, "volume"] = ""
    table.loc[30, "high"] = 0.01
    path = tmp_path / "eth.csv"
    table.to_csv(path, index=False)
    got = read_history(path)
    assert len(got) == 41
    assert got["ts"].tolist()[10:13] == [eth["ts"].iloc[10]] * 2 + [eth["ts"].iloc[11]]
    assert np.isnan(got.loc[21, "volume"])
    assert got.loc[31, "high"] == 0.01 < got.loc[31, "low"]


def test_reader_writes_nothing(tmp_path, eth):
    path = tmp_path / "eth.parquet"
    eth.to_parquet(path, index=False)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    read_history(path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*")} == before


# --- every bad input gets a HistoryFormatError naming the file and the problem ------------


def _write(name: str, content: str | bytes):
    def build(tmp_path: Path, eth: pd.DataFrame) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return build


def _frame_file(name: str, change, writer: str):
    def build(tmp_path: Path, eth: pd.DataFrame) -> Path:
        path = tmp_path / name
        frame = change(eth.assign(date=pd.to_datetime(eth["ts"], unit="ms", utc=True)))
        getattr(frame.reset_index(drop=True), writer)(path)
        return path

    return build


def _truncated(source: str, name: str, keep: float):
    def build(tmp_path: Path, eth: pd.DataFrame) -> Path:
        data = (FREQTRADE / source).read_bytes() if source else _binance_bytes(eth)
        path = tmp_path / name
        path.write_bytes(data[: int(len(data) * keep)])
        return path

    return build


def _binance_bytes(eth: pd.DataFrame) -> bytes:
    rows = [
        [int(r.ts), r.open, r.high, r.low, r.close, r.volume, 0, 0, 0, 0, 0, 0]
        for r in eth.head(3).itertuples()
    ]
    text = "\n".join(",".join(map(str, row)) for row in rows)
    return text.encode()


def _zip_of_two(tmp_path: Path, eth: pd.DataFrame) -> Path:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "x")
        archive.writestr("b.csv", "y")
    return path


HEADER = "date,open,high,low,close,volume\n"
CDD_HEAD = BANNER + "\nunix,date,symbol,open,high,low,close,"
CDD_ROW = "1646092800,x,BTC/USD,1,2,0.5,1.5,"
ROW = "2018-01-10 04:55:00+00:00,0.0984,0.0994766,0.09828605,0.0994766,1820.54447418\n"
BAD_INPUTS = {
    "unknown format name": (_write("eth.csv", HEADER + ROW), "excel", r"unknown format 'excel'"),
    "binary content": (_write("eth.dat", b"\x00\xff\x10\x80" * 8), None, r"unknown format: binary"),
    "unrecognised text": (_write("notes.txt", "hello\n"), None, r"unknown format: .*'hello'"),
    "missing columns": (
        _write("eth.csv", "date,open,high,low\n2018-01-10,1,2,0.5\n"),
        None,
        r"missing columns \['close', 'volume'\]",
    ),
    "missing time column": (
        _write("eth.csv", "open,high,low,close,volume\n1,2,0.5,1.5,3\n"),
        None,
        r"missing columns \['time column \(one of ts/unix/open_time/.*/date\)'\]",
    ),
    "missing base volume": (
        _write(
            "cdd.csv",
            "https://www.CryptoDataDownload.com\nunix,date,symbol,open,high,low,"
            "close,Volume USD\n1646092800,x,BTC/USD,1,2,0.5,1.5,3\n",
        ),
        None,
        r"missing columns \['volume btc'\]",
    ),
    "feather without volume": (
        _frame_file("eth.feather", lambda f: f.drop(columns=["ts", "volume"]), "to_feather"),
        None,
        r"missing columns \['volume'\]",
    ),
    "parquet without close": (
        _frame_file("eth.parquet", lambda f: f.drop(columns=["date", "close"]), "to_parquet"),
        None,
        r"missing columns \['close'\]",
    ),
    "unparseable iso time": (
        _write("eth.csv", HEADER + ROW + ROW.replace("2018-01-10 04:55:00+00:00", "yesterday")),
        None,
        r"unparseable date value 'yesterday' \(data row 2\)",
    ),
    "old cryptodatadownload date format": (
        _write("eth.csv", HEADER + ROW.replace("2018-01-10 04:55:00+00:00", "2020-03-13 08-AM")),
        None,
        r"unparseable date value '2020-03-13 08-AM' \(data row 1\)",
    ),
    "unparseable unix time": (
        _write(
            "cdd.csv",
            "https://www.CryptoDataDownload.com\nunix,date,symbol,open,high,low,"
            "close,Volume BTC\n1646092800,x,BTC/USD,1,2,0.5,1.5,3\n"
            "16460928OO,x,BTC/USD,1,2,0.5,1.5,3\n",
        ),
        None,
        r"unparseable unix value '16460928OO' \(data row 2\)",
    ),
    "empty time cell": (
        _write("eth.csv", HEADER + ROW + ",1,2,0.5,1.5,3\n"),
        None,
        r"unparseable date value '' \(data row 2\)",
    ),
    "non-numeric price": (
        _write("eth.csv", HEADER + ROW + ROW.replace("0.0994766,1820", "n/a,1820")),
        None,
        r"non-numeric close value 'n/a' \(data row 2\)",
    ),
    "zero-byte csv": (_write("eth.csv", ""), None, r"empty file"),
    "zero-byte feather": (_write("eth.feather", ""), None, r"empty file"),
    "blank json": (_write("eth.json", "  \n"), None, r"empty file"),
    "header only": (_write("eth.csv", HEADER), None, r"empty file: no candles"),
    "empty json list": (_write("eth.json", "[]"), None, r"empty file: no candles"),
    "feather without rows": (
        _frame_file("eth.feather", lambda f: f.drop(columns="ts").head(0), "to_feather"),
        None,
        r"empty file: no candles",
    ),
    "truncated feather": (
        _truncated("ETH_BTC-5m.feather", "eth.feather", 0.5),
        None,
        r"corrupt or truncated feather file",
    ),
    "truncated parquet": (
        lambda tmp_path, eth: _truncate_parquet(tmp_path, eth),
        None,
        r"corrupt or truncated parquet file",
    ),
    "ambiguous bare volume": (
        _write("cdd.csv", CDD_HEAD + "volume,Volume EUR\n" + CDD_ROW + "3,4\n"),
        None,
        r"ambiguous volume columns \['volume', 'Volume EUR'\] for symbol 'BTC/USD' \(base asset "
        r"BTC\): cannot tell which one is the base volume",
    ),
    "volume columns and no symbol": (
        _write(
            "cdd.csv",
            CDD_HEAD.replace("symbol,", "") + "Volume BTC,Volume USD\n"
            "1646092800,x,1,2,0.5,1.5,3,4\n",
        ),
        None,
        r"ambiguous volume columns \['Volume BTC', 'Volume USD'\] for symbol '' "
        r"\(base asset unknown\)",
    ),
    "two bare-ish volumes, named quote": (
        _write("cdd.csv", CDD_HEAD + "volume,Volume USD,Volume XBT\n" + CDD_ROW + "3,4,5\n"),
        None,
        r"ambiguous volume columns \['volume', 'Volume USD', 'Volume XBT'\]",
    ),
    "base asset volume not there": (
        _write(
            "cdd.csv",
            CDD_HEAD + "Volume XBT,Volume USD\n" + CDD_ROW + "3,4\n",
        ),
        None,
        r"missing columns \['volume btc'\] \(found \[.*'Volume XBT', 'Volume USD'\]\)",
    ),
    "one volume column twice": (
        _write("cdd.csv", CDD_HEAD + "Volume BTC,volume_btc\n" + CDD_ROW + "3,4\n"),
        None,
        r"columns 'Volume BTC' and 'volume_btc' are the same column \('volume btc'\)",
    ),
    "unknown date layout": (
        _write(
            "cdd.csv",
            BANNER + "\nDate,Symbol,Open,High,Low,Close,Volume BTC,Volume USD\n"
            "17/10/2019 09:00,BTCUSD,1,2,0.5,1.5,3,4\n",
        ),
        None,
        r"unparseable Date value '17/10/2019 09:00' \(data row 1\): not a known date layout "
        r"\(2019-10-17 09-AM, 2019-10-17 09:00:00, 2019-10-17T09:00:00Z, 2019-10-17",
    ),
    "am/pm hour out of range": (
        _write(
            "cdd.csv",
            "date,symbol,open,high,low,close,Volume BTC,Volume USD\n"
            "2019-10-17 09-AM,BTC/USD,1,2,0.5,1.5,3,4\n2019-10-17 13-PM,BTC/USD,1,2,0.5,1.5,3,4\n",
        ),
        None,
        r"unparseable date value '2019-10-17 13-PM' \(data row 2\): not a known date layout",
    ),
    "cryptodatadownload without time column": (
        _write(
            "cdd.csv", BANNER + "\nsymbol,open,high,low,close,Volume BTC\nBTC/USD,1,2,0.5,1.5,3\n"
        ),
        None,
        r"missing columns \['time column \(one of unix/unix timestamp/date\)'\]",
    ),
    "truncated json": (_write("eth.json", "[[1515560100000, 0.0984, 0.09"), None, "truncated JSON"),
    "json columns of unequal length": (
        _write("eth.json", '{"date": {"0": 1515560100000, "1": 1515560400000}, "open": {"0": 1}}'),
        None,
        r"column 'open' has other row labels than column 'date'",
    ),
    "json split row too short": (
        _write("eth.json", '{"columns": ["date", "open"], "index": [0], "data": [[1, 2, 3]]}'),
        None,
        r"row 1 is \[1, 2, 3\], expected 2 values \['date', 'open'\]",
    ),
    "json records mixed with rows": (
        _write("eth.json", '[{"date": 1515560100000}, [1, 2]]'),
        None,
        r"row 2 is \[1, 2\], expected an object like row 1",
    ),
    "json records without close": (
        _write(
            "eth.json", '[{"date": 1515560100000, "open": 1, "high": 2, "low": 0.5, "volume": 3}]'
        ),
        None,
        r"missing columns \['close'\]",
    ),
    "truncated binance csv": (
        _truncated("", "BTCUSDT-5m.csv", 0.9),
        "binance",
        r"line 3 has \d+ fields, expected 12 \(corrupt or truncated\)",
    ),
    "truncated gzip": (
        _write("eth.json.gz", gzip.compress(b"[[1515560100000, 0.0984]]" * 50)[:40]),
        None,
        r"corrupt or truncated archive",
    ),
    "zip of two files": (_zip_of_two, None, r"zip holds 2 files, expected 1"),
    "json object": (
        _write("eth.json", '{"a": 1}'),
        None,
        r"expected a JSON list of rows or a pandas frame object .*got an object with keys \['a'\]",
    ),
    "json scalar": (_write("eth.json", "42"), None, r"expected a JSON list of rows .*got int"),
    "json short row": (
        _write("eth.json", "[[1515560100000, 1, 2, 0.5, 1.5, 3], [1515560400000, 1, 2]]"),
        None,
        r"row 2 is \[1515560400000, 1, 2\], expected \[ms, open, high, low, close, volume\]",
    ),
    "csv that is not text": (
        _write("eth.csv", b"date,open\n\xff\xfe\x00"),
        "csv",
        r"not UTF-8 text: byte 0xff at offset 10 \(line 2\)",
    ),
}


def _truncate_parquet(tmp_path: Path, eth: pd.DataFrame) -> Path:
    path = tmp_path / "eth.parquet"
    eth.to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[:-100])
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_problem(tmp_path, eth, case):
    build, fmt, problem = BAD_INPUTS[case]
    path = build(tmp_path, eth)
    with pytest.raises(HistoryFormatError, match=problem) as caught:
        read_history(path, fmt=fmt)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.path == path
    assert isinstance(caught.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.csv"):
        read_history(tmp_path / "nothere.csv")


def test_binance_row_with_header_of_another_format_is_rejected(tmp_path, btc):
    path = tmp_path / "cdd.csv"
    path.write_text(cdd_text(btc.head(5), 1, "BTC/USD", [("Volume BTC", "volume")]))
    with pytest.raises(HistoryFormatError, match=r"line 1 has 1 fields, expected 12"):
        read_history(path, fmt="binance")


def test_values_survive_a_csv_round_trip_exactly(tmp_path):
    """Floats are parsed correctly rounded (pandas' default CSV parser is not, to the last bit)."""
    values = np.random.default_rng(7).random(2000) * 10.0 ** np.arange(-8, 12)[np.arange(2000) % 20]
    path = tmp_path / "values.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "open", "high", "low", "close", "volume"])
        for i, v in enumerate(values):
            writer.writerow([1515560100000 + i * 300_000, *[repr(float(v))] * 4, 1.0])
    got = read_history(path)
    assert (got["open"].to_numpy() == values).all()
