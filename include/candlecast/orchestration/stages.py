"""The pipeline stages for one stream and one data interval, as plain typed functions.

Each stage takes the pair config and the interval and returns a small typed result (row
counts, paths, run ids, versions), never data: the Airflow tasks and the CLI call these and
pass only those references on (:func:`to_xcom`). Every stage is idempotent for its interval.
Heavy libraries are imported inside the stages, so importing this module is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candlecast.config import PairConfig, load_pairs
from candlecast.errors import PermanentError
from candlecast.settings import Settings, get_settings
from candlecast.timeframes import ms_to_datetime, timeframe_delta

if TYPE_CHECKING:
    from candlecast.data.ingestion import IngestResult
    from candlecast.features.featurestore import Materialized
    from candlecast.modeling.onnx_export import ExportedModel
    from candlecast.modeling.promotion import Decision
    from candlecast.modeling.target_training import TargetChampion
    from candlecast.modeling.training import KindRun, Prepared, TrainResult
    from candlecast.monitoring.scoring import Scored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Validated:
    suite: str
    rows: int
    repairs: dict[str, int]
    missing_share: float
    docs: str | None
    derived: dict[str, int]
    #: Rows refused (impossible, kept in the quarantine) and stored with a flag (odd).
    refused: int = 0
    flagged: int = 0


@dataclass(frozen=True)
class FeatureRows:
    rows: int
    start: str
    end: str


@dataclass(frozen=True)
class Deployed:
    bento_model: str
    forecast: dict[str, Any]
    #: The platform's forecasts of the rows the new decision is in force for.
    scored: Scored | None = None


@dataclass(frozen=True)
class Backfilled:
    ingest: IngestResult
    validate: Validated
    features: FeatureRows


@dataclass(frozen=True)
class CandlesRun:
    backfill: Backfilled
    materialize: Materialized
    scored: Scored | None = None


@dataclass(frozen=True)
class PipelineRun:
    backfill: Backfilled
    materialize: Materialized
    train: TrainResult
    promote: Decision
    export: ExportedModel
    deploy: Deployed
    targets: list[TargetChampion]


def to_xcom(result: Any) -> dict[str, Any]:
    """A stage result as the JSON-able dict Airflow keeps in XCom."""
    from pydantic import BaseModel

    if isinstance(result, BaseModel):  # an exported model (its card inside)
        return result.model_dump(mode="json")
    if not is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"not a stage result: {type(result).__name__}")
    return asdict(result)


def pair_config(
    symbol: str,
    exchange: str | None = None,
    timeframe: str | None = None,
    settings: Settings | None = None,
) -> PairConfig:
    """The configured stream (raises UnknownStreamError / AmbiguousStreamError)."""
    return load_pairs((settings or get_settings()).pairs).resolve(symbol, exchange, timeframe)


def ingest(pair: PairConfig, start: datetime, end: datetime) -> IngestResult:
    """Fetch the interval (and, into an empty store, the history training needs)."""
    from candlecast.data import ingestion

    return ingestion.ingest(pair, start, end, with_history=True)


def validate(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    refetched: list[tuple[int, int]] | list[list[int]] | None = None,
    docs: bool = True,
) -> Validated:
    """Validate ``[start, end)`` and any gap ranges ingestion refetched (open times in ms);
    without ``docs``, data docs only for a batch that fails."""
    from candlecast.data import ingestion

    report = ingestion.validate(pair, start, end, docs=docs)
    for gap_start, gap_end in refetched or []:
        ingestion.validate(pair, ms_to_datetime(gap_start), ms_to_datetime(gap_end), docs=docs)
    return Validated(
        suite=report.suite,
        rows=report.rows,
        repairs=report.repairs,
        missing_share=report.completeness.missing_share if report.completeness else 0.0,
        docs=str(report.docs) if report.docs else None,
        derived=ingestion.derive_timeframes(pair, start, end),
        refused=report.refused_rows,
        flagged=report.flagged_rows,
    )


def features(pair: PairConfig, start: datetime, end: datetime) -> FeatureRows:
    from candlecast.features import featurestore

    rows = featurestore.write_features(pair, start, end)
    return FeatureRows(rows, start.isoformat(), end.isoformat())


def materialize(pair: PairConfig, start: datetime, end: datetime) -> Materialized:
    from candlecast.features import featurestore

    featurestore.ensure_applied(configured_timeframes())
    written = featurestore.materialize(pair, start, end)
    _announce(pair)
    return written


def score(
    pair: PairConfig, start: datetime | None, end: datetime | None = None, main: bool = True
) -> Scored | None:
    """The platform's forecasts of the stream's feature rows in ``[start, end)``, each by the
    model in force for it, logged (:mod:`candlecast.monitoring.scoring`), for every configured
    target (``main`` false: the other targets only).

    A transient failure (a locked or full forecast log, an unreadable row) is logged and returns
    None: the candles and the model go on, and the next run scores the rows again. A permanent
    one is raised and fails the task: a tampered model file (:class:`TamperedModelError`) or a
    broken configuration is for a person to see, not a log line to scroll past.
    """
    from candlecast.monitoring import scoring

    try:
        return scoring.score(pair, start, end, main=main)
    except PermanentError:
        raise
    except Exception:
        log.exception("%s: the platform's forecasts were not logged", pair.stream.label)
        return None


def untrained_features(pair: PairConfig, trained_to: datetime) -> datetime | None:
    """The close of the newest materialized (online) feature row when it is after
    ``trained_to``, else None."""
    from candlecast.features import featurestore
    from candlecast.timeframes import timeframe_ms

    store = featurestore.feature_store()
    newest = featurestore.online_features(store, pair.stream, ["candle_ts"]).get("candle_ts")
    if newest is None:
        return None
    close = ms_to_datetime(int(newest) + timeframe_ms(pair.timeframe))
    return close if close > trained_to else None


def with_training(
    pair: PairConfig, kinds: list[str] | None = None, train_days: float | None = None
) -> PairConfig:
    """The pair with a manual run's training overrides (kinds, window) applied."""
    update: dict[str, Any] = {}
    if kinds:
        update["kinds"] = list(kinds)
    if train_days:
        update["train_days"] = train_days
    if not update:
        return pair
    training = pair.training.model_validate({**pair.training.model_dump(), **update})
    return pair.model_copy(update={"training": training})


def prepare_training(
    pair: PairConfig, end: datetime, reason: str = "", dry_run: bool = False
) -> Prepared:
    """The training set of the window ending at ``end``, saved, and its parent run (tagged
    with the ``reason`` the training was asked for; named as a dry run's when ``dry_run``)."""
    from candlecast.modeling import training

    return training.prepare(pair, end, reason=reason, dry_run=dry_run)


def fit_kind(pair: PairConfig, prepared: Prepared, kind: str) -> KindRun:
    """One model kind fitted on the prepared training set (its own MLflow run)."""
    from candlecast.modeling import training

    return training.fit_one(pair, prepared, kind)


def select_challenger(pair: PairConfig, prepared: Prepared, runs: list[KindRun]) -> TrainResult:
    from candlecast.modeling import training

    return training.select(prepared, runs)


def train(pair: PairConfig, end: datetime) -> TrainResult:
    """Every configured kind, in one process (``candlecast run``)."""
    prepared = prepare_training(pair, end)
    runs = [fit_kind(pair, prepared, kind) for kind in prepared.kinds]
    return select_challenger(pair, prepared, runs)


def train_targets(pair: PairConfig, end: datetime) -> list[TargetChampion]:
    """Every configured target and horizon besides the next candle's return: trained, gated,
    exported with parity, registered and made champion (then the service is told)."""
    from candlecast.modeling import target_training

    found = target_training.train_targets(pair, end)
    if found:
        _announce(pair)
        # candles already materialized after the window are forecast by the new champions
        score(pair, end - timeframe_delta(pair.timeframe), main=False)
    return found


def promote(pair: PairConfig, run_id: str, model_uri: str, dry_run: bool = False) -> Decision:
    """Decide who is champion. Nothing is served or aliased yet: :func:`deploy` commits the
    decision once the winner is exported, parity-checked and deployed."""
    from candlecast.modeling import promotion

    return promotion.promote(pair, run_id, model_uri, commit=False, dry_run=dry_run)


def export(pair: PairConfig, decision: Decision | None = None) -> ExportedModel:
    """Export the decision's winner (or, with no decision, the current champion) to ONNX with
    its parity check. A winner that fails it is not served: the current champion, or on a
    stream without one the persistence baseline, is exported instead, the reason in the
    result's ``fallback`` (the run's summary), on the run and, once deployed, on the alias."""
    from candlecast.errors import ParityError
    from candlecast.modeling import onnx_export, promotion

    if decision is None:
        return onnx_export.export_champion(pair)
    try:
        exported = onnx_export.export_version(pair, decision.champion_version)
    except ParityError as exc:
        version, reason = promotion.parity_fallback(pair, decision, str(exc))
        fallback = onnx_export.export_version(pair, version)
        return fallback.model_copy(update={"fallback": reason})
    export_shadow(pair, decision)
    return exported


def export_shadow(pair: PairConfig, decision: Decision) -> str | None:
    """Export the decision's losing challenger to ONNX with its parity check, so the platform
    forecasts every candle with it in the shadow (issue 16). Returns its version, or None when
    there is none (it won, or a dry run) or it fails parity: a shadow is evidence, never a
    reason to stop serving the winner, so that failure is logged, not raised."""
    from candlecast.errors import ParityError
    from candlecast.modeling import onnx_export

    version = decision.challenger_version
    if not version or version == decision.champion_version:
        return None
    try:
        onnx_export.export_version(pair, version)
    except ParityError as exc:
        log.warning("%s: no shadow forecasts of v%s: %s", pair.stream.label, version, exc)
        return None
    return version


def export_version(pair: PairConfig, version: str) -> ExportedModel:
    """Export one registered version to ONNX with its parity check (a manual promotion's
    first step: nothing is aliased or served yet)."""
    from candlecast.modeling import onnx_export

    return onnx_export.export_version(pair, version)


def deploy(
    pair: PairConfig,
    exported: ExportedModel,
    decision: Decision | None = None,
    *,
    commit: Callable[[], object] | None = None,
) -> Deployed:
    """Deploy the exported model, smoke-test it on the latest online features, and only then
    make it champion (the ``decision``, or a manual move: ``commit``): the commit point of a
    promotion. On any failure the deployment is undone, so the previous champion stays
    champion and stays served."""
    from candlecast.modeling import promotion
    from candlecast.serving import deploy as bento_deploy
    from candlecast.serving.forecaster import Forecaster

    before = bento_deploy.deployed_tag(pair)
    tag = bento_deploy.deploy(pair, exported)
    try:
        forecast = Forecaster().predict(pair.symbol, pair.exchange, pair.timeframe)
        if decision is not None:
            promotion.commit_decision(pair, _served_decision(decision, exported))
        if commit is not None:
            commit()
    except BaseException:
        if tag != before:
            bento_deploy.undeploy(pair, tag)
        raise
    _announce(pair)
    scored = None
    if decision is not None and decision.window_end:
        since = datetime.fromisoformat(decision.window_end)
        scored = score(pair, since - timeframe_delta(pair.timeframe))
    return Deployed(tag, forecast, scored)


def _served_decision(decision: Decision, exported: ExportedModel) -> Decision:
    """The decision as served: its winner, or what the export fell back to (and why)."""
    if exported.fallback is None or exported.version == decision.champion_version:
        return decision
    return replace(
        decision, champion_version=exported.version, champion_kind=exported.kind,
        reason=exported.fallback,
    )  # fmt: skip


def _announce(pair: PairConfig) -> None:
    """Tell a running prediction service about new features or a new champion (never fails
    the caller: the service also checks periodically)."""
    from candlecast.serving import notify

    notify.announce(pair.stream)


#: The steps of :func:`backfill` and :func:`run_all`, in order, as ``on_step`` is told them.
BACKFILL_STEPS = ("ingest", "validate", "features")
RUN_STEPS = (
    *BACKFILL_STEPS,
    "materialize",
    "score",
    "train",
    "promote",
    "export",
    "deploy",
    "train targets",
)


def _quiet(step: str) -> None:
    """The default ``on_step``: nobody is told."""


def backfill(
    pair: PairConfig,
    start: datetime,
    end: datetime,
    docs: bool = True,
    on_step: Callable[[str], None] = _quiet,
) -> Backfilled:
    """Ingest, validate and compute features for a stretch (no training). Validation and
    features cover whatever ingestion fetched too: a catch-up from before ``start``, or on a
    fresh store the history the features and the training window need. ``on_step`` is told
    each of :data:`BACKFILL_STEPS` as it starts (a progress bar)."""
    on_step("ingest")
    fetched = ingest(pair, start, end)
    first = min(start, ms_to_datetime(fetched.start_ms))
    on_step("validate")
    checked = validate(pair, first, end, fetched.refetched, docs=docs)
    on_step("features")
    return Backfilled(fetched, checked, features(pair, first, end))


def candles_run(pair: PairConfig, start: datetime, end: datetime) -> CandlesRun:
    """One candles run in one process: ingest, validate (data docs only for a failed batch),
    features and materialize ``[start, end)``. What a sub-hourly stream's candles DAG runs as
    a single task, where four task processes per candle would cost more than the work."""
    filled = backfill(pair, start, end, docs=False)
    written = materialize(pair, start, end)
    return CandlesRun(filled, written, score(pair, start, end))


def run_all(
    pair: PairConfig, start: datetime, end: datetime, on_step: Callable[[str], None] = _quiet
) -> PipelineRun:
    """All stages in order, without Airflow (``candlecast run``). On a fresh data directory
    the ingest fetches the warm-up and training history first. ``on_step`` is told each of
    :data:`RUN_STEPS` as it starts."""
    filled = backfill(pair, start, end, on_step=on_step)
    on_step("materialize")
    online = materialize(pair, start, end)
    on_step("score")
    score(pair, start, end)
    on_step("train")
    trained = train(pair, end)
    on_step("promote")
    decision = promote(pair, trained.challenger.run_id, trained.challenger.model_uri)
    on_step("export")
    exported = export(pair, decision)
    on_step("deploy")
    deployed = deploy(pair, exported, decision)
    on_step("train targets")
    targets = train_targets(pair, end)
    return PipelineRun(filled, online, trained, decision, exported, deployed, targets)


def publish(pair: PairConfig, out: Path) -> dict[str, str]:
    """Copy the stream's exported champion (ONNX, its card inside, and ``export.json``) to
    ``out`` (the DVC-tracked ``models/<stream>/``)."""
    import hashlib

    import onnx

    from candlecast.modeling import registry
    from candlecast.modeling.onnx_export import ExportedModel

    settings = get_settings()
    registry.configure(settings)
    champion = registry.require_champion(registry.client(), pair.stream)
    folder = pair.stream.model_dir(settings.paths.models, champion.version)
    if not (folder / "model.onnx").exists():
        raise FileNotFoundError(f"{pair.stream.label}: champion v{champion.version} not exported")
    exported = ExportedModel.load(folder)
    out.mkdir(parents=True, exist_ok=True)
    # The published copy names its model relative to itself: an absolute path differs per
    # clone, so `dvc status` would never be clean. Nor does it name the MLflow run or the time
    # of the fit (a random id in a tracking store that is not published, and a clock): the
    # same data and code publish the same bytes, so a fresh clone's `dvc repro` leaves
    # dvc.lock as committed. The card inside the ONNX file is the published card too.
    card = exported.card.model_copy(update={"run_id": None, "trained_at": None})
    graph = card.embed(onnx.load(folder / "model.onnx"))
    onnx.save(graph, out / "model.onnx")
    digest = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    update = {"card": card, "path": "model.onnx", "onnx_sha256": digest}
    exported.model_copy(update=update).write(out)
    return {"version": str(champion.version), "out": str(out)}


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``Z`` or an offset; a naive time is UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def newest_candle_close(pair: PairConfig) -> datetime:
    """When the newest validated candle of the stream closed.

    Raises:
        MissingDataError: nothing validated yet.
    """
    from candlecast.data.ingestion import validated_table
    from candlecast.errors import MissingDataError
    from candlecast.timeframes import timeframe_ms

    last = validated_table(pair.stream).last_key()
    if last is None:
        raise MissingDataError(f"{pair.stream.label}: no validated candles to train on yet")
    return ms_to_datetime(last + timeframe_ms(pair.timeframe))


def last_complete_day(pair: PairConfig) -> tuple[datetime, datetime]:
    """The newest complete UTC day the stream has data for (its ``end``, or today)."""
    end = (pair.end or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=1), end


def configured_timeframes() -> list[str]:
    """Every timeframe a configured stream uses (each gets a Feast view)."""
    config = load_pairs(get_settings().pairs)
    return sorted({tf for p in config.pairs for tf in [p.timeframe, *p.data.derived_timeframes]})
