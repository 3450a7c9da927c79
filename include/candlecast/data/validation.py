"""Candle validation with Great Expectations.

A batch is checked against a suite named per timeframe (``candles_1h``), and every finding
has the severity its expectation carries (:mod:`candlecast.data.checks`): impossible rows
are refused (kept in the quarantine with the rule that caught them, the rest of the batch
goes on), oddities are flagged (stored, with bits in the ``flags`` column), and a failed
batch expectation, or a row rule that found more rows than its bound, refuses the batch
whole: the batch, the GE validation result (JSON) and a readable summary are kept under the
quarantine directory, and :class:`CandleValidationError` names the failed expectations and
the offending rows.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from candlecast.data.checks import (
    BATCH,
    FLAG_BITS,
    REFUSE,
    REPAIRS,
    CheckOptions,
    build_suite,
    derive,
    expected_columns,
)
from candlecast.data.gaps import Completeness
from candlecast.data.ge_run import DocsNames, run_suite
from candlecast.data.liquidity import Liquidity, liquidity
from candlecast.data.schema import FLAGS
from candlecast.timeframes import ms_to_iso

log = logging.getLogger(__name__)


@dataclass
class Failure:
    """One expectation's finding: failed (``severity`` ``batch``: the batch is refused), or
    met within its bound with rows it refused or flagged."""

    expectation: str
    column: str | None
    unexpected_count: int
    rows: list[str]
    severity: str = BATCH

    @property
    def rule(self) -> str:
        """The rule's name as reports and the quarantine give it."""
        return f"{self.expectation} on {self.column}" if self.column else self.expectation

    def describe(self) -> str:
        rows = f"; rows {', '.join(self.rows[:5])}{' ...' if len(self.rows) > 5 else ''}"
        return f"{self.rule}: {self.unexpected_count} unexpected{rows}"


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
    #: Rules met within their bound that refused or flagged rows (severity refuse / flag).
    findings: list[Failure] = field(default_factory=list)
    #: The refused rows as they came, with the rules that refused them (``rule``).
    refused: pd.DataFrame | None = field(default=None, repr=False)
    #: How liquid the stored candles are; a thin market gets a warning line in the summary.
    liquidity: Liquidity | None = None

    @property
    def refused_rows(self) -> int:
        return 0 if self.refused is None else len(self.refused)

    @property
    def flagged_rows(self) -> int:
        if self.batch is None or FLAGS not in self.batch:
            return 0
        return int((self.batch[FLAGS] != 0).sum())

    def summary(self) -> str:
        repaired = "".join(f"; repaired {n} rows ({rule})" for rule, n in self.repairs.items())
        missing = f"; {self.completeness.describe()}" if self.completeness else ""
        if self.success:
            stored = f"; {self.unchanged} already stored (unchanged)" if self.unchanged else ""
            if self.replaced:
                stored += f"; replaced {self.replaced} stored candles ({self.undo})"
            passed = self.rows - self.refused_rows
            head = f"{self.suite}: {passed} candles passed{self._rows_note()}{repaired}{stored}"
            known = self.liquidity
            warning = [f"  - warning: {known.describe()}"] if known and known.thin else []
            return "\n".join([head + missing, *self._finding_lines(), *warning])
        lines = [
            f"{self.suite}: {len(self.failures)} expectation(s) failed on {self.rows} candles"
            + repaired
        ]
        lines += [f"  - {f.describe()}" for f in self.failures]
        lines += self._finding_lines()
        if self.quarantine:
            lines.append(f"  batch quarantined in {self.quarantine}")
        if self.docs:
            lines.append(f"  data docs: {self.docs.as_uri()}")
        return "\n".join(lines)

    def _rows_note(self) -> str:
        note = f", {self.flagged_rows} of them flagged" if self.flagged_rows else ""
        if self.refused_rows:
            where = f" (kept in {self.quarantine})" if self.quarantine else ""
            note += f"; {self.refused_rows} refused{where}, counted as missing"
        return note

    def _finding_lines(self) -> list[str]:
        verbs = {REFUSE: "refused", "flag": "flagged"}
        return [f"  - {verbs[f.severity]} by {f.describe()}" for f in self.findings]


def validate_candles(
    frame: pd.DataFrame,
    timeframe: str,
    options: CheckOptions | None = None,
    docs_dir: Path | None = None,
    stream: str = "candles",
) -> ValidationReport:
    """Repair known source defects, then run the timeframe's suite on the batch (in the
    order it arrived). ``report.batch`` is the repaired batch without its refused rows, with
    the ``flags`` column (no derived columns); ``report.refused`` holds the refused rows.

    With ``docs_dir``, the run goes through a GE checkpoint that also builds the data docs
    (HTML) there; ``report.docs`` is the page of this validation, whose data asset, checkpoint
    and run are named after ``stream`` (its key) and the batch's interval.
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
        result, docs = run_suite(
            checked,
            lambda: build_suite(timeframe, columns, options, len(checked)),
            DocsNames.of(stream, checked, timeframe) if docs_dir else None,
            docs_dir,
        )
    found = _Findings.of(result, checked)
    out = batch.assign(**{FLAGS: found.flags})[found.rules == ""].reset_index(drop=True)
    return ValidationReport(
        suite=f"candles_{timeframe}",
        rows=len(checked),
        success=bool(result.success),
        failures=found.failures,
        result=result.to_json_dict(),
        repairs=repairs,
        batch=out,
        docs=docs,
        findings=found.findings,
        refused=batch.assign(rule=found.rules.str.removeprefix("; "))[found.rules != ""],
        liquidity=liquidity(out),
    )


@dataclass
class _Findings:
    """A GE result sorted by severity: failed expectations, findings within their bound,
    each row's refusing rules (``"; "``-joined, empty when kept) and flag bits."""

    failures: list[Failure]
    findings: list[Failure]
    rules: pd.Series
    flags: np.ndarray

    @classmethod
    def of(cls, result: Any, checked: pd.DataFrame) -> _Findings:
        rules = pd.Series("", index=checked.index, dtype=object)
        found = cls([], [], rules, np.zeros(len(checked), dtype=np.int64))
        for res in result.results:
            severity = (res.expectation_config.meta or {}).get("severity", BATCH)
            if not res.success:
                found.failures.append(_failure(res, checked, BATCH))
                continue
            rows = _unexpected_rows(res)
            if severity != BATCH and len(rows):
                found.add(_failure(res, checked, severity), res, rows)
        return found

    def add(self, finding: Failure, res: Any, rows: np.ndarray) -> None:
        self.findings.append(finding)
        if finding.severity == REFUSE:
            self.rules.iloc[rows] = self.rules.iloc[rows] + "; " + finding.rule
        else:
            self.flags[rows] |= FLAG_BITS[str(res.expectation_config.kwargs["column"])]


#: Rows a finding names (the summary shows five; the quarantine keeps them all).
_LABELLED = 20


def _unexpected_rows(res: Any) -> np.ndarray:
    """Positions of the rows an expectation found (the checked frame has a RangeIndex)."""
    indexes = (res.result or {}).get("unexpected_index_list") or []
    rows = [next(iter(i.values())) if isinstance(i, dict) else i for i in indexes]
    return np.unique(np.asarray(rows, dtype=np.int64))


def _failure(res: Any, checked: pd.DataFrame, severity: str) -> Failure:
    kwargs = res.expectation_config.kwargs
    column = kwargs.get("column") or (
        f"{kwargs['column_A']} >= {kwargs['column_B']}" if "column_A" in kwargs else None
    )
    outcome = res.result or {}
    indexes = outcome.get("unexpected_index_list") or []
    rows = [_row_label(checked, i) for i in indexes[:_LABELLED]]
    count = outcome.get("unexpected_count")
    if count is None:
        count = len(indexes) or 1
    if res.exception_info and res.exception_info.get("raised_exception"):
        rows = [res.exception_info.get("exception_message", "")[:200]]
    return Failure(res.expectation_config.type, column, int(count), rows, severity)


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


def quarantine_rows(report: ValidationReport, folder: Path) -> Path | None:
    """Keep the rows a passed batch refused (``refused.parquet``, with the rule that refused
    each) and the report; returns the folder, or None when no row was refused."""
    if not report.refused_rows or report.refused is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    report.refused.to_parquet(folder / "refused.parquet", index=False)
    report.quarantine = folder
    (folder / "summary.txt").write_text(report.summary() + "\n")
    return folder
