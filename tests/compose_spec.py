"""What ``docker compose`` does to a Compose file before it runs it, for tests without Docker:
read an ``.env`` file, interpolate variables, and validate against the Compose specification's
JSON schema (vendored in ``deploy/schema/``).

Interpolation follows the specification (compose-spec ``12-interpolation.md``): ``$VAR`` and
``${VAR}``; ``${VAR:-default}`` (unset or empty) and ``${VAR-default}`` (unset); ``${VAR:?err}``
and ``${VAR?err}`` fail the same way; defaults and messages may nest; ``$$`` is a literal
``$``; a ``$`` that starts no variable is kept. Values are interpolated, mapping keys are not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "deploy" / "schema" / "compose-spec.json"

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", "-", "?")


class InterpolationError(ValueError):
    """A required variable is missing (``${VAR:?err}``), or the syntax is invalid."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with its variables replaced from ``env``."""
    out, _ = _scan(text, 0, env, stop=None)
    return out


def _scan(text: str, i: int, env: Mapping[str, str], stop: str | None) -> tuple[str, int]:
    """Interpolate from ``i`` until ``stop`` (a closing brace of an enclosing ``${``) or the
    end; returns the text and the index just after ``stop``."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if stop is not None and char == stop:
            return "".join(out), i + 1
        if char != "$":
            out.append(char)
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif name := _NAME.match(text, i + 1):
            out.append(env.get(name.group(), ""))
            i = name.end()
        else:  # a lone $: kept
            out.append(char)
            i += 1
    if stop is not None:
        raise InterpolationError(f"unclosed ${{ in {text!r}")
    return "".join(out), i


def _braced(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """The value of ``${...}`` whose name starts at ``i``; returns it and the index after ``}``."""
    name = _NAME.match(text, i)
    if name is None:
        raise InterpolationError(f"invalid variable name in {text!r}")
    variable, i = name.group(), name.end()
    if text.startswith("}", i):
        return env.get(variable, ""), i + 1
    operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
    if operator is None:
        raise InterpolationError(f"unsupported syntax after ${{{variable} in {text!r}")
    argument, end = _scan(text, i + len(operator), env, stop="}")
    value = env.get(variable)
    missing = value is None or (operator.startswith(":") and value == "")
    if not missing:
        return str(value), end
    if operator.endswith("-"):
        return argument, end
    raise InterpolationError(f"required variable {variable} is missing a value: {argument}")


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of a parsed YAML document interpolated (keys left alone)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return interpolate(node, env) if isinstance(node, str) else node


def missing_variables(node: Any) -> dict[str, str]:
    """Every variable a document requires: name -> its ``${...:?}`` form (nested included)."""
    found = {}
    for text in _strings(node):
        for match in re.finditer(r"\$\{([_A-Za-z][_A-Za-z0-9]*):?\?", text.replace("$$", "")):
            found[match.group(1)] = match.group(0)
    return found


def defaults(node: Any) -> dict[str, list[str]]:
    """Variable -> the defaults the document gives it (``${VAR:-x}`` and ``${VAR-x}``)."""
    found: dict[str, list[str]] = {}
    for text in _strings(node):
        for match in re.finditer(r"\$\{([_A-Za-z][_A-Za-z0-9]*):?-([^}]*)\}", text):
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def read_env_file(path: Path) -> dict[str, str]:
    """An ``.env`` file as Compose reads it: ``VAR=VAL`` lines, ``#`` comments, quotes (single
    quotes literal, double quotes with escapes), inline comments after a space; unquoted and
    double-quoted values are interpolated with the variables defined above them."""
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, equals, value = line.partition("=")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise InterpolationError(f"{path}:{number}: not VAR=VAL: {raw!r}")
        if not equals:
            continue  # `VAR` alone: unset
        env[name] = _env_value(value.strip(), env)
    return env


def _env_value(value: str, env: Mapping[str, str]) -> str:
    if value[:1] == "'":
        return value[1 : value.index("'", 1)]
    if value[:1] == '"':
        end = 1
        while value[end] != '"':
            end += 2 if value[end] == "\\" else 1
        unescaped = json.loads('"' + value[1:end].replace("\\'", "'") + '"')
        return interpolate(unescaped, env)
    return interpolate(re.split(r"\s+#", value, maxsplit=1)[0], env)


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def validate(document: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``document`` (after interpolation) is a
    valid Compose file."""
    import jsonschema

    jsonschema.validate(document, schema(), cls=jsonschema.Draft7Validator)
