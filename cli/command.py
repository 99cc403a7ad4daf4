"""Commands generated from stages: the ``Config`` dataclass is the only declaration of an option.

``register(app, stage)`` turns a :class:`trajtune.stage.Stage` into a Typer command: one
argument or option per config field (type, default, help and choices from the field), plus the
options every command shares, ``--config FILE.yaml``, ``--set KEY=VALUE`` and ``--json``.
Precedence: dataclass defaults < ``--config`` < ``--set`` < flags. ``script(stage)`` runs the
same command as a script (``python -m trajtune.scripts.<command> ...``, also under ``torchrun``
or ``accelerate launch``), so a stage has one command line wherever it runs.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import types
import typing
from typing import Any, List, Optional

import typer

from trajtune.stage import Stage
# the options every command has besides its Config fields
COMMON = ("--config", "--set", "--json", "--help")


def _shape(tp: Any) -> tuple[str, tuple | None]:
    """('bool' | 'list' | 'dict' | 'int' | 'float' | 'str', choices) of a field's annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _shape(inner[0])
        return "value", None  # e.g. int | "auto": read as text, coerced by trajtune.config.build
    if origin is typing.Literal:
        return "str", args
    if tp is bool:
        return "bool", None
    if origin in (list, tuple) or tp in (list, tuple):
        return "list", None
    if origin is dict or tp is dict:
        return "dict", None
    if tp is int:
        return "int", None
    if tp is float:
        return "float", None
    return "str", None


METAVAR = {"int": "INT", "float": "NUM", "str": "TEXT", "list": "TEXT", "value": "VALUE"}


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        d = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        d = f.default_factory()  # type: ignore[misc]
    else:
        return ""
    if d is None or d == [] or d == "":
        return ""
    if isinstance(d, bool):
        return ""
    if isinstance(d, list):
        d = ",".join(map(str, d))
    return f" \\[default: {d}]"  # escaped: rich would read [default: ...] as markup


def options(cls: type) -> list[tuple[dataclasses.Field, str, tuple | None]]:
    """(field, shape, choices) of every field that is a command-line argument or option."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        shape, choices = _shape(hints[f.name])
        if shape == "dict":
            continue  # mappings: --config / --set only
        out.append((f, shape, f.metadata.get("choices") or choices))
    return out


def yaml_only(cls: type) -> list[str]:
    """Fields that are not flags (mappings, cli=False): set them with --config or --set."""
    flagged = {f.name for f, _, _ in options(cls)}
    return [f.name for f in dataclasses.fields(cls) if f.name not in flagged]


def flag_names(f: dataclasses.Field) -> list[str]:
    return ["--" + f.name.replace("_", "-"), *f.metadata.get("flags", ())]


def _parameters(stage: Stage) -> tuple[list[inspect.Parameter], dict[str, str]]:
    params: list[inspect.Parameter] = []
    names: dict[str, str] = {}
    for f, shape, choices in options(stage.config):
        meta = f.metadata
        text = meta.get("help", "")
        if choices:
            text += f" (one of: {', '.join(map(str, choices))})"
        text += _default_text(f)
        pname = f"opt_{f.name}"
        names[pname] = f.name
        if meta.get("positional"):
            ann: Any = Optional[List[str]] if shape == "list" else Optional[str]
            metavar = meta.get("metavar") or f.name.upper()
            default = typer.Argument(None, metavar=metavar, help=text,
                                     show_default=False)
        elif shape == "bool":
            ann = Optional[bool]
            long = f.name.replace("_", "-")
            default = typer.Option(None, f"--{long}/--no-{long}", *meta.get("flags", ()), help=text, show_default=False)
        else:
            ann = Optional[List[str]] if shape == "list" else Optional[str]
            metavar = meta.get("metavar") or ("|".join(map(str, choices)) if choices and len(choices) <= 4
                                              else METAVAR.get(shape, "TEXT"))
            if shape == "list":
                text += " (repeat the flag, or comma-separated)" if meta.get("split", True) else " (repeat the flag)"
            default = typer.Option(None, *flag_names(f), metavar=metavar, help=text, show_default=False)
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann))
    rest = yaml_only(stage.config)
    set_help = "any config key: --set KEY=VALUE (repeatable; values read as YAML)"
    if rest:
        set_help += "; keys with no flag of their own: " + ", ".join(rest)
    params += [
        inspect.Parameter("common_config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--config", metavar="FILE.yaml",
                                               help="YAML file of config keys (flags and --set override it)")),
        inspect.Parameter("common_set", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[List[str]],
                          default=typer.Option(None, "--set", metavar="KEY=VALUE", help=set_help)),
        inspect.Parameter("common_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="print the summary as JSON on stdout")),
    ]
    return params, names


def _split_commas(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def resolve(stage: Stage, kwargs: dict[str, Any], names: dict[str, str]) -> Any:
    """The stage's config from parsed command-line values (defaults < --config < --set < flags)."""
    from trajtune import config as cfglib

    overrides = cfglib.parse_set(kwargs.pop("common_set", None))
    whole = {f.name for f, _, _ in options(stage.config) if f.metadata.get("positional") or not f.metadata.get("split", True)}
    for pname, value in kwargs.items():
        if pname not in names or value is None or (isinstance(value, list) and not value):
            continue
        field = names[pname]
        if isinstance(value, list) and field not in whole:
            value = _split_commas(value)
        overrides[field] = value
    return cfglib.build(stage.config, kwargs.get("common_config"), overrides)


def callback(stage: Stage):
    """The Typer callback of ``stage``: its signature is generated from the config fields."""
    params, names = _parameters(stage)

    def command(**kwargs: Any) -> None:
        from trajtune.errors import UsageError

        as_json = kwargs.pop("common_json", False)
        cfg = resolve(stage, dict(kwargs), names)
        outputs = [f.name for f in dataclasses.fields(stage.config) if f.metadata.get("output")]
        if as_json and any(getattr(cfg, o, None) == "-" for o in outputs):
            raise UsageError("--json and an output of '-' both use stdout", hint="write the output to a file")
        summary = stage.execute(cfg)  # run(cfg) + its lineage manifest and registry entry
        if stage.render is not None:
            if "as_json" in inspect.signature(stage.render).parameters:
                stage.render(summary, cfg, as_json=as_json)
            else:
                stage.render(summary, cfg)
        if as_json and os.environ.get("RANK", "0") == "0":  # one report from a multi-process run
            typer.echo(json.dumps(summary, default=str))
        code = int(summary.get("exit_code", 0) or 0) if isinstance(summary, dict) else 0
        if code:
            raise SystemExit(code)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = stage.help
    return command


def register(app: typer.Typer, stage: Stage, name: str | None = None) -> None:
    app.command(name or stage.command, help=stage.help, epilog=f"Example: {stage.example}")(callback(stage))


def group(stages: list[Stage], help: str = "") -> typer.Typer:
    """A command with subcommands (``generate trajectories``, ...): one Typer group, one command a stage."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=help,
                      context_settings={"help_option_names": ["-h", "--help"]})
    for st in stages:
        register(app, st)
    return app


def app_for(stage: Stage | list[Stage], help: str = "") -> typer.Typer:
    """The script form of a stage (a one-command app) or of a command with subcommands (a group)."""
    if isinstance(stage, list):
        return group(stage, help)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    app.command(help=stage.help, epilog=f"Example: {stage.example}")(callback(stage))
    return app


def script(stage: Stage | list[Stage], help: str = "") -> None:
    """``python -m trajtune.scripts.<command> ARGS``: the same command line as ``trajtune <command>``."""
    from trajtune.cli import common

    first = stage[0] if isinstance(stage, list) else stage
    common.run_app(app_for(stage, help), prog_name=f"python -m trajtune.scripts.{first.name.split()[0].replace('-', '_')}")
