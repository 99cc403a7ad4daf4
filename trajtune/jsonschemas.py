"""The one JSON Schema engine for schemas that come with the data (tool ``parameters``).

Data is hostile until checked, and so are the schemas inside it. Every tool schema is compiled by
jsonschema-rs with remote retrieval disabled (a ``$ref`` to ``http://...`` is a data error, never
a request) and with its regex engine bounded (``pattern`` runs on the Rust ``regex`` crate, which
is linear-time; patterns with backreferences or lookaround fall back to fancy-regex with a
backtrack limit), so no record can make a check hang. Failures are explained from the same engine:
validity and explanation can never disagree.

``regex_search`` is the bounded ``re.search`` for regexes that come with the data elsewhere (an
eval task's ``expected.answer`` with ``match: regex``): the ``regex`` package with a timeout.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

# backtracking steps for patterns fancy-regex must backtrack on (backreferences, lookaround):
# about a millisecond of work, far above what a real tool schema needs
BACKTRACK_LIMIT = 100_000
# seconds one data-supplied regex may run (an eval task's expected answer)
REGEX_TIMEOUT = 0.5
MAX_SCHEMA_DEPTH = 64


class SchemaProblem(ValueError):
    """A schema that cannot be used (invalid, remote $ref, too deep): the message says why."""


def _walk_refs(node: Any, depth: int = 0) -> str | None:
    """The first ``$ref``/``$dynamicRef`` that is not local to the schema, else None."""
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaProblem(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("$ref", "$dynamicRef") and isinstance(v, str) and not v.startswith("#"):
                return v
            if isinstance(v, (dict, list)):
                found = _walk_refs(v, depth + 1)
                if found:
                    return found
    elif isinstance(node, list):
        for v in node:
            found = _walk_refs(v, depth + 1)
            if found:
                return found
    return None


def _short(text: str, n: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path)


class ArgSchema:
    """One compiled ``parameters`` schema: ``is_valid(value)`` and ``errors(value)``.

    ``schema_error`` is set (and every value passes) when the schema itself cannot be used.
    """

    __slots__ = ("schema", "schema_error", "_v")

    def __init__(self, schema: Any):
        import jsonschema_rs

        self.schema = schema
        self.schema_error: str | None = None
        self._v = None
        try:
            ref = _walk_refs(schema)
        except SchemaProblem as exc:
            self.schema_error = str(exc)
            return
        if ref is not None:
            self.schema_error = (f"$ref {_short(ref, 80)!r} points outside the record; schemas are resolved offline "
                                 "(inline it under $defs)")
            return
        try:
            jsonschema_rs.meta.validate(schema)
        except jsonschema_rs.ValidationError as exc:
            where = _where(exc.instance_path)
            self.schema_error = _short(exc.message) + (f" at {where}" if where else "")
            return
        except Exception as exc:  # e.g. a $schema naming an unknown draft
            self.schema_error = _short(f"{type(exc).__name__}: {exc}")
            return
        try:
            self._v = jsonschema_rs.Draft202012Validator(
                schema, offline=True, validate_formats=False,
                pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=BACKTRACK_LIMIT))
        except Exception as exc:  # an unresolvable local $ref, a pattern the engine rejects
            self.schema_error = _short(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    def is_valid(self, value: Any) -> bool:
        return self._v is None or self._v.is_valid(value)

    def errors(self, value: Any, limit: int = 3) -> list[str]:
        """Plain messages for what is wrong with ``value`` ([] when valid)."""
        if self._v is None or self._v.is_valid(value):
            return []
        out = []
        for err in self._v.iter_errors(value):
            where = _where(err.instance_path)
            out.append(_short(err.message) + (f" (at {where})" if where else ""))
            if len(out) >= limit:
                break
        return sorted(out)


_CACHE: dict[bytes, ArgSchema] = {}


def arg_schema(schema: Any) -> ArgSchema:
    """The cached compiled schema for one distinct ``parameters`` schema."""
    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        key = repr(schema).encode()
    v = _CACHE.get(key)
    if v is None:
        if len(_CACHE) > 20000:  # bounded memory on files with endless distinct tools
            _CACHE.clear()
        v = _CACHE[key] = ArgSchema(schema)
    return v


class RegexTimeout(ValueError):
    pass


@lru_cache(maxsize=1024)
def _compiled(pattern: str):
    import regex

    return regex.compile(pattern, regex.S | regex.V0)


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid regex, or None."""
    import regex

    try:
        _compiled(pattern)
    except (regex.error, RecursionError, OverflowError) as exc:
        return str(exc) or type(exc).__name__
    return None


def regex_search(pattern: str, text: str, timeout: float = REGEX_TIMEOUT) -> bool:
    """``re.search(pattern, text, re.S)`` that gives up after ``timeout`` seconds (RegexTimeout)."""
    try:
        return _compiled(pattern).search(text, timeout=timeout) is not None
    except TimeoutError:
        raise RegexTimeout(f"regex {_short(pattern, 60)!r} ran longer than {timeout:g} s") from None
