"""The model card: one typed record of a trained model's identity and facts.

Written once when a model is trained and gated, stored as the MLflow artifact ``card.json`` of
its run and in its ONNX model's metadata (``candlecast.card``), and read by export, deploy,
serving and monitoring: nothing downstream parses bare MLflow params or metadata dicts for
what a model is. ``ModelCard.model_validate_json`` refuses a card with unknown or missing
fields, so a rename breaks loudly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The ONNX metadata key that holds the card.
ONNX_KEY = "candlecast.card"
#: The MLflow artifact path of the card.
ARTIFACT = "card.json"
#: The sha256 of a served target model's ``model.onnx``, beside it (checked on every load).
SHA256_FILE = "model.onnx.sha256"


class IntervalCalibration(BaseModel):
    """How a return forecast becomes intervals: ``forecast +- multiplier * sigma``, sigma
    ``sqrt(h * <sigma_feature>)`` of the row, one multiplier per level (normalized conformal
    scores of the holdout); ACI moves the level online from there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sigma_feature: str
    multipliers: dict[str, float] = Field(description="Level ('0.9') -> normalized half-width")
    holdout_coverage: dict[str, float] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """What a model is and how good it was shown to be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
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
    data_version: str
    #: Holdout scores of this model, and of the baseline it was judged against.
    scores: dict[str, float]
    baseline: str
    baseline_scores: dict[str, float]
    #: The gate's decision in words (why this model is served).
    decision: str
    note: str | None = None
    intervals: IntervalCalibration | None = None

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
