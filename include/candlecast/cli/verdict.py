"""The demo's verdict per stream: what is served for each target and why, in plain words.

Built from a /predict answer (each target's ``model`` and ``decision``) and the main target's
promotion reason (the newest training run's ``promotion.reason`` tag). The reasons are the
gate's own sentences (:mod:`candlecast.modeling.gate`); the verdict keeps their first
comparison as a ratio to the opponent and the p-value, so a reader sees the figure the gate
decided on without the full sentence.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: One comparison as :meth:`candlecast.modeling.gate.Comparison.describe` words it.
COMPARISON = re.compile(
    r"(?P<metric>\w+) (?P<score>[-+.\deE]+) vs (?P<opponent>[-+.\deE]+) "
    r"\((?P<margin>[-+.\d]+%), p=(?P<p>[-+.\deE]+|nan), (?P<rows>\d+) rows\)"
)
BEST_BASELINE = re.compile(r"beats the best baseline (?P<name>\w+)")
#: How the gate's reason starts when the next candle's return keeps persistence.
NO_EDGE = "no demonstrated edge"


def stream_verdict(answer: dict[str, Any], main_reason: str | None) -> list[str]:
    """One line per target and horizon of ``answer``: the kind served and why.

    ``main_reason`` is the next candle's promotion reason (None: unknown; the line then says
    only what is served)."""
    model = answer["model"]
    lines = [_line("return h1", model["kind"], model["kind"] == "persistence", main_reason)]
    for target in answer.get("targets", []):
        label = f"{target['target']} h{target['horizon']}"
        served = target["model"]
        lines.append(_line(label, served["kind"], served["baseline"], target.get("decision")))
    missing = answer.get("targets_not_trained", [])
    lines.extend(f"{key}: nothing served yet (not trained)" for key in missing)
    return lines


def _line(label: str, kind: str, baseline: bool, reason: str | None) -> str:
    head = f"{label}: {kind} served"
    if not reason:
        return head
    comparisons = list(COMPARISON.finditer(reason))
    if baseline:
        if not comparisons:
            return f"{head} - {_first_clause(reason)}"
        if reason.startswith(NO_EDGE):
            # one challenger that had to pass on every gate metric: its weakest one decided
            worst = max(comparisons, key=lambda c: _p(c["p"]))
            margin = float(worst["margin"].rstrip("%")) / 100
            loss = f"{abs(margin):.2%} {'lower' if margin >= 0 else 'higher'}"
            return (
                f"{head} - the challenger did not beat it on every gate metric (weakest: "
                f"{worst['metric'].upper()} {loss}, p={_p(worst['p']):.2g})"
            )
        p = min(_p(c["p"]) for c in comparisons)
        return f"{head} - no learned kind beat it significantly (best p={p:.2g})"
    kept = "champion kept ("
    if reason.startswith(kept):
        # its own scores follow the opening parenthesis; others are the challenger's
        comparisons = [c for c in comparisons if c.start() == len(kept)]
    if not comparisons:
        return f"{head} - {_first_clause(reason)}"
    if reason.startswith(kept):
        head += " (champion kept)"
    first = comparisons[0]
    found = BEST_BASELINE.search(reason)
    opponent = found["name"] if found else "persistence"
    ratio = float(first["score"]) / float(first["opponent"]) if float(first["opponent"]) else 0
    return (
        f"{head}, {first['metric'].upper()} {ratio:.2f}x {opponent} "
        f"(p={float(first['p']):.2g}, {first['rows']} rows)"
    )


def _p(text: str) -> float:
    """A p-value as the reason words it; an untestable one ('nan') counts as the worst."""
    value = float(text)
    return 1.0 if math.isnan(value) else value


def _first_clause(reason: str) -> str:
    return re.split(r"[:;]", reason, maxsplit=1)[0].strip()
