"""The tool catalog: tools with JSON-Schema parameters and a small simulator each.

Catalog files are YAML (``data/tools/*.yaml``), one list of tools per file::

    - name: database_query
      category: data
      description: Run a read-only SQL query.      # short: it is rendered into every prompt
      parameters: {type: object, properties: {...}, required: [...]}
      simulate:
        defaults: {limit: 10}                      # values for optional args in the templates
        cases:                                     # first match wins; `when` compares arguments
          - when: {table: missing_table}
            error: "no such table: {table}"
        result: "{limit} rows from {table}: ..."   # str.format over arguments + defaults

``Tool.simulate(arguments)`` checks the arguments against ``parameters`` (offline, bounded: trajtune.jsonschemas) and
returns an ``Error: ...`` observation for bad ones, as a real tool would; otherwise it fills the
first matching case or the result template. Templates may use ``{arg}``, ``{arg!u}`` (upper),
and ``{arg|len}`` (length of a list/str). Output is deterministic for the same arguments.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


from trajtune.config import read_text, safe_yaml
from trajtune.errors import ConfigError, DataError
from trajtune.jsonschemas import arg_schema

CATEGORIES = ("coding", "debugging", "refactoring", "devops", "data")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|(len|upper|lower|hash))?\}")


def default_catalog_dir() -> Path:
    """``data/tools`` of the source tree (the package is installed editable from it)."""
    return Path(__file__).resolve().parent.parent / "data" / "tools"


@dataclass
class Tool:
    name: str
    description: str
    category: str
    parameters: dict
    simulator: dict = field(default_factory=dict)
    source: str = ""
    result_schema: dict | None = None  # foreign catalogs: the declared result (simulated when no `simulate`)
    meta: dict = field(default_factory=dict)  # x-trajtune: domain, family, sense, split, style

    @property
    def split(self) -> str:
        """``eval`` for a synthetic tool held out of training (whole families), else ``train``."""
        return str(self.meta.get("split") or "train")

    def openai(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def check(self, arguments: Any) -> list[str]:
        """Problems with ``arguments`` under this tool's parameters (empty when valid)."""
        if not isinstance(arguments, dict):
            return [f"arguments must be a JSON object, got {type(arguments).__name__}"]
        return arg_schema(self.parameters).errors(arguments, limit=10)

    def simulate(self, arguments: Any) -> str:
        """A plausible observation for a call; ``Error: ...`` for bad arguments."""
        errs = self.check(arguments)
        if errs:
            return f"Error: invalid arguments for {self.name}: " + "; ".join(errs)
        if "result" not in self.simulator:  # a foreign tool: a result shaped by its declared schema
            from trajtune.generators.values import result

            return result(self.name, arguments, self.result_schema)
        values = dict(self.simulator.get("defaults") or {})
        values.update(arguments)
        for case in self.simulator.get("cases") or []:
            when = case.get("when") or {}
            if all(_matches(values.get(k), want) for k, want in when.items()):
                if "error" in case:
                    return "Error: " + _fill(case["error"], values)
                return _fill(case.get("result", ""), values)
        return _fill(self.simulator.get("result", "ok"), values)


def _matches(value: Any, want: Any) -> bool:
    if isinstance(want, str) and want.startswith("~"):  # substring test: "~.py"
        return isinstance(value, str) and want[1:] in value
    return value == want


def _fill(template: str, values: dict) -> str:
    def sub(m: re.Match) -> str:
        key, op = m.group(1), m.group(2)
        if key not in values:
            return m.group(0)
        v = values[key]
        if op == "len":
            return str(len(v)) if hasattr(v, "__len__") else "1"
        if op == "upper":
            return str(v).upper()
        if op == "lower":
            return str(v).lower()
        if op == "hash":  # short stable hex, e.g. a commit sha
            return hashlib.sha1(str(v).encode()).hexdigest()[:7]
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return ", ".join(map(str, v))
        return str(v)

    return _FIELD.sub(sub, template).strip()


@dataclass
class Catalog:
    tools: dict[str, Tool]
    sources: list[str] = field(default_factory=list)
    # tools of an OpenAI / MCP / OpenAPI document left out, as (file, message): one unusable
    # operation does not make a whole API unusable; `generate tools --check` reports them
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    def openai_tools(self, names: Iterable[str]) -> list[dict]:
        """OpenAI-style tool specs for ``names`` in the given order (unknown names raise KeyError)."""
        return [self.tools[n].openai() for n in names]

    def by_category(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t in self.tools.values():
            out.setdefault(t.category, []).append(t.name)
        return out


def paths(path: str | Path | list | tuple | None) -> list[Path | None]:
    """``--catalog`` values: none (the default catalog), one path, or several (merged)."""
    if path is None or (isinstance(path, (list, tuple)) and not path):
        return [None]
    if isinstance(path, (list, tuple)):
        return [Path(p) for p in path]
    return [Path(path)]


def _files(path: str | Path | list | tuple | None) -> list[Path]:
    out: list[Path] = []
    for q in paths(path):
        p = q if q is not None else default_catalog_dir()
        if p.is_dir():
            files = sorted(list(p.glob("*.yaml")) + list(p.glob("*.yml")) + list(p.glob("*.json")))
            if not files:
                raise ConfigError(f"{p}: no *.yaml or *.json tool files in this folder")
            out += files
        elif not p.is_file():
            raise ConfigError(f"tool catalog not found: {p}",
                              hint="pass a YAML/JSON file or a folder of them with --catalog (OpenAI tools, MCP tools/list, OpenAPI 3)")
        else:
            out.append(p)
    return out


def is_default(path: str | Path | list | tuple | None) -> bool:
    return paths(path) == [None]


def _foreign(f: Path, data: Any, tools: dict, problems: list, skipped: list) -> bool:
    """Tools of an OpenAI / MCP / OpenAPI document into ``tools``; False when ``data`` is ours."""
    from trajtune.generators import toolsrc

    k = toolsrc.kind(data)
    if k in (None, "trajtune"):
        return False
    found, probs = toolsrc.parse(data)
    for msg in probs:
        problems.append((str(f), None, msg))
    for t in found:
        name = t["name"]
        where = f"tool {name!r}"
        if not isinstance(name, str) or not _NAME.match(name):
            skipped.append((str(f), f"{where}: `name` must match [A-Za-z0-9_.-]{{1,64}}"))
            continue
        if name in tools:
            problems.append((str(f), None, f"{where}: duplicate name (first defined in {tools[name].source})"))
            continue
        params = t["parameters"]
        problem = arg_schema(params).schema_error if isinstance(params, dict) and params.get("type") == "object" else \
            "`parameters` must be a JSON Schema with type: object"
        if not problem:
            props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
            missing = [r for r in params.get("required") or [] if r not in props]
            if missing:
                problem = f"required parameter {missing[0]!r} is not in properties"
        if problem:
            skipped.append((str(f), f"{where}: `parameters` is not a usable JSON Schema: {problem}"))
            continue
        tools[name] = Tool(name=name, description=" ".join(t["description"].split()) or " ".join(name.split("_")),
                           category=t["category"], parameters=t["parameters"], simulator={}, source=str(f),
                           result_schema=t.get("result") if isinstance(t.get("result"), dict) else None,
                           meta=t.get("meta") or {})
    return True


def _line_of(text: str, name: str) -> int | None:
    m = re.search(rf"^\s*-?\s*name:\s*['\"]?{re.escape(name)}['\"]?\s*$", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and check a catalog (a YAML file or a folder of them; default ``data/tools``).

    Raises DataError naming file:line for a malformed tool (all problems are collected by
    :func:`check_catalog`; this raises on the first).
    """
    cat, problems = _load(path)
    if cat.skipped and not problems:
        from rich.markup import escape

        from trajtune.console import err_console

        for src, msg in cat.skipped[:5]:
            err_console.print(f"[yellow]Warning:[/] {escape(src)}: {escape(msg)}: left out", soft_wrap=True)
        if len(cat.skipped) > 5:
            err_console.print(f"[yellow]Warning:[/] {len(cat.skipped) - 5} more tools left out "
                              "(`trajtune generate tools --check` lists them)", soft_wrap=True)
    if not cat.tools and cat.skipped and not problems:
        raise DataError(f"no usable tool: {cat.skipped[0][1]}", path=cat.skipped[0][0])
    if problems:
        src, line, msg = problems[0]
        more = f" (+{len(problems) - 1} more problems; run `trajtune generate tools --check`)" if len(problems) > 1 else ""
        raise DataError(msg + more, path=src, line=line)
    return cat


def check_catalog(path: str | Path | None = None) -> tuple[Catalog, list[tuple[str, int | None, str]]]:
    """Load a catalog collecting every problem as (file, line, message), tools left out included."""
    cat, problems = _load(path)
    return cat, problems + [(src, None, msg) for src, msg in cat.skipped]


def _parse_json(text: str, f: Path) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", path=str(f), line=exc.lineno) from None
    except RecursionError:
        raise ConfigError("JSON nested too deeply", path=str(f)) from None


def _load(path: str | Path | list | None) -> tuple[Catalog, list[tuple[str, int | None, str]]]:
    tools: dict[str, Tool] = {}
    problems: list[tuple[str, int | None, str]] = []
    skipped: list[tuple[str, str]] = []
    files = _files(path)
    for f in files:
        try:
            text = read_text(f, "tool catalog")
            data = _parse_json(text, f) if f.suffix == ".json" else safe_yaml(text, str(f))
        except ConfigError as exc:
            problems.append((str(f), exc.line, exc.message))
            continue
        if _foreign(f, data, tools, problems, skipped):
            continue
        if isinstance(data, dict) and "tools" in data:
            data = data["tools"]
        if not isinstance(data, list):
            problems.append((str(f), 1, "a tool file must be a list of tools (or a mapping with a `tools:` list)"))
            continue
        for i, t in enumerate(data):
            if not isinstance(t, dict):
                problems.append((str(f), None, f"tool #{i + 1} is not a mapping"))
                continue
            name = t.get("name")
            line = _line_of(text, name) if isinstance(name, str) else None
            where = f"tool {name!r}" if name else f"tool #{i + 1}"

            def bad(msg: str) -> None:
                problems.append((str(f), line, f"{where}: {msg}"))

            if not isinstance(name, str) or not _NAME.match(name):
                bad("`name` must match [A-Za-z0-9_.-]{1,64}")
                continue
            if name in tools:
                bad(f"duplicate name (first defined in {tools[name].source})")
                continue
            unknown = set(t) - {"name", "description", "category", "parameters", "simulate"}
            if unknown:
                bad(f"unknown key(s) {', '.join(sorted(unknown))}")
            desc = t.get("description")
            if not isinstance(desc, str) or not desc.strip():
                bad("`description` is required")
            cat = t.get("category")
            if cat not in CATEGORIES:
                bad(f"`category` must be one of {', '.join(CATEGORIES)}, got {cat!r}")
            params = t.get("parameters")
            if not isinstance(params, dict) or params.get("type") != "object":
                bad("`parameters` must be a JSON Schema with type: object")
                params = {"type": "object", "properties": {}}
            else:
                problem = arg_schema(params).schema_error
                if problem:
                    bad(f"`parameters` is not a usable JSON Schema: {problem}")
                props = params.get("properties") or {}
                for req in params.get("required") or []:
                    if req not in props:
                        bad(f"required parameter {req!r} is not in properties")
            sim = t.get("simulate") or {}
            if not isinstance(sim, dict):
                bad("`simulate` must be a mapping (result, cases, defaults)")
                sim = {}
            elif "result" not in sim:
                bad("`simulate.result` (the observation template) is required")
            else:
                props = (params.get("properties") or {}) if isinstance(params, dict) else {}
                known = set(props) | set(sim.get("defaults") or {})
                templates = [sim["result"]] + [c.get(k, "") for c in sim.get("cases") or [] if isinstance(c, dict)
                                               for k in ("result", "error")]
                for tpl in templates:
                    for m in _FIELD.finditer(str(tpl)):
                        if m.group(1) not in known:
                            bad(f"simulate template uses {{{m.group(1)}}}, which is not a parameter or default")
                for c in sim.get("cases") or []:
                    if not isinstance(c, dict) or not isinstance(c.get("when"), dict):
                        bad("each simulate case needs a `when:` mapping")
            tools[name] = Tool(name=name, description=str(desc or "").strip(), category=str(cat),
                               parameters=params, simulator=sim, source=str(f))
    if not tools and not problems:
        problems.append((str(files[0]), None, "the catalog defines no tools"))
    return Catalog(tools=tools, sources=[str(f) for f in files], skipped=skipped), problems


def check_tools(catalog: str | Path | None = None, templates: str | Path | None = None, *,
                with_templates: bool = False) -> tuple[Catalog, list[tuple[str, int | None, str]]]:
    """`generate tools --check`: every catalog problem, then (optionally) the templates against it."""
    cat, problems = check_catalog(catalog)
    if with_templates and not problems:
        from trajtune.generators.templates import load_templates

        try:  # the default templates beside a user's catalog: those calling its tools
            load_templates(templates, cat, lenient=templates is None and not is_default(catalog))
        except DataError as exc:
            problems.append((exc.path or "", exc.line, exc.message))
    return cat, problems
