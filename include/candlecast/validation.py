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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from candlecast.errors import PermanentError
from candlecast.sources import CANDLE_COLUMNS
from candlecast.timeframes import timeframe_ms

log = logging.getLogger(__name__)

#: Derived by the validator (not stored): distance of ``ts`` from the timeframe grid.
GRID_COLUMN = "ts_grid_offset"
_PRICES = ["open", "high", "low", "close"]


class CandleValidationError(PermanentError):
    """A candle batch failed validation; ``report`` says which expectations and rows."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


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
    result: dict[str, Any] = field(default_factory=dict)
    quarantine: Path | None = None

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: {self.rows} candles passed"
        lines = [f"{self.suite}: {len(self.failures)} expectation(s) failed on {self.rows} candles"]
        for f in self.failures:
            where = f" on {f.column}" if f.column else ""
            rows = f"; rows {', '.join(f.rows[:5])}{' ...' if len(f.rows) > 5 else ''}"
            lines.append(f"  - {f.expectation}{where}: {f.unexpected_count} unexpected{rows}")
        if self.quarantine:
            lines.append(f"  batch quarantined in {self.quarantine}")
        return "\n".join(lines)


def build_suite(timeframe: str) -> Any:
    """The expectation suite for candles of one timeframe."""
    import great_expectations as gx

    exp = gx.expectations
    suite = gx.ExpectationSuite(name=f"candles_{timeframe}")
    suite.add_expectation(
        exp.ExpectTableColumnsToMatchOrderedList(column_list=[*CANDLE_COLUMNS, GRID_COLUMN])
    )
    suite.add_expectation(exp.ExpectColumnValuesToBeOfType(column="ts", type_="int64"))
    for column in CANDLE_COLUMNS[1:]:
        suite.add_expectation(exp.ExpectColumnValuesToBeOfType(column=column, type_="float64"))
    for column in CANDLE_COLUMNS:
        suite.add_expectation(exp.ExpectColumnValuesToNotBeNull(column=column))
    for column in _PRICES:
        suite.add_expectation(
            exp.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
        )
    for upper, lower in [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")]:
        suite.add_expectation(
            exp.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=upper, column_B=lower, or_equal=True
            )
        )
    suite.add_expectation(exp.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    suite.add_expectation(exp.ExpectColumnValuesToBeUnique(column="ts"))
    suite.add_expectation(exp.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True))
    suite.add_expectation(exp.ExpectColumnValuesToBeInSet(column=GRID_COLUMN, value_set=[0]))
    return suite


def validate_candles(frame: pd.DataFrame, timeframe: str) -> ValidationReport:
    """Run the timeframe's suite on a candle batch (in the order it arrived)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    checked = frame.reset_index(drop=True).copy()
    if "ts" in checked.columns:
        checked[GRID_COLUMN] = pd.to_numeric(checked["ts"], errors="coerce") % timeframe_ms(
            timeframe
        )
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    asset = context.data_sources.add_pandas("candles").add_dataframe_asset("batch")
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": checked}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = batch.validate(build_suite(timeframe), result_format={"result_format": "COMPLETE"})
    payload = result.to_json_dict()
    failures = [_failure(r, checked) for r in result.results if not r.success]
    return ValidationReport(
        suite=f"candles_{timeframe}",
        rows=len(checked),
        success=bool(result.success),
        failures=failures,
        result=payload,
    )


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
        return f"#{index} ({pd.Timestamp(ts, unit='ms', tz='UTC').isoformat()})"
    except (KeyError, TypeError, ValueError):
        return f"#{index}"


def quarantine_batch(frame: pd.DataFrame, report: ValidationReport, folder: Path) -> Path:
    """Keep a failed batch with its GE result and summary; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "batch.parquet", index=False)
    (folder / "validation.json").write_text(json.dumps(report.result, indent=2, default=str))
    report.quarantine = folder
    (folder / "summary.txt").write_text(report.summary() + "\n")
    log.warning("quarantined %d candles in %s", len(frame), folder)
    return folder
