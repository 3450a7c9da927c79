"""One monitoring check of a pair, as of a time: drift, realized skill, the decision.

Windows (``W`` = ``monitoring.window_candles``): the **current** window is the ``W`` candles
before ``as_of``; the **reference** is the champion's own training window (from its training
run's ``train_start`` to its ``interval_end``), cut where the current window starts so the
two never share a candle (:func:`check_windows`), on the champion's inputs (its run's
``features``). With no champion (nothing trained yet) the reference is the ``W`` candles before
the current window, on the default feature set. Feature rows are computed from validated
candles by the one feature function, exactly as training and serving compute them.

Prediction drift compares the champion's distinct served forecasts in the current window with
its holdout forecasts (the training run's ``holdout`` artifact); realized skill joins the same
forecasts with the returns that followed (:mod:`candlecast.monitoring.performance`). Every
check is stored in the metrics table; its Evidently report, headed by what was compared
(:mod:`candlecast.monitoring.report`), is kept under ``$CANDLECAST_HOME/monitoring/reports/``
(the newest ``monitoring.reports_kept`` per stream) and logged to the champion's MLflow run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import PairConfig
from candlecast.data.ingestion import validated_table
from candlecast.data.liquidity import Liquidity, liquidity
from candlecast.errors import MissingDataError
from candlecast.features.engineering import FEATURE_COLUMNS, compute_features
from candlecast.modeling import mlflow_keys as keys
from candlecast.modeling.history import versions_at
from candlecast.monitoring import decisions
from candlecast.monitoring.aci import AciReport
from candlecast.monitoring.drift import DriftResult, FeatureDrift, data_drift, prediction_drift
from candlecast.monitoring.notify import notify
from candlecast.monitoring.performance import (
    Realized,
    distinct_forecasts,
    join_realized,
    realized_performance,
    realized_returns,
)
from candlecast.monitoring.report import ReportHeader, prune_reports, report_name, with_header
from candlecast.monitoring.result import Champion, CheckResult
from candlecast.monitoring.shadow import ShadowSkill, shadow_skill, shadows_in_force
from candlecast.monitoring.store import (
    CheckRow,
    FeatureRow,
    MetricsStore,
    NewestRow,
    TargetDetails,
    TargetRow,
    TargetVersionRow,
)
from candlecast.monitoring.target_skill import Skill
from candlecast.monitoring.targets import TargetRealized, main_aci, realized_targets
from candlecast.serving.forecast_log import PLATFORM, SERVICE, SHADOW, read_forecasts
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import ms_to_datetime, timeframe_ms, to_ms

log = logging.getLogger(__name__)


def champion_of(
    pair: PairConfig, settings: Settings | None = None, as_of: datetime | None = None
) -> Champion | None:
    """The stream's champion as of ``as_of`` (data time; default: now) as monitoring sees it,
    or None when it had none. The recorded decisions (:mod:`candlecast.modeling.history`) say
    which version was in force then, and the training window of the latest decision, which is
    the reference window even when that decision kept the champion; a store with no recorded
    decision (made before they were recorded) falls back to the ``champion`` alias."""
    from candlecast.modeling import history, registry
    from candlecast.modeling.kinds import get_kind
    from candlecast.modeling.version_card import version_card

    registry.configure(settings)
    client = registry.client()
    decided = history.read(pair.stream, settings)
    in_force = history.as_of(decided, as_of or datetime.now(UTC)) if decided else None
    if decided and in_force is None:
        return None
    version: Any = None
    if in_force is not None:
        version = client.get_model_version(pair.stream.registered_model, in_force.version)
    else:
        version = registry.champion(client, pair.stream)
    if version is None or version.run_id is None:
        return None
    card = version_card(pair.stream, version)
    predicted = None
    if card.kind and not get_kind(card.kind).baseline:
        holdout = registry.load_holdout(version.run_id)
        predicted = holdout.loc[holdout["holdout"], "predicted"].to_numpy(dtype=np.float64)
    # the reference window is the whole training window (train and holdout rows): the card's
    # first training time to its training window's end
    start = _utc(card.train_start)
    end = _utc(card.interval_end)
    if in_force is not None:
        start, end = in_force.window_start, in_force.window_end
    return Champion(
        version=str(version.version),
        run_id=version.run_id,
        kind=card.kind,
        features=list(card.features),
        train_start=start,
        train_end=end,
        holdout_predicted=predicted,
        history=tuple(decided),
    )


def feature_window(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    settings: Settings | None = None,
    candles: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature rows of the candles opening in ``[start, end)``, warmed up on the candles
    before (from the validated store, or from ``candles``)."""
    step = timeframe_ms(pair.timeframe)
    first, last = to_ms(start), to_ms(end)
    warm = first - pair.features.warmup_candles * step
    if candles is None:
        candles = validated_table(pair.stream, settings).read(warm, last)
    else:
        candles = candles[(candles["ts"] >= warm) & (candles["ts"] < last)]
    if candles.empty:
        return pd.DataFrame(columns=["candle_ts", *FEATURE_COLUMNS])
    rows = compute_features(candles.reset_index(drop=True), pair.timeframe, pair.stream.market_key)
    return rows[(rows["candle_ts"] >= first) & (rows["candle_ts"] < last)].reset_index(drop=True)


def compare_windows(
    pair: PairConfig,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    *,
    columns: list[str] | None = None,
    candles: pd.DataFrame | None = None,
    settings: Settings | None = None,
) -> tuple[DriftResult, pd.DataFrame, pd.DataFrame]:
    """Data drift between the feature rows of two windows (candles opening in each
    ``[start, end)``) of the stored history or of ``candles``, on ``columns`` (default: the
    default feature set). Returns the result and both windows' rows."""
    limits = decisions.Thresholds.of(pair.monitoring)
    before = feature_window(pair, *reference, settings, candles)
    after = feature_window(pair, *current, settings, candles)
    for name, rows, span in (("reference", before, reference), ("current", after, current)):
        if rows.empty:
            raise MissingDataError(
                f"{pair.stream.label}: no feature rows in the {name} window "
                f"{span[0].isoformat()} .. {span[1].isoformat()}"
            )
    drift = data_drift(
        before,
        after,
        columns or list(FEATURE_COLUMNS),
        limits.feature_threshold,
        limits.drift_share,
    )
    return drift, before, after


def check_windows(
    as_of: datetime, window: timedelta, trained: tuple[datetime, datetime] | None
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The (reference, current) windows of a check as of ``as_of``: the current one is the
    ``window`` before ``as_of``; the reference is the champion's training window (``trained``)
    cut where the current one starts, so no candle is in both (a check soon after training
    would otherwise compare a window with itself); with no champion, or a training window
    that starts within the current one, the ``window`` before the current one."""
    current = (as_of - window, as_of)
    if trained is not None and trained[0] < current[0]:
        return (trained[0], min(trained[1], current[0])), current
    return (current[0] - window, current[0]), current


def check_pair(
    pair: PairConfig,
    as_of: datetime | None = None,
    *,
    settings: Settings | None = None,
    store: MetricsStore | None = None,
    now: datetime | None = None,
    keep_report: bool = True,
) -> CheckResult:
    """Check a pair as of ``as_of`` (default: its newest candle's close), store the figures
    and decide whether a retrain is due (the request itself is :func:`request_retrain`).

    Raises:
        MissingDataError: no validated candles in the current window.
    """
    settings = settings or get_settings()
    store = store or MetricsStore()
    now = now or datetime.now(UTC)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    stream = pair.stream
    step = timeframe_ms(pair.timeframe)
    newest = validated_table(stream, settings).last_key()
    if newest is None:
        raise MissingDataError(f"{stream.label}: no validated candles to monitor")
    # never past the newest candle: a window of candles not yet closed is no evidence
    as_of = min(as_of or datetime.max.replace(tzinfo=UTC), ms_to_datetime(newest + step))
    champion = champion_of(pair, settings, as_of)
    window = timedelta(milliseconds=pair.monitoring.window_candles * step)
    trained = (champion.train_start, champion.train_end) if champion else None
    reference_span, current_span = check_windows(as_of, window, trained)
    columns = champion.features if champion is not None else list(FEATURE_COLUMNS)
    current = feature_window(pair, *current_span, settings)
    if current.empty:
        raise MissingDataError(
            f"{stream.label}: no feature rows between {current_span[0]} and {as_of}; "
            "ingest and validate that window first"
        )
    reference = feature_window(pair, *reference_span, settings)
    timings["features_s"] = time.perf_counter() - started
    limits = decisions.Thresholds.of(pair.monitoring)
    drift = data_drift(reference, current, columns, limits.feature_threshold, limits.drift_share)
    timings["drift_s"] = time.perf_counter() - started - timings["features_s"]
    # forecasts made from the window's feature rows, the newest row's (closing at as_of) too
    forecasts = read_forecasts(stream.key, to_ms(current_span[0]), to_ms(as_of) + 1, settings)
    served = _served(pair, champion, forecasts, current_span, settings, limits)
    prediction, realized = served.prediction, served.realized
    targets = _targets(pair, current_span, settings, limits.min_forecasts)
    aci = [r for t in targets for r in t.aci] + _main_aci(pair, current_span, settings)
    evidence = decisions.Evidence(
        drift_share=drift.share if drift.features else None,
        drifted_features=tuple(drift.drifted),
        features=len(drift.features),
        prediction_drifted=prediction.drifted if prediction else None,
        rmse_ratio=realized.rmse_ratio if realized else None,
        forecasts=realized.forecasts if realized else 0,
        coverage=tuple(
            (t.key, t.coverage_90, t.forecasts) for t in targets if t.coverage_90 is not None
        ),
        shadows=tuple(s.evidence() for s in served.shadows)
        + tuple(s.evidence() for t in targets for s in t.shadows),
    )
    # the cooldown counts in data time: a backfill of any length gets one request per cooldown
    last_request = store.last_retrain_request(stream.key, until=as_of)
    decision = decisions.decide(evidence, limits, last_request, as_of)
    staleness = now.timestamp() - (newest + step) / 1000
    result = CheckResult(
        stream=stream.key,
        as_of=as_of,
        champion_version=champion.version if champion else None,
        reference=reference_span,
        current=current_span,
        drift=drift,
        prediction=prediction,
        realized=realized,
        forecasts_logged=len(forecasts),
        feature_staleness_s=staleness,
        decision=decision,
        timings=timings,
        targets=tuple(targets),
        liquidity=_window_liquidity(pair, current_span, settings),
        realized_by_version=served.by_version,
        realized_source=served.source,
        min_forecasts=limits.min_forecasts,
        aci=tuple(aci),
        shadows=served.shadows,
    )
    report = None
    if keep_report and drift.features:
        report = _keep_report(result, reference, current, champion, settings, now)
        prune_reports(Path(report).parent, pair.monitoring.reports_kept)
    check_id = store.write_check(
        _row(result, now, report),
        _feature_rows(drift),
        [_target_row(t) for t in targets],
        _details(result),
    )
    timings["total_s"] = time.perf_counter() - started
    log.info("%s: %s", stream.label, decision.reason)
    return _replace(result, check_id=check_id, report_path=report)


def _targets(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings, min_forecasts: int
) -> list[TargetRealized]:
    """The other targets' realized figures from the logged forecasts; a failure is logged,
    never fails the check."""
    try:
        return realized_targets(pair, span, settings, min_forecasts)
    except Exception:
        log.exception("%s: target figures unavailable", pair.stream.label)
        return []


def _main_aci(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings
) -> list[AciReport]:
    """The next candle's return intervals' ACI state; a failure is logged, never fails the
    check."""
    try:
        return main_aci(pair, span, settings)
    except Exception:
        log.exception("%s: interval state not updated", pair.stream.label)
        return []


def _details(result: CheckResult) -> TargetDetails:
    newest = [
        NewestRow(t.key, t.newest_forecast, t.newest_realized)
        for t in result.targets
        if t.newest_forecast is not None and t.newest_realized is not None
    ]
    versions = [row for t in result.targets for row in _version_rows(t)]
    shadows = [s.stored() for s in result.shadows]
    targets = [s.stored_for_target() for t in result.targets for s in t.shadows]
    return TargetDetails(newest, list(result.aci), shadows, versions, targets)


def _version_rows(found: TargetRealized) -> list[TargetVersionRow]:
    """A target's figures from the logged forecasts: as served, then per version."""
    served = TargetVersionRow(
        found.key, found.version or "", True, found.forecasts, found.state == "judged",
        found.metric, found.score, found.ratio, found.coverage_90,
    )  # fmt: skip
    return [served] + [_version_row(found, v, skill) for v, skill in found.by_version.items()]


def _version_row(found: TargetRealized, version: str, skill: Skill) -> TargetVersionRow:
    return TargetVersionRow(
        found.key, version, False, skill.forecasts, skill.state == "judged", found.metric,
        skill.score, skill.ratio, skill.coverage_90,
    )  # fmt: skip


def _window_liquidity(
    pair: PairConfig, span: tuple[datetime, datetime], settings: Settings
) -> Liquidity | None:
    candles = validated_table(pair.stream, settings).read(to_ms(span[0]), to_ms(span[1]))
    return liquidity(candles) if len(candles) else None


def request_retrain(
    pair: PairConfig,
    reason: str,
    *,
    store: MetricsStore | None = None,
    now: datetime | None = None,
    check_id: int | None = None,
) -> None:
    """Record a drift-triggered retrain request (the rate limit counts these) and notify the
    webhook when one is configured. The Airflow event itself is emitted by the monitor DAG.
    ``now`` is the data time of the check that asked (its ``as_of``): the cooldown counts in
    data time."""
    store = store or MetricsStore()
    store.record_retrain_request(pair.stream.key, now or datetime.now(UTC), reason, check_id)
    notify(f"candlecast: retraining {pair.stream.label}: {reason}")


@dataclass(frozen=True)
class _Served:
    prediction: FeatureDrift | None = None
    realized: Realized | None = None
    by_version: dict[str, Realized] = field(default_factory=dict)
    source: str | None = None
    shadows: tuple[ShadowSkill, ...] = ()


def _served(
    pair: PairConfig,
    champion: Champion | None,
    forecasts: pd.DataFrame,
    span: tuple[datetime, datetime],
    settings: Settings,
    limits: decisions.Thresholds,
) -> _Served:
    """Prediction drift of the champion's forecasts, and realized skill: of the stream as
    served (each feature row forecast by the version in force for it, across champion
    changes) and of each version. The platform's own forecasts are judged when there are any
    (every candle), else the forecasts clients were served; shadow challengers are judged
    against the stream as served on the same rows (:mod:`candlecast.monitoring.shadow`)."""
    if champion is None or forecasts.empty:
        return _Served()
    platform = forecasts[forecasts["source"] == PLATFORM]
    source = PLATFORM if len(platform) else SERVICE
    logged = platform if len(platform) else forecasts[forecasts["source"] == SERVICE]
    step = timeframe_ms(pair.timeframe)
    candles = validated_table(pair.stream, settings).read(to_ms(span[0]) - step, to_ms(span[1]))
    returns = realized_returns(candles, pair.timeframe)
    by_version = {}
    for version, rows in logged.groupby("model_version", sort=True):
        found = realized_performance(join_realized(rows, returns))
        if found is not None:
            by_version[str(version)] = found
    if source == PLATFORM and champion.history:
        in_force = versions_at(champion.history, logged["feature_ts"].to_numpy(dtype=np.int64))
        as_served = logged[logged["model_version"].to_numpy() == in_force]
    else:
        as_served = logged[logged["model_version"] == champion.version]
    realized = realized_performance(join_realized(as_served, returns))
    mine = logged[logged["model_version"] == champion.version]
    prediction = None
    if champion.holdout_predicted is not None and len(mine):
        served = distinct_forecasts(mine)["predicted"].to_numpy(dtype=np.float64)
        prediction = prediction_drift(champion.holdout_predicted, served, limits.feature_threshold)
    shadows = forecasts[forecasts["source"] == SHADOW]
    if champion.history:
        shadows = shadows_in_force(shadows, champion.history)
    judged = shadow_skill(pair, shadows, as_served, returns, limits.min_forecasts)
    return _Served(prediction, realized, by_version, source, tuple(judged))


def _keep_report(
    result: CheckResult,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    champion: Champion | None,
    settings: Settings,
    now: datetime,
) -> str:
    """The Evidently HTML report under the data directory, headed by what was compared,
    logged to the champion's run."""
    from candlecast.monitoring.drift import report_html

    folder = settings.paths.home / "monitoring" / "reports" / result.stream
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / report_name(result.as_of, now)
    page = report_html(reference, current, result.drift)
    path.write_text(with_header(page, ReportHeader(result, champion.kind if champion else None)))
    if champion is not None:
        _log_report(champion.run_id, path)
    return str(path)


def _log_report(run_id: str, path: Path) -> None:
    from candlecast.modeling import registry

    try:
        registry.client().log_artifact(
            run_id, str(path), artifact_path=keys.MONITORING_ARTIFACT_DIR
        )
    except Exception:  # the figures are stored; a tracking server hiccup loses only the copy
        log.exception("drift report not logged to MLflow run %s", run_id)


def _row(result: CheckResult, now: datetime, report: str | None) -> CheckRow:
    realized = result.realized
    return CheckRow(
        stream=result.stream,
        checked_at=int(now.timestamp() * 1000),
        as_of=to_ms(result.as_of),
        champion_version=result.champion_version,
        features=len(result.drift.features),
        drifted_features=len(result.drift.drifted),
        drift_share=result.drift.share if result.drift.features else None,
        drift_detected=result.drift.detected,
        prediction_drift_score=result.prediction.score if result.prediction else None,
        prediction_drifted=result.prediction.drifted if result.prediction else None,
        forecasts_logged=result.forecasts_logged,
        forecasts_realized=realized.forecasts if realized else 0,
        rmse_ratio=realized.rmse_ratio if realized else None,
        mae_ratio=realized.mae_ratio if realized else None,
        directional_accuracy=_finite(realized.directional_accuracy) if realized else None,
        majority_rate=_finite(realized.majority_rate) if realized else None,
        coverage=realized.coverage if realized else None,
        feature_staleness_s=result.feature_staleness_s,
        retrain=result.decision.retrain,
        rate_limited=result.decision.rate_limited,
        reason=result.decision.reason,
        report_path=report,
    )


def _target_row(found: TargetRealized) -> TargetRow:
    return TargetRow(
        target=found.key,
        version=found.version,
        kind=found.kind,
        forecasts=found.forecasts,
        metric=found.metric,
        score=found.score,
        persistence=found.persistence,
        ratio=found.ratio,
        coverage_90=found.coverage_90,
    )


def _feature_rows(drift: DriftResult) -> list[FeatureRow]:
    return [
        FeatureRow(f.feature, f.method, f.score, f.threshold, f.drifted) for f in drift.features
    ]


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _replace(result: CheckResult, **changes: Any) -> CheckResult:
    from dataclasses import replace

    return replace(result, **changes)
