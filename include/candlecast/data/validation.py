"""Candle validation with Great Expectations.

A batch is checked against a suite named per timeframe (``candles_1h``). A failing batch is
quarantined: the batch itself, the GE validation result (JSON) and a readable summary are
kept under the quarantine directory, and :class:`CandleValidationError` names the failed
expectations and the offending rows.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.data.checks import REPAIRS, CheckOptions, build_suite, derive, expected_columns
from candlecast.data.gaps import Completeness
from candlecast.timeframes import ms_to_iso

log = logging.getLogger(__name__)


@dataclass
class Failure:
    expectation: str
    column: str | None
    unexpected_count: int
    rows: list[str]


@dataclass
class ValidationReport:
    suite: str
    rows: int
    success: bool
    failures: list[Failure] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict, repr=False)
    repairs: dict[str, int] = field(default_factory=dict)
    batch: pd.DataFrame | None = field(default=None, repr=False)
    docs: Path | None = None
    quarantine: Path | None = None
    completeness: Completeness | None = None
    #: Rows that were stored already, with the same values (nothing rewritten).
    unchanged: int = 0
    #: With overwrite: how many stored candles were replaced, and how to undo it.
    replaced: int = 0
    undo: str | None = None

    def summary(self) -> str:
        repaired = "".join(f"; repaired {n} rows ({rule})" for rule, n in self.repairs.items())
        missing = f"; {self.completeness.describe()}" if self.completeness else ""
        if self.success:
            stored = f"; {self.unchanged} already stored (unchanged)" if self.unchanged else ""
            if self.replaced:
                stored += f"; replaced {self.replaced} stored candles ({self.undo})"
            return f"{self.suite}: {self.rows} candles passed{repaired}{stored}{missing}"
        lines = [
            f"{self.suite}: {len(self.failures)} expectation(s) failed on {self.rows} candles"
            + repaired
        ]
        for f in self.failures:
            where = f" on {f.column}" if f.column else ""
            rows = f"; rows {', '.join(f.rows[:5])}{' ...' if len(f.rows) > 5 else ''}"
            lines.append(f"  - {f.expectation}{where}: {f.unexpected_count} unexpected{rows}")
        if self.quarantine:
            lines.append(f"  batch quarantined in {self.quarantine}")
        if self.docs:
            lines.append(f"  data docs: {self.docs.as_uri()}")
        return "\n".join(lines)


def validate_candles(
    frame: pd.DataFrame,
    timeframe: str,
    options: CheckOptions | None = None,
    docs_dir: Path | None = None,
) -> ValidationReport:
    """Repair known source defects, then run the timeframe's suite on the batch (in the
    order it arrived). ``report.batch`` is the repaired batch, without derived columns.

    With ``docs_dir``, the run goes through a GE checkpoint that also builds the data docs
    (HTML) there; ``report.docs`` is the page of this validation.
    """
    batch, repairs = frame.reset_index(drop=True), {}
    for name, rule in REPAIRS.items():
        batch, count = rule(batch)
        if count:
            repairs[name] = count
    checked = derive(batch, timeframe)
    columns, options = expected_columns(batch), options or CheckOptions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, docs = _run_suite(
            checked, lambda: build_suite(timeframe, columns, options), docs_dir
        )
    return ValidationReport(
        suite=f"candles_{timeframe}",
        rows=len(checked),
        success=bool(result.success),
        failures=[_failure(r, checked) for r in result.results if not r.success],
        result=result.to_json_dict(),
        repairs=repairs,
        batch=batch,
        docs=docs,
    )


def _run_suite(
    checked: pd.DataFrame, make_suite: Callable[[], Any], docs_dir: Path | None
) -> tuple[Any, Path | None]:
    """Validate in a fresh ephemeral GE context (the suite is built inside it)."""
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
    asset = context.data_sources.add_pandas("candles").add_dataframe_asset("batch")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    complete = {"result_format": "COMPLETE"}
    suite = make_suite()
    if docs_dir is None:
        batch = definition.get_batch(batch_parameters={"dataframe": checked})
        return batch.validate(suite, result_format=complete), None
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
        gx.ValidationDefinition(name=suite.name, data=definition, suite=context.suites.add(suite))
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite.name}_checkpoint",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["candlecast"])],
            result_format=complete,
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": checked})
    pages = sorted((docs_dir / "validations").rglob("*.html"), key=lambda p: p.stat().st_mtime)
    return next(iter(outcome.run_results.values())), pages[-1] if pages else None


def _failure(res: Any, checked: pd.DataFrame) -> Failure:
    kwargs = res.expectation_config.kwargs
    column = kwargs.get("column") or (
        f"{kwargs['column_A']} >= {kwargs['column_B']}" if "column_A" in kwargs else None
    )
    outcome = res.result or {}
    indexes = outcome.get("unexpected_index_list") or []
    rows = [_row_label(checked, i) for i in indexes]
    count = outcome.get("unexpected_count")
    if count is None:
        count = len(indexes) or 1
    if res.exception_info and res.exception_info.get("raised_exception"):
        rows = [res.exception_info.get("exception_message", "")[:200]]
    return Failure(res.expectation_config.type, column, int(count), rows)


def _row_label(checked: pd.DataFrame, index: Any) -> str:
    if isinstance(index, dict):
        index = next(iter(index.values()))
    try:
        ts = int(checked.at[index, "ts"])
        return f"#{index} ({ms_to_iso(ts)})"
    except (KeyError, TypeError, ValueError):
        return f"#{index}"


def quarantine_batch(frame: pd.DataFrame, report: ValidationReport, folder: Path) -> Path:
    """Keep a failed batch with its GE result and summary; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "batch.parquet", index=False)
    payload = {**report.result, "candlecast_repairs": report.repairs}
    (folder / "validation.json").write_text(json.dumps(payload, indent=2, default=str))
    report.quarantine = folder
    (folder / "summary.txt").write_text(report.summary() + "\n")
    log.warning("quarantined %d candles in %s", len(frame), folder)
    return folder
