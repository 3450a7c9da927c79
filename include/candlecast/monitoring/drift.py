"""Drift of a pair's inputs and forecasts, measured with Evidently's statistical tests.

Which test, chosen per feature from its kind and the windows' size (:func:`choose_test`):

* **few distinct values** (at most :data:`CATEGORICAL_MAX_VALUES`, e.g. hour of day): treated
  as categorical, Jensen-Shannon distance of the frequencies, drifted from 0.1;
* **continuous, small windows** (fewer than :data:`SMALL_WINDOW` rows on a side): a distance is
  too noisy there, so the Kolmogorov-Smirnov test, drifted when p < 0.05;
* **continuous** otherwise: Wasserstein distance normed by the reference's standard deviation,
  drifted from ``feature_threshold`` (default 0.5: the current window moved half a reference
  standard deviation).

Why a distance and not a p-value for the continuous case: candle features are strongly
autocorrelated (a 24-candle return shares 23 candles with its neighbour), so tests that assume
independent rows see "significant" drift between any two windows of a few hundred rows. On the
bundled BTC/USD hourly history, KS flags drift in over half of the features in 78% of adjacent
500-candle windows, and the normed Wasserstein distance at Evidently's default of 0.1 in all
of them; at 0.5 drift is detected in 11% of adjacent windows of 250 or 500 candles and 6% at
1,000 (crypto's real regime changes), while a calm month against the March 2020 crash moves
10 of 15 features (distances 1.5 to 9).
``tests/monitoring/test_drift_real_data.py`` checks this on named periods.

Window size (``monitoring.window_candles``, default 500: about three weeks of 1h candles): the
distance needs a few hundred rows to be stable (below :data:`SMALL_WINDOW` the KS test takes
over), and a longer window dilutes an episode with the weeks before it (at 1,000 hourly
candles, six weeks, a two-week crash is a third of the window); the reference is the
champion's whole training window, which makes its spread (the norm) more representative.

The figures are computed with Evidently's own test implementations on plain arrays (fast: a
10,000-row x 50-feature check takes about a second); the Evidently HTML report of the same tests
(:func:`report_html`) is built only where it is kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Distinct values up to which a feature is treated as categorical (hour of day has 24).
CATEGORICAL_MAX_VALUES = 24
#: Fewer rows than this in either window: the KS test instead of a distance.
SMALL_WINDOW = 100
#: Jensen-Shannon distance from which a categorical feature has drifted (Evidently's default).
CATEGORICAL_THRESHOLD = 0.1
#: p-value below which the KS test says drifted (Evidently's default).
KS_ALPHA = 0.05


@dataclass(frozen=True)
class DriftTest:
    """An Evidently test name, its threshold and the column type it reads."""

    method: str
    threshold: float
    categorical: bool = False


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: the test, its score (distance or p-value) and the verdict."""

    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Per-feature drift of ``current`` against ``reference`` and the drifted share."""

    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int
    drift_share: float  # the threshold on the share
    skipped: list[str]  # features with too few values on a side to test

    @property
    def share(self) -> float:
        return sum(f.drifted for f in self.features) / len(self.features) if self.features else 0.0

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def detected(self) -> bool:
        return bool(self.features) and self.share >= self.drift_share

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift_detected": self.detected,
            "drift_share": self.share,
            "drift_share_threshold": self.drift_share,
            "drifted_features": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": {f.feature: _plain(asdict(f)) for f in self.features},
            "skipped": self.skipped,
        }


def choose_test(
    n_reference: int, n_current: int, distinct: int, feature_threshold: float = 0.5
) -> DriftTest:
    """The test for a feature with ``distinct`` values over windows of these sizes."""
    if distinct <= CATEGORICAL_MAX_VALUES:
        return DriftTest("jensenshannon", CATEGORICAL_THRESHOLD, categorical=True)
    if min(n_reference, n_current) < SMALL_WINDOW:
        return DriftTest("ks", KS_ALPHA)
    return DriftTest("wasserstein", feature_threshold)


def column_drift(
    name: str, reference: pd.Series, current: pd.Series, feature_threshold: float = 0.5
) -> FeatureDrift | None:
    """One column's drift (NaN dropped); None when a side has fewer than 2 values."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    ref = reference.dropna().astype(np.float64)
    cur = current.dropna().astype(np.float64)
    if len(ref) < 2 or len(cur) < 2:
        return None
    distinct = int(pd.concat([ref, cur]).nunique())
    test = choose_test(len(ref), len(cur), distinct, feature_threshold)
    kind = ColumnType.Categorical if test.categorical else ColumnType.Numerical
    stattest = get_stattest(ref, cur, kind, test.method)
    found = stattest(ref, cur, kind, test.threshold)
    score, drifted = float(found.drift_score), bool(found.drifted)
    return FeatureDrift(name, test.method, score, test.threshold, drifted)


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    feature_threshold: float = 0.5,
    drift_share: float = 0.5,
) -> DriftResult:
    """Drift of each of ``columns`` from ``reference`` to ``current``."""
    found, skipped = [], []
    for name in columns:
        if name not in reference or name not in current:
            skipped.append(name)
            continue
        drift = column_drift(name, reference[name], current[name], feature_threshold)
        if drift is None:
            skipped.append(name)
        else:
            found.append(drift)
    return DriftResult(found, len(reference), len(current), drift_share, skipped)


def prediction_drift(
    reference: np.ndarray, served: np.ndarray, feature_threshold: float = 0.5
) -> FeatureDrift | None:
    """Drift of served forecasts from the champion's holdout forecasts (None: too few)."""
    return column_drift("prediction", pd.Series(reference), pd.Series(served), feature_threshold)


def report_html(reference: pd.DataFrame, current: pd.DataFrame, result: DriftResult) -> str:
    """The Evidently data drift report of the same tests and thresholds, as one HTML page."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tested = [f.feature for f in result.features]
    categorical = [f.feature for f in result.features if f.method == "jensenshannon"]
    numerical = [c for c in tested if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=tested,
        drift_share=result.drift_share,
        per_column_method={f.feature: f.method for f in result.features},
        per_column_threshold={f.feature: f.threshold for f in result.features},
    )
    run = Report([preset]).run(
        Dataset.from_pandas(_plain_frame(current, tested), data_definition=definition),
        Dataset.from_pandas(_plain_frame(reference, tested), data_definition=definition),
    )
    return str(run.get_html_str(as_iframe=False))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()}


def _plain_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # a datetime index would make Evidently plot over time; the tests compare distributions
    return frame[columns].astype(np.float64).reset_index(drop=True)
