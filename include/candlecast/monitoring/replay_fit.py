"""One decision of a replay, in memory: fit the configured kinds on the window ending at a
data time, and let the gate decide who is champion.

The same functions as the train and promote stages, without MLflow: the chronological split
of :func:`candlecast.modeling.training.training_set`, each kind fitted on the oldest rows and
scored on the holdout, then refitted on the whole window (the served fit); the challenger is
the kind with the lowest holdout RMSE; :func:`candlecast.modeling.gate.decide` judges it
against persistence and the current champion on the same evidence as
:mod:`candlecast.modeling.promotion` builds (:func:`~candlecast.modeling.promotion.compare`).
The interval of a champion is the split-conformal half-width of its out-of-sample holdout
residuals (:func:`candlecast.modeling.onnx_export.interval_half_width`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.errors import NotEnoughHistoryError
from candlecast.modeling.gate import Champion, Evidence, Policy, Verdict, decide
from candlecast.modeling.kinds.base import ModelKind, window_inputs
from candlecast.modeling.onnx_export import interval_half_width
from candlecast.modeling.promotion import compare
from candlecast.modeling.training import new_model, training_set

#: The champion's name when the gate serves persistence (a zero return forecast).
PERSISTENCE = "persistence"


@dataclass
class History:
    """Feature rows of one stream with their next-candle targets, sorted by close time.

    ``close_ms[i]`` is the close of row ``i``'s candle: its features are known then, its target
    (the next candle's return) at ``close_ms[i] + step_ms``.
    """

    frame: pd.DataFrame
    step_ms: int
    _inputs: dict[tuple[int, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    @property
    def close_ms(self) -> np.ndarray:
        return self.frame["candle_ts"].to_numpy(dtype=np.int64) + self.step_ms

    @property
    def target(self) -> np.ndarray:
        return self.frame["target"].to_numpy(dtype=np.float64)

    def inputs(self, window: int, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Every row's inputs for a ``window``-row kind reading ``features``, and which rows
        have them (built once per history)."""
        key = (window, features)
        if key not in self._inputs:
            self._inputs[key] = window_inputs(self.frame, features, window, self.step_ms)
        return self._inputs[key]


@dataclass(frozen=True)
class Forecaster:
    """A champion: a fitted kind (``model``) or persistence (None), from data time ``since``.

    ``last_event`` is the close of the last row its served fit saw; ``window`` the training
    window ``[start, end)`` in unix ms of the decision that made it champion.
    """

    kind: str
    since: int
    last_event: int
    half_width: float | None
    window: tuple[int, int]
    model: ModelKind | None = None

    def predict(self, history: History, positions: np.ndarray) -> np.ndarray:
        """Forecasts of the rows at ``positions`` (0 where a windowed kind has no window)."""
        if self.model is None or not len(positions):
            return np.zeros(len(positions))
        x, usable = history.inputs(self.model.window, tuple(self.model.spec.features))
        out = np.zeros(len(positions))
        ok = usable[positions]
        if ok.any():
            out[ok] = self.model.predict(x[positions[ok]])
        return out


@dataclass(frozen=True)
class Candidate:
    """What training at one data time produced: the challenger, the persistence fallback and
    the holdout they were judged on (positions in the history)."""

    challenger: Forecaster
    persistence: Forecaster
    holdout: np.ndarray
    predicted: np.ndarray  # the challenger's holdout-fit forecasts of the holdout rows
    scores: dict[str, float]  # holdout RMSE per kind
    fit_s: float


def train_at(history: History, pair: PairConfig, kinds: list[str], end_ms: int) -> Candidate:
    """Fit ``kinds`` on the rows whose targets were known at ``end_ms``, within the pair's
    ``train_days`` (point in time: no row closes later than ``end_ms - step``).

    Raises:
        NotEnoughHistoryError: fewer than ``training.min_train_rows`` rows, or no split.
    """
    started = time.perf_counter()
    start_ms = end_ms - int(pair.training.train_days * 86_400_000)
    close = history.close_ms
    rows = np.flatnonzero(
        (close - history.step_ms >= start_ms) & (close + history.step_ms <= end_ms)
    )
    if len(rows) < pair.training.min_train_rows:
        raise NotEnoughHistoryError(
            f"{len(rows)} training rows before {pd.Timestamp(end_ms, unit='ms', tz='UTC')}, "
            f"need training.min_train_rows={pair.training.min_train_rows}"
        )
    frame = history.frame.iloc[rows].reset_index(drop=True).assign(_row=rows)
    data = training_set(pair, frame, kinds)
    holdout = data.frame["_row"].to_numpy()[data.holdout]
    target = data.target(data.holdout)
    last_event = int(close[data.frame["_row"].to_numpy()[data.usable[-1]]])
    window = (start_ms, end_ms)
    fits = {}
    for name in kinds:
        model = new_model(pair, name)
        features = model.spec.features
        model.fit(data.inputs(model.window, data.train, features), data.target(data.train))
        predicted = model.predict(data.inputs(model.window, data.holdout, features))
        model.fit(data.inputs(model.window, data.usable, features), data.target(data.usable))
        fits[name] = (model, np.asarray(predicted, dtype=np.float64))
    scores = {name: _rmse(fit[1] - target) for name, fit in fits.items()}
    best = min(scores, key=lambda name: scores[name])
    model, predicted = fits[best]
    checked = pd.DataFrame({"holdout": True, "target": target, "predicted": predicted})
    challenger = Forecaster(
        best, end_ms, last_event, interval_half_width(checked, target, True), window, model
    )
    # persistence learns nothing, so its holdout residuals (the targets) are out of sample
    fallback = Forecaster(
        PERSISTENCE, end_ms, last_event, interval_half_width(checked, target, False), window
    )
    return Candidate(
        challenger, fallback, holdout, predicted, scores, time.perf_counter() - started
    )


def gate(
    history: History, pair: PairConfig, candidate: Candidate, champion: Forecaster | None
) -> tuple[Verdict, Forecaster | None]:
    """The gate's verdict on ``candidate`` against ``champion`` and the champion after it
    (None only when the verdict keeps a champion there is none of, which cannot happen)."""
    from candlecast.modeling.gate import Outcome

    settings = pair.training.gate
    policy = Policy(settings.alpha, settings.min_margin, tuple(settings.metrics))
    verdict = decide(_evidence(history, candidate, champion, policy, settings.windows), policy)
    if verdict.outcome is Outcome.PROMOTED:
        return verdict, candidate.challenger
    if verdict.outcome is Outcome.KEPT:
        return verdict, champion
    # persistence serves with the interval of the newest holdout: it learns nothing to keep
    return verdict, candidate.persistence


def _evidence(
    history: History,
    candidate: Candidate,
    champion: Forecaster | None,
    policy: Policy,
    windows: int,
) -> Evidence:
    """As :func:`candlecast.modeling.promotion._evidence` builds it, from in-memory fits."""
    target = history.target[candidate.holdout]
    errors = candidate.predicted - target
    vs_persistence = compare(errors, -target, policy, windows)
    if champion is None:
        return Evidence(vs_persistence)
    if champion.model is None:
        return Evidence(vs_persistence, Champion.BASELINE)
    fresh = history.close_ms[candidate.holdout] > champion.last_event
    if fresh.sum() < 2 * windows:
        return Evidence(vs_persistence, Champion.TRAINED)
    rows = candidate.holdout[fresh]
    champion_errors = champion.predict(history, rows) - target[fresh]
    return Evidence(
        vs_persistence,
        Champion.TRAINED,
        challenger_vs_champion=compare(errors[fresh], champion_errors, policy, windows),
        champion_vs_persistence=compare(champion_errors, -target[fresh], policy, windows),
    )


def _rmse(errors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(errors**2)))
