"""Walk-forward evaluation of model kinds on real BTC/USD hourly candles: the report's
metrics and folds, and the ``candlecast evaluate`` command on a file nobody configured."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from candlecast.cli.main import app
from candlecast.errors import ConfigError, FitBudgetExceededError, NotEnoughHistoryError
from candlecast.modeling import kinds
from candlecast.modeling.evaluate import (
    EvaluationSettings,
    evaluate_kinds,
    evaluation_frame,
    infer_timeframe,
)
from candlecast.modeling.kinds.base import ModelKind
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # fits models over many walk-forward windows

ROWS = 4000
SETTINGS = EvaluationSettings(
    train_rows=1440, test_rows=480, calibration_rows=360, fit_budget_s=None
)
KINDS = ["drift", "lightgbm"]
METRICS = {
    "window", "windows", "predictions", "refits", "refit_windows", "fit_seconds", "rmse", "mae",
    "rmse_ratio", "mae_ratio", "directional_accuracy", "interval_coverage", "diebold_mariano",
    "fold_loss_test", "bootstrap_rmse_ratio", "backtest",
}  # fmt: skip
BACKTEST = {"total_return", "sharpe", "max_drawdown", "turnover", "trades", "exposure"}


@pytest.fixture(scope="module")
def candles(btc_candles):
    return btc_candles.iloc[-ROWS:].reset_index(drop=True)


@pytest.fixture(scope="module")
def frame(candles):
    return evaluation_frame(candles, "1h", "file:BTC/USD")


@pytest.fixture(scope="module")
def report(frame):
    return evaluate_kinds(frame, KINDS, "1h", SETTINGS)


@pytest.fixture(scope="module")
def as_json(report):
    return json.loads(report.to_json())


def test_every_kind_has_every_metric(as_json):
    assert list(as_json["kinds"]) == ["persistence", *KINDS]
    for name, scores in as_json["kinds"].items():
        assert set(scores) == METRICS, name
        assert set(scores["backtest"]) == BACKTEST
        for key in ("rmse", "mae", "rmse_ratio", "mae_ratio"):
            assert math.isfinite(scores[key]) and scores[key] > 0
        dm = scores["diebold_mariano"]
        assert 0 <= dm["p_value"] <= 1 and dm["loss"] == "squared"
        assert 0 <= scores["fold_loss_test"]["p_value"] <= 1
        boot = scores["bootstrap_rmse_ratio"]["interval"]
        assert boot["low"] <= scores["bootstrap_rmse_ratio"]["ratio"] <= boot["high"]
    for name in KINDS:
        direction = as_json["kinds"][name]["directional_accuracy"]
        assert (
            direction["interval"]["low"] <= direction["accuracy"] <= direction["interval"]["high"]
        )
        assert 0.5 <= direction["majority_rate"] <= 1
    assert set(as_json["settings"]["tests"]) >= {"diebold_mariano", "bootstrap_rmse_ratio"}


def test_persistence_is_the_reference(report, as_json):
    scores = as_json["kinds"]["persistence"]
    assert scores["rmse_ratio"] == 1 and scores["mae_ratio"] == 1
    assert scores["diebold_mariano"]["p_value"] == 0.5
    assert scores["bootstrap_rmse_ratio"]["ratio"] == 1
    # persistence never calls a direction, and never trades
    direction = scores["directional_accuracy"]
    assert direction["count"] == 0 and direction["accuracy"] is None
    assert direction["abstained"] + direction["flat"] == scores["predictions"]
    assert scores["backtest"]["total_return"] == 0 and scores["backtest"]["turnover"] == 0
    assert report.kinds["persistence"].rmse == pytest.approx(np.sqrt(np.mean(report.target**2)))


def test_every_kind_is_scored_on_the_same_rows_and_windows(report, as_json):
    counts = {(s["predictions"], s["windows"], s["refits"]) for s in as_json["kinds"].values()}
    assert counts == {(len(report.target), len(report.folds), len(report.folds))}
    assert len(report.target) == sum(fold.test_rows for fold in report.folds)
    assert len(report.times) == len(report.target) and report.times.is_monotonic_increasing


def test_no_window_tests_on_or_before_its_training_rows(report, as_json):
    assert len(report.folds) == (report.usable_rows - 1440) // 480
    previous_end = None
    for fold in report.folds:
        assert fold.train_rows == 1440 and fold.test_rows == 480
        assert fold.train_start < fold.train_end < fold.test_start <= fold.test_end
        assert previous_end is None or fold.test_start > previous_end
        previous_end = fold.test_end
    for fold in as_json["folds"]:
        assert fold["train_end"] < fold["test_start"]  # ISO strings of one zone sort as times


def test_buy_and_hold_holds_the_same_rows(report):
    fee = SETTINGS.fee_bps / 10_000
    expected = math.exp(report.target.sum()) * (1 - fee) - 1
    assert report.buy_and_hold.total_return == pytest.approx(expected)
    assert report.buy_and_hold.turnover == 1 and report.buy_and_hold.exposure == 1


def test_conformal_intervals_cover_about_the_nominal_share(report):
    for name, kind in report.kinds.items():
        assert 0.8 < kind.coverage.rate < 0.97, name
        assert kind.coverage.count == len(report.target)
        # a window's half-width is fixed before it is forecast: one value per window
        assert len(np.unique(kind.half_width)) <= len(report.folds)


class WindowMean(ModelKind):
    """A test kind that reads three rows: the training mean, whatever the inputs."""

    name = "window3_mean"
    fitted_widths: ClassVar[list[int]] = []

    @property
    def window(self) -> int:
        return 3

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.fitted_widths.append(x.shape[1])
        self.value = float(y.mean())

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)

    def log_model(self, input_example, name="model"):
        raise NotImplementedError

    @classmethod
    def load(cls, model_uri, features):
        raise NotImplementedError

    def to_onnx(self):
        raise NotImplementedError


def test_a_kind_with_a_longer_window_narrows_every_kind_to_its_rows(frame, monkeypatch):
    monkeypatch.setitem(kinds._KINDS, ("return", WindowMean.name), WindowMean)
    report = evaluate_kinds(frame, ["drift", WindowMean.name], "1h", SETTINGS)
    assert report.usable_rows == len(frame) - 2  # the slice has no gaps
    assert {kind.predictions for kind in report.kinds.values()} == {len(report.target)}
    assert report.kinds[WindowMean.name].window == 3
    assert set(WindowMean.fitted_widths) == {3 * 15}


def test_a_fit_budget_stops_the_evaluation_instead_of_skipping_refits(frame):
    tight = EvaluationSettings(
        train_rows=1440, test_rows=480, calibration_rows=360, fit_budget_s=1e-9
    )
    with pytest.raises(FitBudgetExceededError, match=r"passed the fit budget of 1e-09 s"):
        evaluate_kinds(frame, ["lightgbm"], "1h", tight)
    report = evaluate_kinds(frame, ["lightgbm"], "1h", SETTINGS)  # no budget: every window
    lightgbm = report.kinds["lightgbm"]
    assert lightgbm.refit_windows == tuple(range(len(report.folds)))


def test_bad_inputs_fail_clearly(frame, candles):
    with pytest.raises(ConfigError, match="lightgbm"):
        evaluate_kinds(frame, ["lightgbm"], "1h", SETTINGS, params={"lightgbm": {"leaves": 3}})
    with pytest.raises(NotEnoughHistoryError):
        evaluate_kinds(frame.iloc[:1500], ["drift"], "1h", SETTINGS)
    with pytest.raises(ValueError, match="twice"):
        EvaluationSettings(test_rows=720, step_rows=100)
    with pytest.raises(ValueError, match="share a timestamp"):
        evaluation_frame(candles.iloc[[0, 1, 1, 2]], "1h", "file:BTC/USD")
    with pytest.raises(NotEnoughHistoryError):
        evaluation_frame(candles.iloc[:0], "1h", "file:BTC/USD")


def test_timeframe_is_inferred_from_the_candle_spacing(candles):
    assert infer_timeframe(candles["ts"]) == "1h"
    assert infer_timeframe([0, 300_000, 600_000, 1_200_000]) == "5m"
    assert infer_timeframe([0, 86_400_000]) == "1d"
    with pytest.raises(ValueError, match="--timeframe"):
        infer_timeframe([0])


# -- the command -------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path):
    """A config that lists another pair only, and an empty home."""
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text("pairs:\n  - {symbol: ETH/BTC, exchange: binance, timeframe: 5m}\n")
    return {"CANDLECAST_HOME": str(tmp_path / "home"), "CANDLECAST_PAIRS": str(pairs)}


@pytest.fixture
def history(tmp_path, candles):
    path = tmp_path / "btc.csv"
    candles.to_csv(path, index=False)
    return path


def evaluate(env, *args):
    runner = CliRunner()
    return runner.invoke(app, ["evaluate", *args], env=env, catch_exceptions=False)


def test_json_on_stdout_progress_on_stderr_for_an_unconfigured_file(env, history, tmp_path):
    sizes = ["--train-rows", "1440", "--test-rows", "480"]
    result = evaluate(env, "--pair", "BTC/USD", "--file", str(history), *sizes, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert report["stream"] == "file_btc_usd_1h" and report["timeframe"] == "1h"
    assert list(report["kinds"]) == ["persistence", "lightgbm"]  # the config's default kinds
    assert "lightgbm: window 5/5" in result.stderr and "HTML report" in result.stderr
    page = (tmp_path / "home" / "reports").glob("file_btc_usd_1h-*.html")
    html = next(page).read_text()
    assert html.count("data:image/png;base64,") == 3 and "http" not in html
    assert report["html"].endswith(".html")


def test_table_without_json_and_html_where_asked(env, history, tmp_path):
    # a path longer than the terminal is printed whole on one line, not broken mid-name
    target = tmp_path / ("out-" + "x" * 200) / "report.html"
    args = ["--pair", "BTC/USD", "--file", str(history), "--timeframe", "1h", "--models", "drift"]
    wide = {**env, "COLUMNS": "200"}
    result = evaluate(wide, *args, "--train-rows", "2000", "--html", str(target))
    assert result.exit_code == 0, result.stderr
    assert "persistence" in result.stdout and "buy-and-hold" in result.stdout
    assert target.exists() and f"HTML report: {target}\n" in result.stderr


def test_an_unknown_kind_is_refused_naming_the_known_ones(env, history):
    result = evaluate(env, "--pair", "BTC/USD", "--file", str(history), "--models", "nope")
    assert result.exit_code == 1 and result.stdout == ""
    message = " ".join(result.stderr.split())
    assert "unknown model kind 'nope'" in message
    assert all(name in message for name in kinds.kind_names())


def test_a_configured_stream_is_evaluated_on_its_stored_history_and_logged_to_mlflow(env):
    from mlflow import MlflowClient

    from candlecast.modeling import registry
    from candlecast.settings import Settings

    feather = REPO / "data" / "bundled" / "freqtrade" / "ETH_BTC-5m.feather"
    imported = CliRunner().invoke(
        app, ["import-candles", "--pair", "ETH/BTC", "--file", str(feather)], env=env
    )
    assert imported.exit_code == 0, imported.output
    sizes = ["--train-rows", "1440", "--test-rows", "720", "--models", "drift"]
    result = evaluate(env, "--pair", "ETH/BTC", *sizes, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stream"] == "binance_eth_btc_5m" and "validated" in report["source"]
    registry.configure(Settings(home=env["CANDLECAST_HOME"], pairs=env["CANDLECAST_PAIRS"]))
    client = MlflowClient()
    run = client.get_run(report["mlflow_run"])
    assert run.data.tags["run.role"] == "evaluation"
    assert run.data.metrics["persistence.rmse_ratio"] == 1.0
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/report.json" in logged and any(p.endswith(".html") for p in logged)


def test_a_volatility_target_is_scored_against_its_baselines(env, history):
    sizes = ["--train-rows", "1440", "--test-rows", "480"]
    args = ["--pair", "BTC/USD", "--file", str(history), *sizes, "--json"]
    result = evaluate(env, *args, "--target", "volatility", "--horizon", "24")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["target"], report["horizon"], report["embargo_rows"]) == ("volatility", 24, 24)
    assert list(report["kinds"]) == ["persistence", "ewma", "har", "lightgbm"]
    persistence, lightgbm = report["kinds"]["persistence"], report["kinds"]["lightgbm"]
    assert persistence["qlike_ratio"] == 1.0 and persistence["baseline"] is True
    assert lightgbm["qlike_ratio"] == pytest.approx(lightgbm["qlike"] / persistence["qlike"])
    assert lightgbm["qlike_vs_ewma"] == pytest.approx(
        lightgbm["qlike"] / report["kinds"]["ewma"]["qlike"]
    )
    assert 0 <= lightgbm["dm_p_vs_ewma"] <= 1
    assert 0 <= lightgbm["versus"]["har"]["folds_won"] <= 1
    # every kind scored on the same rows; the EWMA beats "the last 24 hours again"
    assert len({kind["predictions"] for kind in report["kinds"].values()}) == 1
    assert report["kinds"]["ewma"]["qlike_ratio"] < 1


def test_return_intervals_report_coverage_where_it_matters(env, history):
    sizes = ["--train-rows", "1440", "--test-rows", "480", "--models", "drift"]
    args = ["--pair", "BTC/USD", "--file", str(history), *sizes, "--json"]
    result = evaluate(env, *args, "--target", "return", "--horizon", "4")
    assert result.exit_code == 0, result.stderr
    coverage = json.loads(result.stdout)["kinds"]["persistence"]["interval_coverage"]
    assert coverage["level"] == 0.9 and 0.8 < coverage["rate"] < 0.97
    assert len(coverage["by_volatility_tercile"]) == 3
    assert {"rolling_30d_min", "blocks_below_80", "winkler", "pinball"} <= set(coverage)
    assert set(coverage["levels"]) == {"0.8", "0.9", "0.95"}
    assert coverage["fixed_width"]["level"] == 0.9


def test_an_unknown_target_is_refused_in_one_line(env, history):
    result = evaluate(env, "--pair", "BTC/USD", "--file", str(history), "--target", "vol")
    assert result.exit_code == 1 and result.stdout == ""
    assert "unknown target 'vol' (known: return, volatility)" in " ".join(result.stderr.split())
