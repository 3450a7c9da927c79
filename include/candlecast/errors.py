"""Error kinds the orchestration layer treats differently."""


class PermanentError(RuntimeError):
    """A failure that retrying cannot fix (bad data, a failed quality gate, missing history).

    Airflow tasks fail at once on these instead of spending their retries.
    """
