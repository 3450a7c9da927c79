"""The metrics table: every check's figures, per-feature drift and retrain requests.

SQLite under the data directory by default, PostgreSQL in production
(``CANDLECAST_METRICS_URL``, e.g. ``postgresql+psycopg://user:pw@postgres/monitoring``), through
SQLAlchemy Core so the same statements run on both. Grafana's Postgres datasource reads these
tables; the Prometheus exporter serves their latest rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from candlecast.monitoring.aci import AciReport
from candlecast.monitoring.settings import get_monitoring_settings

METADATA = sa.MetaData()

CHECKS = sa.Table(
    "monitoring_checks",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(120), nullable=False, index=True),
    sa.Column("checked_at", sa.BigInteger, nullable=False),  # unix ms, wall clock
    sa.Column("as_of", sa.BigInteger, nullable=False),  # unix ms, end of the current window
    sa.Column("champion_version", sa.String(20)),
    sa.Column("features", sa.Integer, nullable=False),
    sa.Column("drifted_features", sa.Integer, nullable=False),
    sa.Column("drift_share", sa.Float),
    sa.Column("drift_detected", sa.Boolean, nullable=False),
    sa.Column("prediction_drift_score", sa.Float),
    sa.Column("prediction_drifted", sa.Boolean),
    sa.Column("forecasts_logged", sa.Integer, nullable=False),
    sa.Column("forecasts_realized", sa.Integer, nullable=False),
    sa.Column("rmse_ratio", sa.Float),
    sa.Column("mae_ratio", sa.Float),
    sa.Column("directional_accuracy", sa.Float),
    sa.Column("majority_rate", sa.Float),
    sa.Column("coverage", sa.Float),
    sa.Column("feature_staleness_s", sa.Float),
    sa.Column("retrain", sa.Boolean, nullable=False),
    sa.Column("rate_limited", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("report_path", sa.Text),
)

FEATURE_DRIFT = sa.Table(
    "monitoring_feature_drift",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("feature", sa.String(120), nullable=False),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
)

TARGET_CHECKS = sa.Table(
    "candlecast_target_checks",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),  # target key: volatility_h24
    sa.Column("version", sa.String(20)),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("forecasts", sa.Integer, nullable=False),
    sa.Column("metric", sa.String(20), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("persistence", sa.Float),
    sa.Column("ratio", sa.Float),
    sa.Column("coverage_90", sa.Float),
)

# tables added after ``candlecast_target_checks``: new tables, so an existing store gains them
# on first use (``create_all``) where a new column would need a migration
TARGET_NEWEST = sa.Table(
    "candlecast_target_newest",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("forecast", sa.Float, nullable=False),  # annualized volatility, or log return
    sa.Column("realized", sa.Float, nullable=False),
)

TARGET_ACI = sa.Table(
    "candlecast_target_aci",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),  # nominal coverage: 0.9
    sa.Column("alpha", sa.Float, nullable=False),  # ACI's miss level: 1 - the level in use
    sa.Column("multiplier", sa.Float, nullable=False),
    sa.Column("judged", sa.Integer, nullable=False),
    sa.Column("misses", sa.Integer, nullable=False),
)

SHADOW_CHECKS = sa.Table(
    "candlecast_shadow_checks",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("version", sa.String(20), nullable=False),  # the shadow challenger
    sa.Column("champions", sa.String(200), nullable=False),  # who served those rows: "3/4"
    sa.Column("forecasts", sa.Integer, nullable=False),  # realized rows both forecast
    sa.Column("rmse_ratio", sa.Float),  # the shadow's realized RMSE over persistence's
    sa.Column("champion_rmse_ratio", sa.Float),
    sa.Column("rmse_vs_champion", sa.Float),  # below 1: the shadow is better
    sa.Column("p_value", sa.Float),  # the gate's test, its largest p-value over the metrics
    sa.Column("judged", sa.Boolean, nullable=False),  # at least min_forecasts rows
    sa.Column("beats", sa.Boolean, nullable=False),  # passed the gate: a retrain reason
)

#: Each other target's realized figures from the platform's logged forecasts: the stream as
#: served (``served``: each row by the version in force for it; ``version`` the champion at the
#: window's end) and each version on its own rows.
TARGET_VERSIONS = sa.Table(
    "candlecast_target_versions",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("version", sa.String(20), nullable=False),
    sa.Column("served", sa.Boolean, nullable=False),
    sa.Column("forecasts", sa.Integer, nullable=False),  # realized rows
    sa.Column("judged", sa.Boolean, nullable=False),  # at least min_forecasts rows
    sa.Column("metric", sa.String(20), nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("ratio", sa.Float),  # over persistence's on the same rows
    sa.Column("coverage_90", sa.Float),
)

#: Each other target's shadow challengers against the target as served on the same realized
#: rows, by the target gate's rule (``metric``: the target's primary score).
TARGET_SHADOWS = sa.Table(
    "candlecast_target_shadows",
    METADATA,
    sa.Column("check_id", sa.Integer, sa.ForeignKey(CHECKS.c.id), nullable=False, index=True),
    sa.Column("stream", sa.String(120), nullable=False),
    sa.Column("checked_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("version", sa.String(20), nullable=False),  # the shadow challenger
    sa.Column("champions", sa.String(200), nullable=False),  # who served those rows: "3/4"
    sa.Column("forecasts", sa.Integer, nullable=False),  # realized rows both forecast
    sa.Column("metric", sa.String(20), nullable=False),
    sa.Column("ratio", sa.Float),  # the shadow's primary score over persistence's
    sa.Column("champion_ratio", sa.Float),
    sa.Column("vs_champion", sa.Float),  # the shadow's over the champion's: below 1 is better
    sa.Column("p_value", sa.Float),  # the target gate's one-sided test
    sa.Column("judged", sa.Boolean, nullable=False),  # at least min_forecasts rows
    sa.Column("beats", sa.Boolean, nullable=False),  # passed the gate: a retrain reason
)

RETRAIN_REQUESTS = sa.Table(
    "monitoring_retrain_requests",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(120), nullable=False, index=True),
    sa.Column("requested_at", sa.BigInteger, nullable=False),  # unix ms
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("check_id", sa.Integer),
)


@dataclass(frozen=True)
class CheckRow:
    """One check's figures, as stored (None: not measured)."""

    stream: str
    checked_at: int
    as_of: int
    champion_version: str | None
    features: int
    drifted_features: int
    drift_share: float | None
    drift_detected: bool
    prediction_drift_score: float | None
    prediction_drifted: bool | None
    forecasts_logged: int
    forecasts_realized: int
    rmse_ratio: float | None
    mae_ratio: float | None
    directional_accuracy: float | None
    majority_rate: float | None
    coverage: float | None
    feature_staleness_s: float | None
    retrain: bool
    rate_limited: bool
    reason: str
    report_path: str | None = None


@dataclass(frozen=True)
class FeatureRow:
    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class TargetRow:
    """One (target, horizon)'s realized figures in a check."""

    target: str
    version: str | None
    kind: str
    forecasts: int
    metric: str
    score: float | None
    persistence: float | None
    ratio: float | None
    coverage_90: float | None


@dataclass(frozen=True)
class TargetVersionRow:
    """A target's realized figures from the logged forecasts in a check: as served
    (``served``) or of one version's own rows."""

    target: str
    version: str
    served: bool
    forecasts: int
    judged: bool
    metric: str
    score: float | None
    ratio: float | None
    coverage_90: float | None


@dataclass(frozen=True)
class NewestRow:
    """A target's newest realized forecast beside its outcome, in the answer's units."""

    target: str
    forecast: float
    realized: float


@dataclass(frozen=True)
class ShadowRow:
    """A shadow challenger against the champion as served, on the same realized rows (None:
    not measurable yet)."""

    version: str
    champions: str
    forecasts: int
    rmse_ratio: float | None
    champion_rmse_ratio: float | None
    rmse_vs_champion: float | None
    p_value: float | None
    judged: bool
    beats: bool


@dataclass(frozen=True)
class TargetShadowRow:
    """One of another target's shadow challengers against the target as served (None: not
    measurable yet)."""

    target: str
    version: str
    champions: str
    forecasts: int
    metric: str
    ratio: float | None
    champion_ratio: float | None
    vs_champion: float | None
    p_value: float | None
    judged: bool
    beats: bool


@dataclass(frozen=True)
class TargetDetails:
    """What a check stores per target besides its realized figures, and its shadows."""

    newest: list[NewestRow]
    aci: list[AciReport]
    shadows: list[ShadowRow] = field(default_factory=list)
    versions: list[TargetVersionRow] = field(default_factory=list)
    target_shadows: list[TargetShadowRow] = field(default_factory=list)


class MetricsStore:
    """Reads and writes the metrics tables at a SQLAlchemy URL (created on first use)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or get_monitoring_settings().database_url()
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(self.url)
        METADATA.create_all(self.engine)

    def write_check(
        self,
        row: CheckRow,
        features: list[FeatureRow],
        targets: list[TargetRow] | None = None,
        details: TargetDetails | None = None,
    ) -> int:
        """Store one check, its per-feature drift and its targets' figures; returns its id."""
        with self.engine.begin() as db:
            inserted = db.execute(sa.insert(CHECKS).values(**asdict(row))).inserted_primary_key
            check_id = int(inserted[0]) if inserted else 0
            common = {"check_id": check_id, "stream": row.stream, "checked_at": row.checked_at}
            tables: list[tuple[sa.Table, list[Any]]] = [
                (FEATURE_DRIFT, features),
                (TARGET_CHECKS, targets or []),
                (TARGET_NEWEST, details.newest if details else []),
                (TARGET_ACI, details.aci if details else []),
                (SHADOW_CHECKS, details.shadows if details else []),
                (TARGET_VERSIONS, details.versions if details else []),
                (TARGET_SHADOWS, details.target_shadows if details else []),
            ]
            for table, rows in tables:
                if rows:
                    db.execute(sa.insert(table), [common | asdict(r) for r in rows])
        return check_id

    def target_details(self, check_id: int) -> TargetDetails:
        """The targets' newest realized forecasts and ACI states, and the shadow challengers'
        figures, of one check."""
        return TargetDetails(
            newest=self._rows(TARGET_NEWEST, NewestRow, check_id),
            aci=self._rows(TARGET_ACI, AciReport, check_id),
            shadows=self._rows(SHADOW_CHECKS, ShadowRow, check_id),
            versions=self._rows(TARGET_VERSIONS, TargetVersionRow, check_id),
            target_shadows=self._rows(TARGET_SHADOWS, TargetShadowRow, check_id),
        )

    def _rows(self, table: sa.Table, cls: Any, check_id: int) -> list[Any]:
        names = [f.name for f in fields(cls)]
        query = sa.select(table).where(table.c.check_id == check_id)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(*[table.c[n] for n in names[:2]]))
            return [cls(**{n: row._mapping[n] for n in names}) for row in rows]

    def target_checks(self, check_id: int) -> list[TargetRow]:
        """The targets' figures of one check."""
        query = sa.select(TARGET_CHECKS).where(TARGET_CHECKS.c.check_id == check_id)
        names = [f.name for f in fields(TargetRow)]
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(TARGET_CHECKS.c.target))
            return [TargetRow(**{n: row._mapping[n] for n in names}) for row in rows]

    def checks(self, stream: str | None = None) -> list[CheckRow]:
        """Every stored check (of ``stream``), oldest first."""
        query = sa.select(CHECKS).order_by(CHECKS.c.checked_at, CHECKS.c.id)
        if stream is not None:
            query = query.where(CHECKS.c.stream == stream)
        names = [f.name for f in fields(CheckRow)]
        with self.engine.connect() as db:
            return [CheckRow(**{n: row._mapping[n] for n in names}) for row in db.execute(query)]

    def recent_checks(self, per_stream: int) -> list[CheckRow]:
        """The newest ``per_stream`` checks of every stream, by stream, newest first."""
        rank = (
            sa.func.row_number()
            .over(
                partition_by=CHECKS.c.stream,
                order_by=(CHECKS.c.checked_at.desc(), CHECKS.c.id.desc()),
            )
            .label("rank")
        )
        ranked = sa.select(CHECKS, rank).subquery()
        query = (
            sa.select(ranked)
            .where(ranked.c.rank <= per_stream)
            .order_by(ranked.c.stream, ranked.c.rank)
        )
        names = [f.name for f in fields(CheckRow)]
        with self.engine.connect() as db:
            return [CheckRow(**{n: row._mapping[n] for n in names}) for row in db.execute(query)]

    def latest_checks(self) -> dict[str, tuple[int, CheckRow]]:
        """The newest check per stream, with its id."""
        newest = (
            sa.select(CHECKS.c.stream, sa.func.max(CHECKS.c.id).label("id"))
            .group_by(CHECKS.c.stream)
            .subquery()
        )
        query = sa.select(CHECKS).join(newest, CHECKS.c.id == newest.c.id)
        names = [f.name for f in fields(CheckRow)]
        with self.engine.connect() as db:
            return {
                row.stream: (row.id, CheckRow(**{n: row._mapping[n] for n in names}))
                for row in db.execute(query)
            }

    def feature_drift(self, check_id: int) -> list[FeatureRow]:
        query = sa.select(FEATURE_DRIFT).where(FEATURE_DRIFT.c.check_id == check_id)
        names = [f.name for f in fields(FeatureRow)]
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(FEATURE_DRIFT.c.feature))
            return [FeatureRow(**{n: row._mapping[n] for n in names}) for row in rows]

    def last_retrain_request(self, stream: str, until: datetime | None = None) -> datetime | None:
        """The data time of the stream's newest drift-triggered retrain request (the check's
        ``as_of``), among those at or before ``until`` when given."""
        query = sa.select(sa.func.max(RETRAIN_REQUESTS.c.requested_at)).where(
            RETRAIN_REQUESTS.c.stream == stream
        )
        if until is not None:
            query = query.where(RETRAIN_REQUESTS.c.requested_at <= int(until.timestamp() * 1000))
        with self.engine.connect() as db:
            found = db.execute(query).scalar()
        return None if found is None else datetime.fromtimestamp(found / 1000, UTC)

    def record_retrain_request(
        self, stream: str, at: datetime, reason: str, check_id: int | None = None
    ) -> None:
        values = {
            "stream": stream,
            "requested_at": int(at.timestamp() * 1000),
            "reason": reason,
            "check_id": check_id,
        }
        with self.engine.begin() as db:
            db.execute(sa.insert(RETRAIN_REQUESTS).values(**values))

    def retrain_requests(self, stream: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(RETRAIN_REQUESTS).order_by(RETRAIN_REQUESTS.c.requested_at)
        if stream is not None:
            query = query.where(RETRAIN_REQUESTS.c.stream == stream)
        with self.engine.connect() as db:
            return [dict(row._mapping) for row in db.execute(query)]
