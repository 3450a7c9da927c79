"""Every dashboard file holds against Grafana's dashboard JSON schema (vendored from the
Grafana Foundation SDK under deploy/grafana/schema/): the dashboard itself, each panel's
options against its panel plugin's schema, and each Prometheus query against the Prometheus
datasource's; and a broken dashboard is rejected."""

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft7Validator

from tests.helpers import REPO

SCHEMAS = REPO / "deploy" / "grafana" / "schema"
BOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))


def validator(kind: str, definition: str | None = None) -> Draft7Validator:
    schema = json.loads((SCHEMAS / f"{kind}.jsonschema.json").read_text())
    if definition is not None:  # one definition of the file, its references kept
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def problems(board: dict[str, Any]) -> list[str]:
    """Every schema violation of a dashboard, as 'where: what'."""
    found: list[tuple[tuple[str, ...], Any]] = [
        (("dashboard",), e) for e in validator("dashboard").iter_errors(board)
    ]
    for panel in board.get("panels", []):
        kind = panel.get("type")
        where = f"panel {panel.get('title')!r}"
        if (SCHEMAS / f"{kind}.jsonschema.json").exists():
            options = validator(str(kind), "Options").iter_errors(panel.get("options", {}))
            found += [((where, "options"), e) for e in options]
            custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {})
            found += [
                ((where, "custom"), e)
                for e in validator(str(kind), "FieldConfig").iter_errors(custom)
            ]
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("type") == "prometheus":
                errors = validator("prometheus", "Dataquery").iter_errors(target)
                found += [((where, target.get("refId", "?")), e) for e in errors]
    return [f"{' '.join(w)} {list(e.absolute_path)}: {e.message}" for w, e in found]


def test_every_kind_of_dashboard_is_vendored():
    names = {b.name for b in BOARDS}
    assert "service-health.json" in names and any(n.startswith("cc-") for n in names)
    kinds = {p["type"] for b in BOARDS for p in json.loads(b.read_text())["panels"]}
    assert kinds <= {"timeseries", "table"}  # each has its panel schema vendored


@pytest.mark.parametrize("path", BOARDS, ids=[b.name for b in BOARDS])
def test_dashboard_file_holds_against_grafanas_schema(path):
    assert problems(json.loads(path.read_text())) == []


def _corrupt(board: dict[str, Any], change: str) -> dict[str, Any]:
    board = copy.deepcopy(board)
    timeseries = next(p for p in board["panels"] if p["type"] == "timeseries")
    if change == "no templating":
        del board["templating"]
    elif change == "unknown key":
        board["rows"] = []  # the pre-5.0 layout Grafana no longer reads
    elif change == "schemaVersion as text":
        board["schemaVersion"] = "39"
    elif change == "panel without type":
        del timeseries["type"]
    elif change == "grid position as text":
        timeseries["gridPos"]["w"] = "12"
    elif change == "legend mode misspelt":
        timeseries["options"]["legend"]["displayMode"] = "lists"
    elif change == "tooltip without sort":
        del timeseries["options"]["tooltip"]["sort"]
    elif change == "query without expression":
        del timeseries["targets"][0]["expr"]
    elif change == "annotation without colour":
        del board["annotations"]["list"][0]["iconColor"]
    return board


CHANGES = [
    "no templating",
    "unknown key",
    "schemaVersion as text",
    "panel without type",
    "grid position as text",
    "legend mode misspelt",
    "tooltip without sort",
    "query without expression",
    "annotation without colour",
]


@pytest.mark.parametrize("change", CHANGES)
def test_a_broken_dashboard_is_rejected(change):
    board = json.loads(next(b for b in BOARDS if b.name.startswith("cc-")).read_text())
    assert problems(board) == []
    assert problems(_corrupt(board, change)) != []
