"""CNN-Transformer over the last ``window`` feature rows (the WasiuNet design, adapted).

Each candle's features pass a feed-forward layer, a 1D convolution mixes neighbouring
candles, a strided convolution cuts the sequence into patches of ``patch_size`` candles, and
a small Transformer encoder reads the patches. Two heads share it: the next log return and
the direction (up or not); training minimises MSE on the return plus ``direction_weight`` x
binary cross-entropy on the direction (WasiuNet weighed price and direction 0.5 / 0.5).
Forecasts and the ONNX graph give the return head only. The scaler is in the network, as in
:mod:`.lstm`.

WasiuNet aligned 1m, 5m and 15m candles into one sequence. Here the feature columns are the
convolution's channels: higher timeframes arrive later as extra feature columns of the same
rows, and the network needs no change for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from candlecast.modeling.kinds import register
from candlecast.modeling.kinds.lstm import TorchParams, TorchWindowKind

if TYPE_CHECKING:
    from candlecast.modeling.kinds.torch_nets import WindowNet


class CNNTransformerParams(TorchParams):
    dropout: float = Field(default=0.1, ge=0, lt=1)
    d_model: int = Field(default=32, gt=0)
    nhead: int = Field(default=4, gt=0)
    num_layers: int = Field(default=2, ge=1, le=8)
    dim_feedforward: int = Field(default=64, gt=0)
    #: Candles the mixing convolution spans (odd, so the sequence keeps its length).
    conv_kernel: int = Field(default=3, ge=1)
    #: Candles per patch: the Transformer reads ``window / patch_size`` patches.
    patch_size: int = Field(default=4, ge=1)
    #: Weight of the direction loss beside the return's MSE.
    direction_weight: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _shapes_fit(self) -> CNNTransformerParams:
        if self.window % self.patch_size:
            raise ValueError(f"window {self.window} is not a multiple of patch_size")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model {self.d_model} is not a multiple of nhead {self.nhead}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel {self.conv_kernel} must be odd")
        return self


@register
class CNNTransformer(TorchWindowKind):
    name = "cnn_transformer"
    multi_timeframe = True
    Params = CNNTransformerParams

    def build_net(self) -> WindowNet:
        from candlecast.modeling.kinds.torch_nets import CNNTransformerNet

        params = self.hyper
        assert isinstance(params, CNNTransformerParams)
        return CNNTransformerNet(
            len(self.spec.features),
            params.window,
            d_model=params.d_model,
            nhead=params.nhead,
            num_layers=params.num_layers,
            dim_feedforward=params.dim_feedforward,
            conv_kernel=params.conv_kernel,
            patch_size=params.patch_size,
            dropout=params.dropout,
            direction_weight=params.direction_weight,
        )
