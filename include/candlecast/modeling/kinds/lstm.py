"""LSTM over the last ``window`` feature rows (the Make Us Rich design).

A stacked LSTM reads the standardised sequence of candles and a linear head maps its last
state to the next candle's log return; early stopping on a chronological validation fold.
The scaler is part of the network (see :mod:`.torch_nets`), so the ONNX graph takes raw
feature windows exactly as :func:`~.base.window_inputs` builds them.

Also home of :class:`TorchWindowKind`, what every PyTorch sequence kind shares (fit, predict,
MLflow, ONNX); a kind adds its parameters and :meth:`~TorchWindowKind.build_net`. PyTorch is
imported only inside methods, from :mod:`.torch_nets`, so the registry stays cheap to import.
Fits run on a GPU when one is present and on one CPU thread otherwise (see
:data:`.torch_nets.TORCH_THREADS`); predictions and exports always run on the CPU.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from pydantic import Field

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.base import KindParams, ModelKind

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from candlecast.modeling.kinds.torch_nets import WindowNet


class TorchParams(KindParams):
    """Parameters every PyTorch sequence kind has: the window and how it is trained."""

    window: int = Field(default=24, ge=1, le=512)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    epochs: int = Field(default=30, gt=0)
    batch_size: int = Field(default=64, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    seed: int = 42
    #: Epochs without a better validation loss before training stops.
    patience: int = Field(default=3, gt=0)
    #: The last share of the training rows (chronological) that early stopping watches.
    validation_fraction: float = Field(default=0.15, ge=0.05, le=0.5)


class TorchWindowKind(ModelKind):
    """A PyTorch network over flattened windows; subclasses set ``Params`` and build the net."""

    Params = TorchParams

    def __init__(self, features: list[str] | tuple[str, ...], params: KindParams | None = None):
        super().__init__(features, params)
        self.net: WindowNet | None = None

    @property
    def hyper(self) -> TorchParams:
        """The parameters, typed."""
        params = self.params
        if not isinstance(params, self.Params) or not isinstance(params, TorchParams):
            raise TypeError(f"{self.name} needs {self.Params.__name__}, got {params!r}")
        return params

    @property
    def window(self) -> int:
        return self.hyper.window

    @abstractmethod
    def build_net(self) -> WindowNet:
        """A fresh, untrained network for this kind's features and parameters."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit on windows ``x`` (:func:`~.base.window_inputs` rows) and next returns ``y``."""
        from candlecast.modeling.kinds import torch_nets

        self.net = torch_nets.fit_net(self.build_net, x, y, self.hyper)

    def predict(self, x: np.ndarray) -> np.ndarray:
        from candlecast.modeling.kinds import torch_nets

        return torch_nets.predict_net(self._fitted(), x)

    def log_model(self, input_example: pd.DataFrame, name: str = "model") -> str:
        from candlecast.modeling.kinds import torch_nets

        metadata = {
            "kind": self.name,
            "kind_params": self.hyper.model_dump(),
            "features": list(self.spec.features),
        }
        return torch_nets.log_net(self._fitted(), input_example.to_numpy(), metadata, name)

    @classmethod
    def load(cls, model_uri: str, features: list[str]) -> TorchWindowKind:
        """The kind logged at ``model_uri``, rebuilt from its parameters and weights.

        Raises:
            ValueError: the logged model is another kind or was fitted on other features.
        """
        from candlecast.modeling.kinds import torch_nets

        state, metadata = torch_nets.load_net(model_uri)
        loaded = cls.from_logged(metadata, features, model_uri)
        net = loaded.build_net()
        net.load_state_dict(state)
        loaded.net = net.eval()
        return loaded

    def to_onnx(self) -> Any:
        from candlecast.modeling.kinds import torch_nets

        return torch_nets.to_onnx(self._fitted())

    def _fitted(self) -> WindowNet:
        if self.net is None:
            raise RuntimeError(f"{self.name} model is not fitted or loaded")
        return self.net


class LSTMParams(TorchParams):
    """Make Us Rich used 2 layers of 128 units and AdamW at 1e-4; hourly returns on a few
    thousand rows need far fewer units, and 1e-3 reaches the best validation loss within the
    few epochs early stopping allows."""

    hidden_size: int = Field(default=32, gt=0)
    num_layers: int = Field(default=2, ge=1, le=4)


@register
class LSTM(TorchWindowKind):
    name = "lstm"
    Params = LSTMParams

    def build_net(self) -> WindowNet:
        from candlecast.modeling.kinds.torch_nets import LSTMNet

        params = self.hyper
        assert isinstance(params, LSTMParams)
        return LSTMNet(
            len(self.spec.features),
            params.window,
            params.hidden_size,
            params.num_layers,
            params.dropout,
        )
