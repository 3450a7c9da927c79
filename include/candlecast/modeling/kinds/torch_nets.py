"""PyTorch networks of the sequence kinds, and how they are fitted, logged and exported.

Only the kind modules import this (lazily, inside methods), so the kind registry stays cheap
to import. Every network reads the flattened window that :func:`~.base.window_inputs` builds
(``window * n_features`` values per row, oldest row first), reshapes it to
``(batch, window, n_features)`` and standardises it with a scaler held in registered buffers,
fitted on training rows only. The return is de-standardised the same way, so the network maps
raw features to a raw log return, and its ONNX graph needs nothing beside it at serving time.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from candlecast.modeling.kinds.base import IR_VERSION, ONNX_INPUT, TARGET_OPSET

log = logging.getLogger(__name__)

#: The ONNX output name, as the LightGBM and persistence kinds name theirs.
ONNX_OUTPUT = "variable"
#: Threads a fit or forecast uses. One: these nets are too small to gain from a second
#: (measured: same epoch time), and on a busy two-core worker a second thread waits in spin
#: loops for the core another task holds (measured: epochs 0.3 s -> 25-60 s; 1 thread: 0.3 s).
TORCH_THREADS = 1
_PREDICT_CHUNK = 8192


class TrainingParams(Protocol):
    """What :func:`fit_net` reads from a kind's parameters."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    patience: int
    validation_fraction: float


class WindowNet(nn.Module):
    """Base of the sequence networks: reshape, in-graph scaler, raw return out.

    Subclasses implement :meth:`scaled_return`; :meth:`forward` (what ``predict`` and ONNX
    run) returns it de-standardised: the next log return, shape ``(batch, 1)``.
    """

    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, n_features: int, window: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.window = window
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    @property
    def width(self) -> int:
        return self.window * self.n_features

    def set_scaler(self, rows: np.ndarray, y: np.ndarray) -> None:
        """Fit the scaler on training feature rows ``(n, n_features)`` and returns ``y``."""
        x_std = rows.std(axis=0)
        y_std = float(y.std())
        # A constant feature (or target) must not divide by zero: leave it unscaled.
        self.x_mean.copy_(torch.as_tensor(rows.mean(axis=0), dtype=torch.float32))
        self.x_std.copy_(torch.as_tensor(np.where(x_std > 1e-12, x_std, 1.0), dtype=torch.float32))
        self.y_mean.fill_(float(y.mean()))
        self.y_std.fill_(y_std if y_std > 1e-12 else 1.0)

    def sequences(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened windows ``(batch, width)`` as standardised ``(batch, window, features)``."""
        return (x.reshape(-1, self.window, self.n_features) - self.x_mean) / self.x_std

    def scaled_return(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised return forecast ``(batch, 1)`` for flattened windows ``x``."""
        raise NotImplementedError

    def loss(self, x: torch.Tensor, y_scaled: torch.Tensor) -> torch.Tensor:
        """Training loss on a batch; ``y_scaled`` is the standardised target ``(batch, 1)``."""
        return nn.functional.mse_loss(self.scaled_return(x), y_scaled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaled_return(x) * self.y_std + self.y_mean


class LSTMNet(WindowNet):
    """Make Us Rich: stacked LSTM over the scaled sequence, a linear head on its last state."""

    def __init__(
        self, n_features: int, window: int, hidden_size: int, num_layers: int, dropout: float
    ) -> None:
        super().__init__(n_features, window)
        # torch applies LSTM dropout between layers only (and warns when there is one layer).
        self.lstm = nn.LSTM(
            n_features,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def scaled_return(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(self.sequences(x))
        return self.head(self.dropout(states[:, -1, :]))


class CNNTransformerNet(WindowNet):
    """WasiuNet, adapted: feed-forward + convolution over candles, patches, Transformer encoder,
    and two heads: the return and the direction (logit of P(up), sigmoid in the loss)."""

    def __init__(
        self,
        n_features: int,
        window: int,
        *,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int,
        conv_kernel: int,
        patch_size: int,
        dropout: float,
        direction_weight: float,
    ) -> None:
        super().__init__(n_features, window)
        self.direction_weight = direction_weight
        self.embed = nn.Sequential(nn.Linear(n_features, d_model), nn.GELU())
        self.mix = nn.Sequential(
            nn.Conv1d(d_model, d_model, conv_kernel, padding=conv_kernel // 2), nn.GELU()
        )
        self.patches = nn.Conv1d(d_model, d_model, patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, window // patch_size, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.return_head = nn.Linear(d_model, 1)
        self.direction_head = nn.Linear(d_model, 1)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The standardised return and the logit of "up", each ``(batch, 1)``."""
        candles = self.embed(self.sequences(x)).transpose(1, 2)  # (batch, d_model, window)
        patches = self.patches(self.mix(candles) + candles).transpose(1, 2)
        pooled = self.encoder(patches + self.position).mean(dim=1)
        return self.return_head(pooled), self.direction_head(pooled)

    def scaled_return(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(x)[0]

    def loss(self, x: torch.Tensor, y_scaled: torch.Tensor) -> torch.Tensor:
        ret, up_logit = self.heads(x)
        up = (y_scaled * self.y_std + self.y_mean > 0).to(y_scaled.dtype)
        direction = nn.functional.binary_cross_entropy_with_logits(up_logit, up)
        return nn.functional.mse_loss(ret, y_scaled) + self.direction_weight * direction


def device() -> torch.device:
    """Fit on a GPU when one is present, on the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def few_threads() -> Iterator[None]:
    """Torch runs on :data:`TORCH_THREADS` threads inside; the setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def reproducible(seed: int, on: torch.device) -> Iterator[None]:
    """Seeded, deterministic and on few threads inside; the global torch state is restored."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cuda = on.type == "cuda"
    try:
        with few_threads(), torch.random.fork_rng(devices=[on] if cuda else []):
            torch.manual_seed(seed)
            # cuDNN's LSTM has no deterministic variant without CUBLAS_WORKSPACE_CONFIG set
            # before CUDA starts: on a GPU, warn rather than fail (CPU fits are bit-exact).
            torch.use_deterministic_algorithms(True, warn_only=cuda)
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def fit_net(
    build: Callable[[], WindowNet], x: np.ndarray, y: np.ndarray, params: TrainingParams
) -> WindowNet:
    """Build and fit a network on windows ``x`` and returns ``y``; returns it on the CPU.

    The last ``validation_fraction`` of the rows (chronologically) is the validation fold for
    early stopping; the scaler and the weights see only the rows before it. Mini-batches are
    shuffled within the training fold only. The weights of the best validation epoch are kept.

    Raises:
        ValueError: ``x`` does not have the network's width, or too few rows to split.
    """
    n_val = math.ceil(len(x) * params.validation_fraction)
    n_train = len(x) - n_val
    if n_train < 2 or len(y) != len(x):
        raise ValueError(f"need at least 2 training rows and one target per row ({len(x)} rows)")
    on = device()
    with reproducible(params.seed, on):
        net = build()
        _check_width(net, x)
        net.set_scaler(x[:n_train, -net.n_features :], y[:n_train])
        net.to(on)
        xs = torch.as_tensor(x, dtype=torch.float32, device=on)
        ys = (torch.as_tensor(y, dtype=torch.float32, device=on)[:, None] - net.y_mean) / net.y_std
        best = _train(net, (xs[:n_train], ys[:n_train]), (xs[n_train:], ys[n_train:]), params)
    net.load_state_dict(best)
    return net.cpu().eval()


def _train(
    net: WindowNet,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    params: TrainingParams,
) -> dict[str, torch.Tensor]:
    """Epochs of AdamW until the validation MSE stops improving; the best weights."""
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    shuffle = torch.Generator().manual_seed(params.seed)
    best_loss, best, stale, epochs = math.inf, _snapshot(net), 0, 0
    while epochs < params.epochs and stale < params.patience:
        epochs += 1
        net.train()
        order = torch.randperm(len(train[0]), generator=shuffle).to(train[0].device)
        for start in range(0, len(order), params.batch_size):
            batch = order[start : start + params.batch_size]
            optimizer.zero_grad()
            net.loss(train[0][batch], train[1][batch]).backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
        net.eval()
        with torch.no_grad():
            loss = float(nn.functional.mse_loss(net.scaled_return(validation[0]), validation[1]))
        if loss < best_loss:
            best_loss, best, stale = loss, _snapshot(net), 0
        else:
            stale += 1
    name = type(net).__name__
    log.info("fitted %s: %d epochs, best validation MSE %.4f", name, epochs, best_loss)
    return best


def _snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in net.state_dict().items()}


def _check_width(net: WindowNet, x: np.ndarray) -> None:
    if x.ndim != 2 or x.shape[1] != net.width:
        raise ValueError(
            f"expected inputs of {net.width} columns (window {net.window} x "
            f"{net.n_features} features, see window_inputs), got shape {x.shape}"
        )


def predict_net(net: WindowNet, x: np.ndarray) -> np.ndarray:
    """Forecast returns for windows ``x`` on the CPU: float64 of shape ``(n,)``."""
    _check_width(net, x)
    net = net.cpu().eval()
    out = np.empty(len(x), dtype=np.float64)
    with torch.no_grad(), few_threads():
        for start in range(0, len(x), _PREDICT_CHUNK):
            chunk = torch.as_tensor(x[start : start + _PREDICT_CHUNK], dtype=torch.float32)
            out[start : start + len(chunk)] = net(chunk).reshape(-1).numpy()
    return out


def to_onnx(net: WindowNet) -> Any:
    """The network as an ONNX model: input :data:`ONNX_INPUT` float32 ``[batch, width]``,
    output ``[batch, 1]``, opset :data:`TARGET_OPSET`.

    Uses the TorchScript exporter (``dynamo=False``): the default torch.export-based one needs
    onnxscript, which is not installed, and this one writes opset 15 directly.
    """
    import onnx

    net = net.cpu().eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        path = Path(tmp) / "model.onnx"
        # Expected notes: the legacy exporter's deprecation, the tracer's on the tensor-to-bool
        # checks inside torch's LSTM and Transformer layers (our nets have no data-dependent
        # branch), the LSTM batch-size caveat. The parity check on every export (and the
        # tests, at batch sizes 1 and many) are what prove the traced graph right.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            net,
            (torch.zeros(2, net.width),),
            path,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=TARGET_OPSET,
            dynamo=False,
        )
        model = onnx.load(path)
    model.ir_version = min(model.ir_version, IR_VERSION)
    return model


def log_net(
    net: WindowNet, input_example: np.ndarray, metadata: dict[str, Any], name: str = "model"
) -> str:
    """Log the network to the active MLflow run (PyTorch flavour) under ``name``; returns its
    model URI.

    Saved as ``pt2`` (torch.export), MLflow's default: it loads without unpickling code
    (pickled models need ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``). ``metadata`` (the kind's
    parameters) goes into the MLmodel file, so :func:`load_net` can rebuild the module.
    """
    import mlflow
    from mlflow.models import infer_signature

    from candlecast.modeling.registry import pip_requirements

    net = net.cpu().eval()
    _check_width(net, input_example)
    # Two rows at least: torch.export keeps a batch of one static.
    head = input_example[:3].astype(np.float32)
    example = np.resize(head, (max(2, len(head)), net.width))
    with torch.no_grad():
        predicted = net(torch.as_tensor(example)).numpy()
    with warnings.catch_warnings():
        # torch.export notes that nn.LSTM sets its flat weights during the trace; the exported
        # program is still the module's (the tests compare its forecasts).
        warnings.filterwarnings("ignore", message=".*_flat_weights.*", category=UserWarning)
        info = mlflow.pytorch.log_model(
            net,
            name=name,
            signature=infer_signature(example, predicted),
            input_example=example,
            pip_requirements=pip_requirements("torch"),
            metadata=metadata,
            serialization_format="pt2",
        )
    return str(info.model_uri)


def load_net(model_uri: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights (state dict) and metadata of a network logged by :func:`log_net`."""
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        metadata = Model.load(local).metadata or {}
        exported = mlflow.pytorch.load_model(local)
    return _snapshot(exported), metadata
