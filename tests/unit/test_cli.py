"""The candlecast CLI, run in-process through Typer's runner on real files."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from candlecast.cli.app import app
from tests.helpers import BTC_FILE, REPO

FREQTRADE = REPO / "data" / "bundled" / "freqtrade"


@pytest.fixture
def env(tmp_path):
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(
        "pairs:\n"
        "  - {symbol: TRX/BTC, exchange: binance, timeframe: 5m, start: 2018-01-10}\n"
        "  - {symbol: ETH/BTC, exchange: binance, timeframe: 5m, start: 2018-01-10}\n"
    )
    return {"CANDLECAST_HOME": str(tmp_path / "home"), "CANDLECAST_PAIRS": str(pairs)}


def run(env, *args):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    # rich wraps at the terminal width, so where a long path breaks a line depends on the path
    return result.exit_code, " ".join(result.output.split())


def test_pairs_lists_the_config(env):
    code, out = run(env, "pairs")
    assert code == 0 and "TRX/BTC" in out and "ETH/BTC" in out


def test_pairs_names_each_streams_three_dags(env):
    code, out = run({**env, "COLUMNS": "300"}, "pairs")
    assert code == 0
    for what in ("candles", "train", "monitor"):
        assert f"{what}_binance_trx_btc_5m" in out


def test_help_groups_the_commands_into_panels(env):
    from candlecast.cli.main import app as every_command  # registers all of them

    result = CliRunner().invoke(every_command, ["--help"], env={**env, "COLUMNS": "100"})
    code, out = result.exit_code, " ".join(result.output.split())
    assert code == 0
    for panel in ("Data", "Pipeline", "Models", "Monitoring", "Serving", "Operations"):
        assert f"─ {panel} ─" in out
    # a help text is a paragraph: the source's line breaks are not kept mid-sentence
    assert "Airflow. On a fresh data directory" in out


def test_pairs_cuts_nothing_at_80_columns(env):
    code, out = run({**env, "COLUMNS": "80"}, "pairs")
    assert code == 0 and "…" not in out
    for what in ("candles", "train", "monitor"):
        assert f"{what}_binance_trx_btc_5m" in out
    assert "binance_trx_btc_5m_forecaster" in out


def test_import_then_gaps_shows_the_holes_of_the_bundled_data(env):
    code, out = run(
        env, "import-candles", "--pair", "TRX/BTC", "--file", str(FREQTRADE / "TRX_BTC-5m.feather")
    )
    assert code == 0, out
    assert "5754 candles imported" in out and "passed" in out
    code, out = run(env, "gaps", "--pair", "TRX/BTC")
    assert code == 0
    assert "6 gaps, 6 candles missing" in out
    assert "2018-01-22T17:20:00+00:00" in out


def test_import_of_a_bad_file_fails_with_one_clear_line(env, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text("time,open,high,low,close\n2018-01-01,1,2,0.5,1.5\n")
    code, out = run(env, "import-candles", "--pair", "ETH/BTC", "--file", str(bad))
    assert code == 1
    assert "broken.csv" in out and "volume" in out


def test_unknown_pair_is_refused_with_what_to_do(env):
    code, out = run(env, "gaps", "--pair", "DOGE/USD")
    assert code == 2 and "no configured stream matches 'DOGE/USD'" in out
    assert "--exchange and --timeframe" in out


def test_history_of_an_unconfigured_stream_imports_and_reports_with_its_config_line(env):
    ada = str(FREQTRADE / "ADA_BTC-5m.feather")
    args = ["--pair", "ADA/BTC", "--exchange", "binance", "--timeframe", "5m"]
    code, out = run(env, "import-candles", *args, "--file", ada)
    assert code == 0, out
    assert "5720 candles imported" in out and "passed" in out
    assert "0.7% missing (40 of 5760 candles)" in out
    line = "- {symbol: ADA/BTC, exchange: binance, timeframe: 5m}"
    assert "ADA/BTC on binance at 5m is not configured" in out and line in out
    code, out = run(env, "gaps", *args)
    assert code == 0 and "5 gaps, 40 candles missing" in out and line in out
    code, out = run(env, "pairs")
    assert "ADA/BTC" not in out  # nothing was added to the config


def test_a_configured_stream_prints_no_config_hint(env):
    code, out = run(env, "gaps", "--pair", "ETH/BTC")
    assert code == 0 and "not configured" not in out


def test_ingest_from_a_live_exchange_by_name(tmp_path, btc_candles):
    """`candlecast ingest` for a binance pair: the real ccxt client against the local server."""
    from candlecast.testing.exchange_server import ExchangeServer

    pairs = tmp_path / "live.yaml"
    pairs.write_text("pairs:\n  - {symbol: BTC/USDT, exchange: binance, start: 2021-01-01}\n")
    candles = btc_candles[btc_candles["ts"] >= 1609459200000]  # 2021 on
    with ExchangeServer({"BTC/USDT": candles}) as server:
        env = {
            "CANDLECAST_HOME": str(tmp_path / "home"),
            "CANDLECAST_PAIRS": str(pairs),
            "CANDLECAST_EXCHANGE_URL": server.url,
        }
        code, out = run(
            env, "ingest", "--pair", "BTC/USDT", "--start", "2021-01-01", "--end", "2021-02-01"
        )
        requests = [r.path for r in server.requests]
    assert code == 0, out
    assert "744 candles stored" in out and "passed" in out
    assert requests == ["/api/v3/exchangeInfo", "/api/v3/klines"]


# -- candlecast airflow (the embedded Airflow): what is decided before any process starts ------


def test_airflow_refuses_a_port_in_use_naming_it(env):
    import socket

    from candlecast.cli import airflow_local  # noqa: F401 - registers the command

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = run(env, "airflow", "--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out and "--port" in out


def test_airflow_refuses_a_port_that_is_not_one(env):
    from candlecast.cli import airflow_local  # noqa: F401 - registers the command

    code, out = run(env, "airflow", "--port", "70000")
    assert code == 1 and "port 70000 is not a TCP port" in out


@pytest.mark.parametrize(
    ("fit_threads", "slots", "expected"),
    [("1", None, 4), ("2", None, 2), ("3", None, 1), ("8", None, 1), ("1", "3", 3)],
)
def test_airflow_pools_one_per_exchange_and_training_slots_follow_the_cores(
    env, monkeypatch, fit_threads, slots, expected
):
    from candlecast import settings as settings_module
    from candlecast.cli.airflow_local import pools
    from candlecast.config import load_pairs
    from candlecast.settings import Settings

    monkeypatch.setattr(settings_module, "usable_cores", lambda: 4)
    monkeypatch.setenv("CANDLECAST_FIT_THREADS", fit_threads)
    if slots:
        monkeypatch.setenv("CANDLECAST_TRAINING_SLOTS", slots)
    found = pools(load_pairs(Path(env["CANDLECAST_PAIRS"])), Settings())
    assert {name: spec["slots"] for name, spec in found.items()} == {
        "exchange_binance": 2,
        "candlecast_training": expected,
    }


def test_embedded_airflow_env_requires_a_login_and_follows_the_port(env, monkeypatch):
    import json
    import stat

    from candlecast.cli import embedded
    from candlecast.settings import Settings

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.delenv("AIRFLOW__CORE__PARALLELISM", raising=False)
    # one set for another Airflow is not this one's
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://elsewhere/prod")
    monkeypatch.delenv("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", raising=False)
    # what a dag.test() or a task run leaves behind: it would make the DAG processor build one
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "candles_replay_btc_usd_1h")
    settings = Settings(home=Path(env["CANDLECAST_HOME"]), pairs=Path(env["CANDLECAST_PAIRS"]))
    first = embedded.airflow_env(settings, "127.0.0.1", 18123)
    assert not [k for k in first if k.startswith("_AIRFLOW_PARSING_CONTEXT")]
    assert first["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert first["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18123"
    assert first["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert (first["AIRFLOW__API__HOST"], first["AIRFLOW__API__PORT"]) == ("127.0.0.1", "18123")
    assert first["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # parsed rarely, and at once when the DAG file changes (candlecast airflow asks for a
    # parse when the pair config does: tests/dags/test_scheduler_e2e.py)
    assert first["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] == "600"
    assert first["AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE"] == "modified_time"
    assert first["AIRFLOW_HOME"] == str(settings.paths.airflow)
    assert int(first["AIRFLOW__CORE__PARALLELISM"]) == max(2, os.cpu_count() or 1)
    airflow_db = settings.paths.airflow / "airflow.db"
    assert first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{airflow_db}?timeout=60"
    # every component gets the same secrets, kept owner-only under the data directory
    again = embedded.airflow_env(settings, "0.0.0.0", 9000)  # reached via the loopback
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == first["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert again["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:9000"
    passwords = embedded.passwords_file(settings)
    assert passwords.name == "simple_auth_manager_passwords.json.generated"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert len(json.loads(passwords.read_text())["admin"]) >= 16
    assert embedded.airflow_password(settings) == json.loads(passwords.read_text())["admin"]
    # the executor's size and the parsing interval are the user's to set in Airflow's terms,
    # the metadata database in candlecast's (CANDLECAST_AIRFLOW_DATABASE)
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "6")
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "60")
    on_postgres = Settings(
        home=settings.paths.home,
        pairs=settings.pairs,
        airflow_database="postgresql://postgres@127.0.0.1:5432/airflow",
    )
    chosen = embedded.airflow_env(on_postgres)
    assert chosen["AIRFLOW__CORE__PARALLELISM"] == "6"
    assert chosen["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] == "60"
    assert chosen["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    )
    assert chosen["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == (
        "postgresql+psycopg://postgres@127.0.0.1:5432/airflow"
    )


KRAKEN = REPO / "tests" / "fixtures" / "importers"


def test_a_thin_kraken_market_is_imported_and_warned_about(tmp_path):
    pairs = tmp_path / "thin.yaml"
    pairs.write_text(
        "pairs:\n  - {symbol: BCH/EUR, exchange: kraken, timeframe: 1m, start: 2023-01-01,\n"
        "     data: {max_volume_spike: 5}}\n"
    )
    home = str(tmp_path / "home")
    # a wide terminal: the pairs table keeps each cell on one line
    env = {"CANDLECAST_HOME": home, "CANDLECAST_PAIRS": str(pairs), "COLUMNS": "250"}
    trades = str(KRAKEN / "kraken_trades_BCHEUR.csv")
    code, out = run(env, "import-candles", "--pair", "BCH/EUR", "--file", trades)
    assert code == 1 and "holds trades, not candles" in out and "--from-trades" in out
    code, out = run(env, "import-candles", "--pair", "BCH/EUR", "--file", trades, "--from-trades")
    assert code == 0, out
    assert "78 candles imported" in out and "warning: thin market" in out
    code, out = run(env, "pairs")
    assert code == 0 and "thin market" in out and "median 1 trades per candle" in out
    code, out = run(env, "gaps", "--pair", "BCH/EUR")
    assert code == 0 and "warning: thin market" in out
    assert "candles stored with flags: volume_spike" in out


def run_lines(env, *args) -> tuple[int, list[str]]:
    from candlecast.cli.main import app as full_app

    result = CliRunner().invoke(full_app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output.strip().splitlines()


def test_version():
    from candlecast import __version__

    code, out = run({}, "--version")
    assert (code, out) == (0, f"candlecast {__version__}")


def test_gaps_on_an_empty_store_says_no_candles_are_stored(env):
    code, lines = run_lines(env, "gaps", "--pair", "TRX/BTC")
    assert code == 0 and len(lines) == 1
    assert "no candles of TRX/BTC on binance at 5m are stored" in lines[0]
    assert "0 gaps" not in lines[0]


@pytest.mark.parametrize(
    "command",
    [("ingest",), ("backfill",), ("replay", "--file", str(BTC_FILE))],
    ids=lambda c: c[0],
)
def test_a_start_after_the_end_says_so(env, command):
    args = (*command, "--pair", "TRX/BTC", "--start", "2018-01-20", "--end", "2018-01-10")
    code, lines = run_lines(env, *args)
    assert code == 1
    assert lines == [
        "--start (2018-01-20T00:00:00+00:00) must be before --end (2018-01-10T00:00:00+00:00)"
    ]


def test_a_config_typo_is_one_line_naming_the_file_line_and_nearest_key(env):
    pairs = Path(env["CANDLECAST_PAIRS"])
    pairs.write_text("defaults:\n  training: {kindz: [lightgbm]}\n" + pairs.read_text())
    code, lines = run_lines(env, "pairs")
    assert code == 2
    assert lines == [
        f"{pairs}:2: defaults.training.kindz: unknown key 'kindz'; did you mean 'kinds'?"
    ]


def test_grafana_sync_to_an_unreachable_grafana_is_one_line(env):
    # port 1 on the loopback: nothing listens, the connection is refused at once
    code, lines = run_lines(env, "grafana", "sync", "--url", "http://127.0.0.1:1")
    assert code == 1
    assert lines == ["cannot reach Grafana at http://127.0.0.1:1 (ConnectionError): is it running?"]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CANDLECAST_PARITY_TOLERANCE", "inf", "Input should be a finite number"),
        (
            "CANDLECAST_SERVICE_PORT",
            "abc",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        ("CANDLECAST_FIT_THREADS", "0", "Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_environment_setting_is_one_line_naming_the_variable(env, variable, value, reason):
    import os
    import subprocess
    import sys

    # the installed entry point (candlecast.cli.main:main): a setting is read wherever a
    # command needs it, so the one line comes from there, not from one command's handler
    command = [sys.executable, "-c", "from candlecast.cli.main import main; main()", "pairs"]
    done = subprocess.run(
        command, env=os.environ | env | {variable: value}, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == [f"invalid setting {variable}={value!r}: {reason}"]


def test_the_service_options_refuse_an_infinite_interval(monkeypatch):
    from candlecast.errors import SettingsError
    from candlecast.serving.options import ServiceOptions
    from candlecast.settings import read_settings

    monkeypatch.setenv("CANDLECAST_SERVICE_REFRESH_SECONDS", "inf")
    with pytest.raises(SettingsError, match="CANDLECAST_SERVICE_REFRESH_SECONDS='inf'"):
        read_settings(ServiceOptions)


# -- progress bars: counts on a terminal, nothing when the output is captured ------------------


def in_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the real ``candlecast`` in a pseudo-terminal; its exit code and everything it
    wrote, escape codes stripped (a transient bar's last frame is written, then erased)."""
    import os
    import pty
    import re
    import subprocess
    import sys

    primary, secondary = pty.openpty()
    command = [str(Path(sys.executable).parent / "candlecast"), *args]
    environ = os.environ | env | {"COLUMNS": "160", "TERM": "xterm"}
    environ.pop("NO_COLOR", None)
    process = subprocess.Popen(command, stdout=secondary, stderr=secondary, env=environ)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    code = process.wait(timeout=600)
    text = b"".join(chunks).decode(errors="replace")
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_import_candles_shows_its_steps_on_a_terminal_and_no_bar_when_captured(env):
    feather = str(FREQTRADE / "TRX_BTC-5m.feather")
    code, shown = in_terminal(env, "import-candles", "--pair", "TRX/BTC", "--file", feather)
    assert code == 0, shown
    assert "2/2 steps" in shown and "5754 candles imported" in shown
    code, out = run(env, "import-candles", "--pair", "TRX/BTC", "--file", feather)
    assert code == 0 and "steps" not in out and "━" not in out


def test_backfill_counts_its_steps_on_a_terminal_and_prints_a_summary(tmp_path):
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(
        f"pairs:\n  - {{symbol: BTC/USD, exchange: replay, replay_file: {BTC_FILE}, "
        "timeframe: 1h, start: 2021-06-01}\n"
    )
    env = {"CANDLECAST_HOME": str(tmp_path / "home"), "CANDLECAST_PAIRS": str(pairs)}
    args = ["backfill", "--pair", "BTC/USD", "--start", "2022-02-20", "--end", "2022-03-01"]
    code, shown = in_terminal(env, *args)
    assert code == 0, shown
    assert "3/3 steps" in shown and "features" in shown
    code, out = run(env, *args)
    assert code == 0 and "steps" not in out and "━" not in out
    # a summary in words, not JSON with epoch milliseconds
    assert "validated 216 candles passed" in out and "{" not in out, out


def test_ingest_counts_candles_on_a_terminal_and_no_bar_when_captured(tmp_path, btc_candles):
    from candlecast.testing.exchange_server import ExchangeServer

    pairs = tmp_path / "live.yaml"
    pairs.write_text("pairs:\n  - {symbol: BTC/USDT, exchange: binance, start: 2021-01-01}\n")
    candles = btc_candles[btc_candles["ts"] >= 1609459200000]
    args = ["ingest", "--pair", "BTC/USDT", "--start", "2021-01-01", "--end", "2021-02-01"]
    with ExchangeServer({"BTC/USDT": candles}) as server:
        env = {
            "CANDLECAST_HOME": str(tmp_path / "home"),
            "CANDLECAST_PAIRS": str(pairs),
            "CANDLECAST_EXCHANGE_URL": server.url,
        }
        code, shown = in_terminal(env, *args)
        assert code == 0, shown
        assert "744/744 candles" in shown and "744 candles stored" in shown
        code, out = run({**env, "CANDLECAST_HOME": str(tmp_path / "again")}, *args)
    assert code == 0 and "744 candles stored" in out
    assert "━" not in out


def every_command_path(group) -> list[list[str]]:
    """The argument lists that reach each command of a click group, subgroups included."""
    import click

    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += [[name, *rest] for rest in every_command_path(command)]
        else:
            found.append([name])
    return found


def test_flags_show_no_value_placeholder_in_help(env):
    """A flag takes no value: its help row shows none (Typer drew `<bool>` beside every flag,
    `--help` included), while options that take one keep theirs."""
    import typer

    from candlecast.cli.main import app as every_command

    group = typer.main.get_command(every_command)
    paths = every_command_path(group)
    assert len(paths) >= 20
    for path in [[], *paths]:
        result = CliRunner().invoke(every_command, [*path, "--help"], env={**env, "COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
    result = CliRunner().invoke(every_command, ["import-candles", "--help"], env=env)
    assert "<str>" in result.output and "--overwrite" in result.output
