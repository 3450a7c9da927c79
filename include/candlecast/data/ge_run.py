"""Great Expectations runs for :mod:`.validation`: a fresh ephemeral context per batch, and
with a data docs folder a named checkpoint that builds the docs of the validation.

GE names a dataframe's validation generically (data asset "None", run ``__none__``); here the
datasource, checkpoint and run are named after the stream and the candles' interval
(:class:`DocsNames`), so a page of the data docs says what it validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.timeframes import ms_to_iso, timeframe_ms


@dataclass(frozen=True)
class DocsNames:
    """What the data docs call a validation: the stream and the candles' interval (GE's
    defaults are an asset "None" and a run ``__none__``)."""

    stream: str
    start: str  # open time of the first candle, ISO
    end: str  # close time of the last candle, ISO

    @classmethod
    def of(cls, stream: str, checked: pd.DataFrame, timeframe: str) -> DocsNames:
        if checked.empty:
            return cls(stream, "", "")
        step = timeframe_ms(timeframe)
        return cls(
            stream, ms_to_iso(int(checked["ts"].min())), ms_to_iso(int(checked["ts"].max()) + step)
        )

    @property
    def run_name(self) -> str:
        """File-safe (the run is a folder of the docs): ``<stream>_<start>-<end>``."""
        digits = [t[:16].replace("-", "").replace(":", "") for t in (self.start, self.end)]
        return f"{self.stream}_{digits[0]}-{digits[1]}" if self.start else self.stream

    @property
    def asset(self) -> str:
        start, end = (t[:16].replace("T", " ") for t in (self.start, self.end))
        return f"{self.stream} candles {start} .. {end} UTC" if start else self.stream


def run_suite(
    checked: pd.DataFrame,
    make_suite: Callable[[], Any],
    names: DocsNames | None,
    docs_dir: Path | None,
) -> tuple[Any, Path | None]:
    """Validate in a fresh ephemeral GE context (the suite is built inside it); with
    ``docs_dir`` (and ``names``), through a checkpoint that builds the data docs there.

    Without docs, the result is GE's ``COMPLETE`` format (every finding's rows), except for a
    small batch with nothing to report (:data:`QUICK_ROWS`, :func:`clean`): its ``BASIC``
    result, which says so as well."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = names.stream if names else "candles"
    asset = context.data_sources.add_pandas(source).add_dataframe_asset("candles")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    complete = {"result_format": "COMPLETE"}
    if docs_dir is None or names is None:
        batch = definition.get_batch(batch_parameters={"dataframe": checked})
        if len(checked) <= QUICK_ROWS:
            quick = batch.validate(make_suite(), result_format={"result_format": "BASIC"})
            if clean(quick):
                return quick, None
        return batch.validate(make_suite(), result_format=complete), None
    return _with_docs(context, definition, make_suite(), checked, names, docs_dir)


#: Batches up to this many rows (a live run's few candles) are validated first with GE's
#: ``BASIC`` result format, which builds fewer metrics: a third less CPU than ``COMPLETE`` for
#: one candle, where GE's per-expectation set-up is nearly all of the cost. Only a batch with
#: a finding is validated again for the rows it names; on a large batch (an import, where a
#: flagged row is likely) that second pass would cost more than the first saves.
QUICK_ROWS = 64


def clean(result: Any) -> bool:
    """Every expectation met, and none found a row (not even within its ``mostly``): a result
    with nothing to report, whatever its format."""
    return bool(result.success) and not any(
        (res.result or {}).get("unexpected_count") for res in result.results
    )


def _with_docs(
    context: Any,
    definition: Any,
    suite: Any,
    checked: pd.DataFrame,
    names: DocsNames,
    docs_dir: Path,
) -> tuple[Any, Path | None]:
    """Run a named checkpoint, name the data asset in the stored result (GE leaves it None
    for a dataframe), then build the data docs of that result."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    complete = {"result_format": "COMPLETE"}
    site: Any = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
    }
    context.add_data_docs_site(site_name="candlecast", site_config=site)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=f"{names.stream} {suite.name}", data=definition, suite=context.suites.add(suite)
        )
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{names.stream} {suite.name} checkpoint",
            validation_definitions=[validation],
            result_format=complete,
        )
    )
    run_id = RunIdentifier(run_name=names.run_name, run_time=datetime.now(UTC))
    outcome = checkpoint.run(batch_parameters={"dataframe": checked}, run_id=run_id)
    key, result = next(iter(outcome.run_results.items()))
    result.meta["batch_spec"] = {
        **result.meta.get("batch_spec", {}),
        "data_asset_name": names.asset,
    }
    context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["candlecast"], resource_identifiers=[key])
    pages = sorted((docs_dir / "validations").rglob("*.html"), key=lambda p: p.stat().st_mtime)
    return result, pages[-1] if pages else None
