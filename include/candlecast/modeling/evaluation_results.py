"""The results of a walk-forward evaluation (:mod:`.evaluate`): settings, windows, and per
kind every metric, as typed values; :mod:`.report` turns them into JSON and HTML."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from candlecast.evaluation import metrics, significance
from candlecast.evaluation.backtest import BacktestResult


@dataclass(frozen=True)
class EvaluationSettings:
    """How the walk-forward runs and is scored. The defaults give about 24 windows on 20,000
    hourly candles and keep every bundled kind within 10 minutes on two CPU cores.

    Attributes:
        train_rows: rows each refit trains on, a rolling window (2,160: 90 days at 1h).
        test_rows: rows each window forecasts (720: 30 days at 1h).
        step_rows: rows between window starts, at least ``test_rows`` (no row is forecast
            twice); None: ``test_rows``.
        fee_bps: backtest fee per change of position, in basis points.
        coverage: nominal coverage of the prediction intervals.
        calibration_rows: the tail of the first window's training rows that calibrates its
            interval (fitted on the rows before it).
        fit_budget_s: seconds of fitting one kind may spend over all windows before the
            evaluation stops with an error (it never skips refits); None or 0: no budget.
        confidence: level of the directional-accuracy and bootstrap intervals.
        resamples: block-bootstrap resamples.
        seed: bootstrap seed.
    """

    train_rows: int = 2160
    test_rows: int = 720
    step_rows: int | None = None
    fee_bps: float = 10.0
    coverage: float = 0.9
    calibration_rows: int = 720
    fit_budget_s: float | None = None
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.step_rows is not None and self.step_rows < self.test_rows:
            raise ValueError(
                f"step rows ({self.step_rows}) below test rows ({self.test_rows}) would "
                "forecast rows twice"
            )
        if not 0 < self.calibration_rows < self.train_rows:
            raise ValueError(f"calibration rows must be in (0, {self.train_rows})")

    def with_overrides(self, **values: Any) -> EvaluationSettings:
        """These settings with every value that is not None replaced."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class FoldSpan:
    """One forecast window: the prediction times of its first and last training and test
    rows (candle close times), and its row counts."""

    number: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train_rows: int
    test_rows: int


@dataclass(frozen=True, eq=False)
class KindEvaluation:
    """One kind's out-of-sample forecasts over every window, and their scores."""

    kind: str
    window: int
    windows: int
    refit_windows: tuple[int, ...]
    fit_seconds: float
    predicted: np.ndarray
    half_width: np.ndarray
    rmse: float
    mae: float
    ratios: metrics.PersistenceRatios
    direction: metrics.DirectionalAccuracy
    coverage: metrics.Coverage
    diebold_mariano: significance.DieboldMariano
    fold_loss_test: significance.WindowedTest | None
    bootstrap: significance.BootstrapRatio
    backtest: BacktestResult

    @property
    def predictions(self) -> int:
        return len(self.predicted)

    @property
    def refits(self) -> int:
        return len(self.refit_windows)


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """Every kind on the same walk-forward windows: ``times`` and ``target`` are the scored
    rows (prediction time, realised next-candle log return), in window order."""

    timeframe: str
    settings: EvaluationSettings
    frame_rows: int
    usable_rows: int
    folds: tuple[FoldSpan, ...]
    times: pd.DatetimeIndex
    target: np.ndarray
    buy_and_hold: BacktestResult
    kinds: Mapping[str, KindEvaluation]

    def as_dict(self) -> dict[str, Any]:
        """The report in plain JSON types, the arrays left out (see :mod:`.report`)."""
        from candlecast.modeling.report import report_dict

        return report_dict(self)

    def to_json(self, **extra: Any) -> str:
        """:meth:`as_dict` as strict JSON (no NaN), with ``extra`` keys first."""
        from candlecast.modeling.report import report_json

        return report_json(self, **extra)
