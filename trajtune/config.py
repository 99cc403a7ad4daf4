"""One typed config per stage: dataclass defaults < ``--config`` YAML < flags.

YAML keys equal field names. An unknown key is an error naming the nearest valid key, never
silently dropped. YAML is read with ``safe_load`` only.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from trajtune.errors import ConfigError

T = TypeVar("T")

# keys whose values are secrets: api_key, hf_token, client_secret, password (not max_tokens)
SECRET_KEY = re.compile(r"(^|_)(api_key|apikey|token|secret|password)$", re.I)


def field(default: Any = dataclasses.MISSING, *, help: str = "", default_factory: Any = dataclasses.MISSING,
          positional: bool = False, flags: tuple[str, ...] = (), metavar: str | None = None,
          choices: tuple | None = None, cli: bool = True, output: bool = False, split: bool = True):
    """A config field: the one declaration of an option (YAML key, flag, ``--set`` key, help text).

    ``positional``: a command-line argument (a list type takes any number of them); ``flags``:
    extra flag names (``("-o",)``); ``choices``: allowed values (``Literal`` types give them too);
    ``cli=False``: YAML and ``--set`` only (e.g. mappings); ``output``: a path the command writes
    (``-`` is stdout, which then cannot carry ``--json``); ``split=False``: a list option's values
    are taken whole (paths, stop strings), not split on commas.
    """
    kw: dict[str, Any] = {"metadata": {"help": help, "positional": positional, "flags": tuple(flags),
                                       "metavar": metavar, "choices": tuple(choices) if choices else None,
                                       "cli": cli, "output": output, "split": split}}
    if default_factory is not dataclasses.MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return dataclasses.field(**kw)


# YAML from users is bounded: nesting depth, the size of the document once aliases are expanded
# (a "billion laughs" file is tiny on disk), and the file's size
MAX_YAML_DEPTH = 100
MAX_YAML_NODES = 200_000
MAX_YAML_BYTES = 16 << 20


class _Bounded(yaml.SafeLoader):
    """safe_load with a depth limit and an alias-expansion budget, checked while composing."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:  # nodes once aliases are expanded; shared nodes are counted once per use
            got = sizes.get(id(n))
            if got is None:
                kids = n.value if isinstance(n, yaml.SequenceNode) else \
                    [x for kv in n.value for x in kv] if isinstance(n, yaml.MappingNode) else []
                got = sizes[id(n)] = 1 + sum(size(k) for k in kids)
                if got > MAX_YAML_NODES:
                    raise yaml.composer.ComposerError(
                        None, None, f"expands (through aliases) to more than {MAX_YAML_NODES:,} values", n.start_mark)
            return got

        if node is not None:
            size(node)
        return node


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file users hand us (config, catalog, id list): clear errors, bounded size."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} not found: {p}")
    if not p.is_file():
        raise ConfigError(f"{what} {p} is not a regular file")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {p} is larger than {MAX_YAML_BYTES >> 20} MB")
    data = p.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", path=str(p), line=line,
                          hint="save the file as UTF-8") from None


def safe_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` bounded in depth and alias expansion; errors are ConfigError with file:line."""
    try:
        return yaml.load(text, Loader=_Bounded)  # noqa: S506 - _Bounded is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {str(problem)[:200]}", path=source, line=line) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", path=source) from None


def short(value: Any, n: int = 80) -> str:
    """A value as shown in a message: bounded whatever its size (reprlib), never its expansion."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 3, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = n, n, 40
    text = r.repr(value)
    return text if len(text) <= n + 2 else text[:n] + "..."


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    data = safe_yaml(read_text(p, "config file"), str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of key: value", path=str(p))
    return data


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _nearest_value(value: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(valid))}"


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    """Check/convert a value to the field's annotated type (bool/int/float/str/list/dict/Optional)."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing))  # annotations from `from __future__ import annotations`
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a, source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if errors else ConfigError(f"{name}: bad value {short(value)}", path=source)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}, got {short(value)}", path=source)
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name} must be true or false, got {short(value)}", path=source)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name} must be an integer, got {short(value)}", path=source)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {short(value)}", path=source) from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {short(value)}", path=source)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {short(value)}", path=source) from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name} must be a string, got {short(value)}", path=source)
        return str(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {short(value)}", path=source)
        if args:
            return [_coerce(name, v, args[0], source) for v in value]
        return list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {short(value)}", path=source)
        return value
    return value


def build(cls: type[T], file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Resolve a stage config: defaults < YAML file < overrides (flags; None means 'not given')."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    if file:
        data = load_yaml(file)
        for key, val in data.items():
            if key not in fields:
                raise ConfigError(f"unknown config key '{key}'" + _nearest(str(key), list(fields)), path=str(file))
            values[key] = _coerce(key, val, hints[key], str(file))
    for key, val in (overrides or {}).items():
        if val is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown option '{key}'" + _nearest(key, list(fields)))
        values[key] = _coerce(key, val, hints[key], flag_name(key))
    for f in dataclasses.fields(cls):
        allowed = f.metadata.get("choices") if f.metadata else None
        if allowed and f.name in values and values[f.name] is not None:
            for v in values[f.name] if isinstance(values[f.name], list) else [values[f.name]]:
                if v not in allowed:
                    raise ConfigError(f"{flag_name(f.name)} must be one of {', '.join(map(str, allowed))}, got {short(v)}"
                                      + _nearest_value(str(v), [str(a) for a in allowed]))
    try:
        cfg = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"incomplete config: {exc}") from None
    check = getattr(cfg, "check", None)
    if callable(check):
        check()
    return cfg


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` overrides (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = safe_yaml(v, f"--set {k.strip()}")
    return out


def to_dict(cfg: Any) -> dict:
    """The resolved config as a plain dict, with secret-looking values redacted."""
    out = dataclasses.asdict(cfg)
    for k in list(out):
        if SECRET_KEY.search(k):
            out[k] = "***" if out[k] else out[k]
    return out


def save(cfg: Any, path: str | Path) -> None:
    from trajtune.jsonl import atomic_writer

    with atomic_writer(path, "w") as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)
