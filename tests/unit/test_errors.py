"""Error kinds: what retrying cannot fix fails an Airflow task at once, the rest is retried."""

import pytest

from candlecast import errors
from candlecast.errors import PermanentError

PERMANENT = [
    errors.ConfigError,
    errors.SettingsError,
    errors.UnknownStreamError,
    errors.AmbiguousStreamError,
    errors.UnknownModelKindError,
    errors.UnsupportedExchangeError,
    errors.HistoryFormatError,
    errors.HistoryLimitError,
    errors.SourceError,
    errors.StoreError,
    errors.ResampleError,
    errors.EmptyBatchError,
    errors.CandleValidationError,
    errors.MissingDataError,
    errors.NotEnoughHistoryError,
    errors.FitBudgetExceededError,
    errors.NoChampionError,
    errors.UnknownVersionError,
    errors.ParityError,
    errors.TamperedModelError,
]
TRANSIENT = [errors.ExchangeUnavailableError, errors.NotReadyError, errors.StreamBusyError]


def test_every_error_kind_is_classified():
    declared = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    }
    assert declared == {*PERMANENT, *TRANSIENT, PermanentError, errors.ShortPageError}


@pytest.mark.parametrize("kind", PERMANENT)
def test_permanent_errors_are_permanent(kind):
    assert issubclass(kind, PermanentError)


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_errors_are_retried(kind):
    assert not issubclass(kind, PermanentError)


def test_the_dag_factory_fails_permanent_errors_at_once_and_lets_the_rest_retry(airflow_db):
    from airflow.sdk.exceptions import AirflowFailException

    from candlecast.orchestration.dags import _run

    def resample_badly():
        raise errors.ResampleError("cannot resample 5m to 7m")

    def exchange_down():
        raise errors.ExchangeUnavailableError("binance: 5 tries failed")

    with pytest.raises(AirflowFailException, match="resample_badly: ResampleError: cannot"):
        _run(resample_badly)
    with pytest.raises(errors.ExchangeUnavailableError):
        _run(exchange_down)
