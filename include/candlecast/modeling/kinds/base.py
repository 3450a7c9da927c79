"""The model-kind interface: what every kind of forecaster implements.

Training, promotion, export and serving work with any :class:`ModelKind` through this
interface and never name a kind. A kind is a plug-in: a subclass registered by name
(:func:`candlecast.modeling.kinds.register`) with its own parameter schema.

Models predict the next candle's log return from feature rows. A kind whose ``window`` is
``n`` reads the last ``n`` feature rows per prediction (sequence models); ``1`` is the row of
the candle that just closed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: The ONNX input every exported kind takes: float32 ``[batch, window * n_features]``.
ONNX_INPUT = "features"
#: What onnxmltools converts to and the pinned onnxruntime reads (IR 8 covers opset 15).
TARGET_OPSET = 15
IR_VERSION = 8


class KindParams(BaseModel):
    """Base of every kind's parameters: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class InputSpec:
    """What a model reads: these feature columns, over the last ``window`` rows."""

    features: tuple[str, ...]
    window: int = 1


def model_inputs(frame: pd.DataFrame, features: list[str] | tuple[str, ...]) -> np.ndarray:
    """The model input matrix: float32 values (what the ONNX model receives), held as float64
    for the native libraries, so native and ONNX forecasts see identical numbers."""
    import numpy as np

    return frame[list(features)].to_numpy(dtype=np.float32).astype(np.float64)


class ModelKind(ABC):
    """One kind of forecaster (LightGBM, persistence, ...), fitted or loaded.

    Subclasses set :attr:`name` and :attr:`Params`, and implement :meth:`fit`,
    :meth:`predict`, :meth:`log_model`, :meth:`load` and :meth:`to_onnx`.
    """

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = KindParams
    #: Trained as a challenger (False for baselines that are only scored).
    trainable: ClassVar[bool] = True
    #: Said in every answer the service gives from a champion of this kind.
    serving_note: ClassVar[str | None] = None

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        self.params = params if params is not None else self.Params()
        self.spec = InputSpec(tuple(features), self.window)

    @property
    def window(self) -> int:
        return 1

    @classmethod
    def parse_params(cls, raw: dict[str, Any] | None) -> KindParams:
        """Validate parameters from the config (pydantic errors name the key)."""
        return cls.Params.model_validate(raw or {})

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit on inputs ``x`` (:func:`model_inputs` rows) and next-candle returns ``y``."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Forecast returns for rows ``x``: float64 of shape ``(n,)``."""

    @abstractmethod
    def log_model(self, input_example: pd.DataFrame) -> str:
        """Log the fitted model to the active MLflow run; returns its model URI."""

    @classmethod
    @abstractmethod
    def load(cls, model_uri: str, features: list[str]) -> ModelKind:
        """The model logged at ``model_uri`` (by :meth:`log_model`)."""

    @abstractmethod
    def to_onnx(self) -> Any:
        """An ONNX ``ModelProto`` with input :data:`ONNX_INPUT` (float32) and one output of
        shape ``[batch, 1]`` or ``[batch]``: the forecast return."""
