"""LightGBM regressor of the next candle's log return."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import (
    IR_VERSION,
    ONNX_INPUT,
    TARGET_OPSET,
    KindParams,
    ModelKind,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class LightGBMParams(KindParams):
    """Defaults are deliberately conservative: hourly returns are mostly noise, and a model
    that shrinks towards "no change" is the only kind with a chance to beat persistence."""

    n_estimators: int = Field(default=200, gt=0)
    learning_rate: float = Field(default=0.005, gt=0)
    num_leaves: int = Field(default=4, gt=1)
    min_child_samples: int = Field(default=300, gt=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=50.0, ge=0)
    seed: int = 42


@register
class LightGBM(ModelKind):
    name = "lightgbm"
    Params = LightGBMParams

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        super().__init__(features, params)
        self.model: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        import lightgbm as lgb

        params = self.params.model_dump()
        seed = params.pop("seed")
        self.model = lgb.LGBMRegressor(
            **params,
            subsample_freq=1,
            random_state=seed,
            deterministic=True,
            force_row_wise=True,
            n_jobs=2,
            verbose=-1,
        )
        self.model.fit(x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.asarray(self._fitted().predict(x), dtype=np.float64).reshape(-1)

    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        import mlflow
        from mlflow.models import infer_signature

        from candlecast.modeling.registry import pip_requirements

        predicted = self.predict(input_example.to_numpy())
        info = mlflow.lightgbm.log_model(
            self._fitted(),
            name=name,
            signature=infer_signature(input_example, predicted),
            input_example=input_example.head(3),
            pip_requirements=pip_requirements("lightgbm", "scikit-learn"),
        )
        return str(info.model_uri)

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> LightGBM:
        import mlflow

        loaded = cls(features)
        loaded.model = mlflow.lightgbm.load_model(model_uri)
        return loaded

    def feature_importance(self) -> dict[str, float] | None:
        """Total split gain per feature."""
        booster = self._fitted().booster_
        gains = booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.spec.features, gains, strict=True)}

    def to_onnx(self) -> Any:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        converted = convert_lightgbm(
            self._fitted(),
            initial_types=[(ONNX_INPUT, FloatTensorType([None, len(self.spec.features)]))],
            target_opset=TARGET_OPSET,
            zipmap=False,
        )
        converted.ir_version = min(converted.ir_version, IR_VERSION)
        return converted

    def _fitted(self) -> Any:
        if self.model is None:
            raise RuntimeError("lightgbm model is not fitted or loaded")
        return self.model
