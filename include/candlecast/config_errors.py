"""One line for a mistake in the pair config: the file, the line, the section, and the
nearest known key for a typo.

pydantic reports an error per validated pair, at the merged entry (``pairs.0.training``):
a typo in ``defaults`` is reported once per pair, at none of the lines the user wrote. Here
each error is traced back to where its key is written (the pair's own entry, else
``defaults``) and its line in the YAML, and the same mistake is reported once.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


def describe(
    exc: ValidationError, raw: dict[str, Any], text: str, path: Path, pair_model: type[BaseModel]
) -> str:
    """The config's first mistake as ``<file>:<line>: <section.key>: <what>`` (and how many
    more there are)."""
    seen: dict[Loc, str] = {}
    for error in exc.errors():
        written = _written_at(tuple(error["loc"]), raw)
        seen.setdefault(written, _what(error, pair_model))
    (where, what), more = next(iter(seen.items())), len(seen) - 1
    line = _line(text, where)
    dotted = ".".join(str(part) for part in where) or "pairs"
    found = f"{path}{f':{line}' if line else ''}: {dotted}: {what}"
    return found + (f" (and {more} more mistake{'s' * (more > 1)})" if more else "")


def _written_at(loc: Loc, raw: dict[str, Any]) -> Loc:
    """Where in the file the value at a merged entry's ``loc`` comes from."""
    if len(loc) < 3 or loc[0] != "pairs" or not isinstance(loc[1], int):
        return loc
    entries = raw.get("pairs") or []
    entry = entries[loc[1]] if loc[1] < len(entries) else None
    rest = loc[2:]
    if _has(entry, rest) or not _has(raw.get("defaults"), rest):
        return loc
    return ("defaults", *rest)


def _has(tree: Any, keys: Loc) -> bool:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _what(error: Any, pair_model: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    if error["type"] != "extra_forbidden":
        return str(error["msg"])
    key = str(loc[-1])
    known = _known_keys(pair_model, loc[2:-1] if loc[:1] == ("pairs",) else loc[:-1])
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key '{key}'{hint}"


def _known_keys(model: type[BaseModel], path: Loc) -> list[str]:
    """The keys a section accepts: the fields of the model at ``path`` under ``model``."""
    for part in path:
        field = model.model_fields.get(str(part))
        inner = _model_of(field.annotation) if field else None
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _line(text: str, where: Loc) -> int | None:
    """The 1-based line of the key at ``where`` in the YAML (its deepest part written there)."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in where:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(part)]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
