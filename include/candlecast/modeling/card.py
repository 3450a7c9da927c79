"""The model card: one typed record of a trained model's identity and facts.

Written once when a model is trained and gated, stored as the MLflow artifact ``card.json`` of
its run and in its ONNX model's metadata (``candlecast.card``), and read by export, deploy,
serving and monitoring: nothing downstream parses bare MLflow params or metadata dicts for
what a model is. ``ModelCard.model_validate_json`` refuses a card with unknown or missing
fields, so a rename breaks loudly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.modeling.mlflow_keys import CARD_ARTIFACT

if TYPE_CHECKING:
    from candlecast.names import Stream
    from candlecast.targets import Target

#: The ONNX metadata key that holds the card.
ONNX_KEY = "candlecast.card"
#: The MLflow artifact path of the card.
ARTIFACT = CARD_ARTIFACT
#: The sha256 of a served target model's ``model.onnx``, beside it (checked on every load).
SHA256_FILE = "model.onnx.sha256"
#: The card's shape; 2: interval calibrations carry a fitted sigma (1, ``sigma_feature``, is
#: still read, as the same computation); 3: the next-candle return model's fixed-width
#: interval and its training time (schemas 1 and 2 are read, without them); 4: the end of the
#: training window (``interval_end``; a card of schemas 1 to 3 reads with it empty, and
#: :mod:`.version_card` fills it in from its run); 5: interval calibrations may carry volatility
#: bins (``bin_column``, ``bin_edges``, ``bin_multipliers``; older ones read without them).
SCHEMA_VERSION = 5
#: The schemas this candlecast reads.
READABLE_SCHEMAS = (1, 2, 3, 4, SCHEMA_VERSION)


class IntervalCalibration(BaseModel):
    """How a return forecast becomes intervals: ``forecast +- multiplier * sigma``, one
    multiplier per level (normalized conformal scores of the holdout), sigma the square root
    of :func:`~candlecast.evaluation.interval_sigma.horizon_variance` of the row's ``columns``
    with these ``weights`` and ``intercept`` (the forecast of the horizon's realized variance
    the multipliers were calibrated with); ACI moves the level online from there.

    With bins (group-conditional conformal, :mod:`candlecast.evaluation.intervals`), a row's
    multipliers are those of its bin: ``bin_column``'s value against ``bin_edges`` (the
    training rows' terciles) picks one of ``bin_multipliers`` (each bin's holdout quantiles),
    and ACI runs per bin. Without (a calibration before schema 5), ``multipliers`` serve every
    row.

    A schema 1 calibration (``sigma_feature``: sigma ``sqrt(h * feature)``) is read as the
    same computation in this form (weight 1, intercept ``log h``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="How sigma is forecast ('qlike_log_linear', 'ewma')")
    columns: list[str]
    weights: list[float]
    intercept: float
    multipliers: dict[str, float] = Field(description="Level ('0.9') -> normalized half-width")
    holdout_coverage: dict[str, float] = Field(default_factory=dict)
    bin_column: str | None = Field(default=None, description="The feature rows are binned by")
    bin_edges: list[float] = Field(default_factory=list)
    bin_multipliers: list[dict[str, float]] = Field(
        default_factory=list, description="Per bin (lowest first): level -> half-width"
    )

    @model_validator(mode="before")
    @classmethod
    def _schema_1(cls, data: Any) -> Any:
        return _upgraded_calibration(data, 1)

    @model_validator(mode="after")
    def _aligned(self) -> IntervalCalibration:
        if not self.columns or len(self.columns) != len(self.weights):
            raise ValueError(
                f"interval calibration: {len(self.weights)} weights for columns {self.columns}"
            )
        if (self.bin_column is None) != (not self.bin_multipliers) or (
            self.bin_multipliers and len(self.bin_multipliers) != len(self.bin_edges) + 1
        ):
            raise ValueError(
                f"interval calibration: {len(self.bin_multipliers)} bins' multipliers for "
                f"{len(self.bin_edges)} edges of {self.bin_column!r}"
            )
        if any(set(m) != set(self.multipliers) for m in self.bin_multipliers):
            raise ValueError("interval calibration: a bin lacks a level of the multipliers")
        return self

    @property
    def inputs(self) -> list[str]:
        """The features a row needs: the sigma's columns, then the bin column if another."""
        extra = self.bin_column
        return [*self.columns, extra] if extra and extra not in self.columns else self.columns

    def bins(self, column: Any) -> Any:
        """Each row's volatility bin (0 lowest) from its :attr:`bin_column` value: the bin
        these edges put it in when the holdout was calibrated
        (:func:`~candlecast.evaluation.intervals.volatility_bins`). Serving, scoring and
        monitoring bin rows through here, never against the edges themselves."""
        import numpy as np

        from candlecast.evaluation.intervals import volatility_bins

        return volatility_bins(np.asarray(column, np.float64), self.bin_edges)

    def bin_of(self, values: Any) -> int | None:
        """The bin of a row of :attr:`inputs` values (None without bins)."""
        if self.bin_column is None:
            return None
        import numpy as np

        value = np.asarray(values, np.float64)[self.inputs.index(self.bin_column)]
        return int(self.bins([value])[0])

    def row_multipliers(self, values: Any, level: str) -> Any:
        """Each row's multiplier at ``level`` (rows of :attr:`inputs` values): its volatility
        bin's, or the one multiplier without bins."""
        import numpy as np

        rows = np.asarray(values, np.float64)
        if self.bin_column is None:
            return np.full(len(rows), self.multipliers[level])
        bins = self.bins(rows[:, self.inputs.index(self.bin_column)])
        per_bin = np.array([m[level] for m in self.bin_multipliers])
        return per_bin[np.minimum(bins, len(per_bin) - 1)]

    def for_bin(self, number: int | None) -> IntervalCalibration:
        """This calibration as bin ``number``'s rows use it: its multipliers are the bin's
        (None: unchanged)."""
        if number is None:
            return self
        return self.model_copy(update={"multipliers": dict(self.bin_multipliers[number])})

    def sigma(self, values: Any) -> Any:
        """Sigma of each row of ``values`` (an array of rows x :attr:`columns`, or of
        :attr:`inputs`: the sigma reads the first columns)."""
        import numpy as np

        from candlecast.evaluation.interval_sigma import horizon_variance

        rows = np.asarray(values, np.float64)[:, : len(self.columns)]
        return np.sqrt(horizon_variance(rows, self.weights, self.intercept))


def _upgraded_calibration(data: Any, horizon: int) -> Any:
    """A schema 1 calibration (``sigma_feature``) in today's form; anything else unchanged."""
    if not isinstance(data, dict) or "sigma_feature" not in data:
        return data
    rest = {k: v for k, v in data.items() if k != "sigma_feature"}
    return {
        "source": "ewma",
        "columns": [data["sigma_feature"]],
        "weights": [1.0],
        "intercept": math.log(horizon),
        **rest,
    }


def identity(stream: Stream, target: Target, registered_model: str) -> dict[str, Any]:
    """A card's identity fields: which stream, what it forecasts, under which MLflow name
    (every card is built from them, by training, the declared targets and older runs)."""
    return {
        "stream": stream.key,
        "exchange": stream.exchange,
        "symbol": stream.symbol,
        "timeframe": stream.timeframe,
        "target": target.name,
        "horizon": target.horizon,
        "target_key": target.key,
        "outputs": list(target.outputs),
        "registered_model": registered_model,
    }


class ModelCard(BaseModel):
    """What a model is and how good it was shown to be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    stream: str
    exchange: str
    symbol: str
    timeframe: str
    target: str
    horizon: int
    target_key: str
    outputs: list[str]
    kind: str
    kind_params: dict[str, Any] = Field(default_factory=dict)
    registered_model: str
    version: str | None = None
    run_id: str | None = None
    features: list[str]
    window: int = 1
    #: The learned kind's way back from its fit space (volatility: log smearing factor).
    correction: float = 0.0
    train_start: str
    train_end: str
    holdout_start: str
    holdout_end: str
    #: The end of the training window (ISO time, exclusive): the data interval the training
    #: ran for, which the gate's decision holds from and monitoring's reference window ends at.
    #: ``holdout_end`` is the last row's time, before it. Empty on a card of schema 3 or older.
    interval_end: str
    data_version: str
    #: Holdout scores of this model, and of the baseline it was judged against.
    scores: dict[str, float]
    baseline: str
    baseline_scores: dict[str, float]
    #: The gate's decision in words (why this model is served).
    decision: str
    note: str | None = None
    intervals: IntervalCalibration | None = None
    #: A fixed-width split-conformal interval (the next-candle return pipeline's): the
    #: forecast +- ``interval_half_width`` covers ``interval_coverage`` of the holdout.
    interval_coverage: float | None = None
    interval_half_width: float | None = None
    #: When the served fit finished (ISO time).
    trained_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _schema_1(cls, data: Any) -> Any:
        """An older card in today's form: a schema 1 calibration's ``sqrt(h * feature)`` needs
        the card's horizon; a card before schema 4 has no ``interval_end`` (empty until its
        run's is filled in). A schema 4 card without one is refused."""
        if not isinstance(data, dict):
            return data
        version = data.get("schema_version", 1)
        if version not in READABLE_SCHEMAS:
            raise ValueError(
                f"model card schema {version}: this candlecast reads schemas "
                f"{', '.join(map(str, READABLE_SCHEMAS))}; upgrade candlecast or retrain the model"
            )
        upgraded = {**data, "schema_version": SCHEMA_VERSION}
        if version < 4:
            upgraded.setdefault("interval_end", "")
        if version == 1:
            horizon = int(data.get("horizon", 1))
            upgraded["intervals"] = _upgraded_calibration(data.get("intervals"), horizon)
        return upgraded

    def with_version(self, version: str, run_id: str | None = None) -> ModelCard:
        return self.model_copy(update={"version": version, "run_id": run_id or self.run_id})

    def embed(self, model: Any) -> Any:
        """``model`` (an ONNX ModelProto) with this card in its metadata."""
        for prop in list(model.metadata_props):
            if prop.key == ONNX_KEY:
                model.metadata_props.remove(prop)
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_KEY, self.model_dump_json()
        return model

    @classmethod
    def from_onnx(cls, model: Any) -> ModelCard:
        """The card embedded in an ONNX ModelProto or an onnxruntime session's metadata.

        Raises:
            ValueError: the model carries no card.
        """
        props = getattr(model, "metadata_props", None)
        if props is not None and not isinstance(props, dict):
            found = {p.key: p.value for p in props}
        else:
            found = dict(model.get_modelmeta().custom_metadata_map)
        if ONNX_KEY not in found:
            raise ValueError("the ONNX model carries no candlecast model card")
        return cls.model_validate_json(found[ONNX_KEY])
