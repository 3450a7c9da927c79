"""Every error kind candlecast raises on purpose, in one place.

Two families matter to the orchestration layer:

* :class:`PermanentError`: retrying cannot fix it (bad data, a failed quality gate, missing
  history, a config mistake). Airflow tasks fail at once on these instead of spending retries.
* everything else (an exchange that times out, a service that is down) is retried.

Errors that carry a structured payload (a validation report) keep it as an attribute, typed
loosely here so this module depends on nothing else in the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PermanentError(RuntimeError):
    """A failure that retrying cannot fix."""


# -- config and identity -----------------------------------------------------------------------


class ConfigError(PermanentError, ValueError):
    """The pair config file is missing or invalid; the message names the key."""


class SettingsError(ConfigError):
    """An environment setting (``CANDLECAST_*``) is invalid; the message names the variable."""


class UnknownStreamError(PermanentError, KeyError):
    """No configured forecast stream matches the request."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousStreamError(PermanentError, ValueError):
    """A symbol matches several streams; the message names the candidates."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class UnknownModelKindError(PermanentError, KeyError):
    """A model kind name that no plug-in registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# -- candle data -------------------------------------------------------------------------------


class ExchangeUnavailableError(RuntimeError):
    """Candles could not be fetched after every try (transient: a later run may succeed)."""


class HistoryLimitError(PermanentError):
    """A range reaches further back than the exchange serves candles: the message names the
    first missing candle and the bulk file to import instead."""


class UnsupportedExchangeError(PermanentError, ValueError):
    """The exchange id is not a ccxt exchange, or the exchange serves no candles."""


class ShortPageError(Exception):
    """A page holds fewer candles than the exchange has (retried, then accepted)."""


class HistoryFormatError(PermanentError, ValueError):
    """A history file cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class SourceError(PermanentError, ValueError):
    """A candle source cannot serve what is asked (a replay file without that market)."""


class StoreError(PermanentError, ValueError):
    """A write would break a store's invariants (one row per timestamp)."""


class ResampleError(PermanentError, ValueError):
    """Candles cannot be resampled as asked (not clean, or not a whole multiple)."""


class EmptyBatchError(PermanentError):
    """The store holds no candles for an interval that must have some."""


class CandleValidationError(PermanentError):
    """A candle batch failed validation; ``report`` says which expectations and rows."""

    def __init__(self, report: Any) -> None:
        super().__init__(report.summary())
        self.report = report


class MissingDataError(PermanentError):
    """A stage found nothing to work on (no features, no online row) for its interval."""


class NotEnoughHistoryError(PermanentError):
    """Too few usable rows to train on; the message names the shortfall."""


class FitBudgetExceededError(PermanentError):
    """An evaluation's fitting went past its time budget: it stops rather than measure
    something else (fewer refits) on a slower machine."""


# -- models ------------------------------------------------------------------------------------


class NoChampionError(PermanentError):
    """The stream has no champion model yet."""


class UnknownVersionError(PermanentError, KeyError):
    """A registered model has no such version."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ParityError(PermanentError):
    """ONNX outputs differ from the native model's beyond the tolerance."""


class TamperedModelError(PermanentError):
    """A model file's sha256 differs from the one recorded when it was exported."""


# -- serving -----------------------------------------------------------------------------------


class StreamBusyError(RuntimeError):
    """Another run of the stream is under way (it may be over any moment)."""


class NotReadyError(RuntimeError):
    """No deployed model or no online features for the stream yet (may change any moment)."""
