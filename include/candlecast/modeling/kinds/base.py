"""The model-kind interface: what every kind of forecaster implements.

Training, promotion, export and serving work with any :class:`ModelKind` through this
interface and never name a kind. A kind is a plug-in: a subclass registered by name
(:func:`candlecast.modeling.kinds.register`) with its own parameter schema.

Models predict the next candle's log return from feature rows. A kind whose ``window`` is
``n`` reads the last ``n`` feature rows per prediction (sequence models), flattened oldest
first into one input row of ``n * n_features`` values (:func:`window_inputs`); ``1`` is the
row of the candle that just closed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from candlecast.targets import Target

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


def input_names(features: list[str] | tuple[str, ...], window: int) -> list[str]:
    """Names of a ``window``-row kind's input columns: the features, or ``rsi_14@-2`` for the
    row two candles back (oldest first, as :func:`window_inputs` lays them out)."""
    if window == 1:
        return list(features)
    return [f"{name}@-{window - 1 - lag}" for lag in range(window) for name in features]


def window_inputs(
    frame: pd.DataFrame, features: list[str] | tuple[str, ...], window: int, step_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of a kind that reads the last ``window`` feature rows, and which rows have them.

    ``frame`` is one stream's feature rows sorted by ``candle_ts``. Row ``i``'s input is rows
    ``i - window + 1 .. i`` flattened oldest first (``window * len(features)`` values, the
    ONNX input layout), usable only when those rows are consecutive candles (no gap inside).

    Returns:
        ``(x, usable)``: ``x`` of shape ``(len(frame), window * n_features)`` (rows that are
        not usable hold zeros) and the boolean mask of usable rows.
    """
    import numpy as np

    rows = model_inputs(frame, features)
    if window == 1:
        return rows, np.ones(len(rows), dtype=bool)
    ts = frame["candle_ts"].to_numpy(dtype=np.int64)
    usable = np.zeros(len(rows), dtype=bool)
    span = (window - 1) * step_ms
    usable[window - 1 :] = ts[window - 1 :] - ts[: len(ts) - window + 1] == span
    x = np.zeros((len(rows), window * rows.shape[1]), dtype=np.float64)
    for lag in range(window):  # column block `lag` holds the row `window - 1 - lag` back
        shift = window - 1 - lag
        x[shift:, lag * rows.shape[1] : (lag + 1) * rows.shape[1]] = rows[: len(rows) - shift]
    x[~usable] = 0.0
    return x, usable


class ModelKind(ABC):
    """One kind of forecaster (LightGBM, persistence, ...), fitted or loaded.

    Subclasses set :attr:`name` and :attr:`Params`, and implement :meth:`fit`,
    :meth:`predict`, :meth:`log_model`, :meth:`load` and :meth:`to_onnx`.
    """

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = KindParams
    #: Names of the targets (:mod:`candlecast.targets`) this kind can forecast.
    targets: ClassVar[tuple[str, ...]] = ("return",)
    #: Trained as a challenger (False for baselines that are only scored).
    trainable: ClassVar[bool] = True
    #: Scored on every training run beside the challengers (persistence, drift).
    baseline: ClassVar[bool] = False
    #: Reads the higher timeframes' features too (``MULTI_TIMEFRAME_COLUMNS``).
    multi_timeframe: ClassVar[bool] = False
    #: Said in every answer the service gives from a champion of this kind.
    serving_note: ClassVar[str | None] = None

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        self.params = params if params is not None else self.Params()
        self.spec = InputSpec(tuple(features), self.window)

    @property
    def window(self) -> int:
        return 1

    @classmethod
    def for_target(
        cls,
        target: Target,
        timeframe: str,
        params: KindParams | None = None,
        features: list[str] | tuple[str, ...] = (),
    ) -> ModelKind:
        """An unfitted model of this kind for ``target`` on a ``timeframe`` stream: it reads
        ``features`` (its usual ones) plus the target's own (:meth:`Target.extra_features`)."""
        return cls([*features, *target.extra_features(timeframe)], params)

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
    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        """Log the fitted model to the active MLflow run under ``name``; returns its URI."""

    @classmethod
    def from_logged(cls, metadata: dict[str, Any], features: list[str], model_uri: str) -> Self:
        """An unfitted instance with the parameters a logged model recorded, after checking
        the record is of this kind on these features.

        Raises:
            ValueError: the logged model is another kind, or was fitted on other features.
        """
        logged = metadata.get("features")
        if metadata.get("kind") != cls.name or logged != list(features):
            raise ValueError(
                f"{model_uri} is a {metadata.get('kind')!r} model on features {logged}, "
                f"not {cls.name!r} on {list(features)}"
            )
        return cls(features, cls.parse_params(metadata.get("kind_params")))

    @classmethod
    @abstractmethod
    def load(cls, model_uri: str, features: list[str]) -> ModelKind:
        """The model logged at ``model_uri`` (by :meth:`log_model`)."""

    def feature_importance(self) -> dict[str, float] | None:
        """Importance of each input column, where the kind can tell (logged as a plot)."""
        return None

    @abstractmethod
    def to_onnx(self) -> Any:
        """An ONNX ``ModelProto`` with input :data:`ONNX_INPUT` (float32) and one output of
        shape ``[batch, 1]`` or ``[batch]``: the forecast return."""
