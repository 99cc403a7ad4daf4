"""`trajtune generate tools|trajectories|preferences|tasks`: synthetic agent data from a tool catalog.

Each subcommand is a stage (``STAGES``) whose config is the one declaration of its options:

* ``generate tools``: list the catalog, or check it and the templates with ``--check``;
* ``generate trajectories -o OUT``: multi-step sft records; ``--backend openai`` lets a teacher
  endpoint solve the tasks instead (its options: :class:`trajtune.generators.teacher.TeacherOptions`);
* ``generate preferences -o OUT``: correct next step over a labelled failure; ``--backend hf``
  samples and scores a local model instead (:class:`trajtune.generators.local.LocalOptions`);
* ``generate tasks -o OUT``: held-out eval tasks.

The offline options (count, seed, category, catalog, templates, ...) are those of the engine,
:mod:`trajtune.generators.offline`. OUT is appended to (so it cannot be ``-``): a re-run appends
only the records still missing. The resolved config is saved as ``OUT.config.yaml`` (base URL
credentials redacted; usable as ``--config``). A backend module provides
``generate_<kind>(cfg, out, *, progress)``; :data:`BACKENDS` names them.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajtune.config import field
from trajtune.errors import UsageError
from trajtune.generators import offline
from trajtune.generators.local import LocalOptions
from trajtune.generators.teacher import TeacherOptions
from trajtune.stage import Stage

# backend name -> module providing generate_trajectories / generate_preferences / generate_tasks
BACKENDS = {"offline": "trajtune.generators.offline", "openai": "trajtune.generators.teacher",
            "hf": "trajtune.generators.local"}


_BACKEND_HELP = {"offline": "offline: templates + tool simulators (deterministic for a seed)",
                 "openai": "openai: a teacher model behind an OpenAI-compatible endpoint solves the tasks",
                 "hf": "hf: a local model's sampled replies, scored"}


def command_options(*backends: str) -> type:
    """What every generating subcommand adds to the engine's options: where to write, and which of
    ``backends`` (the first is the default) generates the records."""

    @dataclass
    class CommandOptions:
        output: str = field("", flags=("-o",), output=True, metavar="OUT",
                            help="output JSONL (required), appended to: a re-run adds only the records still missing")
        backend: str = field(backends[0], choices=backends, help="; ".join(_BACKEND_HELP[b] for b in backends))

    return CommandOptions


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def _check(cfg: Any, engine: type) -> None:
    """The checks of a generating subcommand: output, the engine's values, the backend and its options."""
    kind = cfg.KIND
    if cfg.output == "-":
        raise UsageError("generate appends to a file (so a re-run resumes); give a path, not '-'")
    if not cfg.output:
        raise UsageError("no output given", hint=f"trajtune generate {kind} -o data/{kind}.jsonl")
    engine.check(cfg)
    opts = cfg.BACKEND_OPTIONS
    if opts is None:
        return
    if cfg.backend == "offline":
        changed = [k for k, v in _defaults(opts).items() if getattr(cfg, k) != v]
        if changed:
            raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in changed)}: "
                             f"backend options need --backend {'openai' if opts is TeacherOptions else 'hf'}")
    elif opts is TeacherOptions:
        cfg.check_teacher()
    else:
        cfg.check_local()


# Field order: output and backend, the engine's options, then the backend's (reversed MRO).
@dataclass
class TrajectoriesConfig(TeacherOptions, offline.TrajectoriesConfig, command_options("offline", "openai")):
    KIND = "trajectories"
    BACKEND_OPTIONS = TeacherOptions

    def check(self) -> None:
        _check(self, offline.TrajectoriesConfig)


@dataclass
class PreferencesConfig(LocalOptions, offline.PreferencesConfig, command_options("offline", "hf")):
    KIND = "preferences"
    BACKEND_OPTIONS = LocalOptions

    def check(self) -> None:
        _check(self, offline.PreferencesConfig)


@dataclass
class TasksConfig(offline.TasksConfig, command_options("offline")):
    KIND = "tasks"
    BACKEND_OPTIONS = None

    def check(self) -> None:
        _check(self, offline.TasksConfig)


@dataclass
class ToolsConfig(offline.SourceOptions):
    check: bool = field(False, help="validate the catalog and the templates that use it, and report every tool the "
                                    "phrasing grammar cannot phrase (exit 1 on any problem)")
    synthesize: int = field(0, metavar="N", help="write N synthetic tools (procedural API synthesis over 43 domains: "
                                                 "naming styles, parameter types, families of look-alikes) to -o")
    seed: int = field(0, help="random seed of --synthesize; the same seed gives the same tools")
    eval_share: float = field(0.1, help="--synthesize: share of tool families held out for evaluation (x-trajtune.split: eval)")
    output: str = field("", flags=("-o",), output=True, metavar="OUT",
                        help="--synthesize: the OpenAI tools JSON file to write (atomically; usable as --catalog)")

    def __post_init__(self) -> None:  # (`check` is a field here)
        super().__post_init__()
        if self.synthesize < 0:
            raise UsageError("--synthesize must be 0 or more")
        if self.synthesize and not self.output:
            raise UsageError("--synthesize needs -o OUT", hint="trajtune generate tools --synthesize 1000 -o data/synth_tools.json")
        if self.output and not self.synthesize:
            raise UsageError("-o is the output of --synthesize", hint="add --synthesize N")
        if not 0.0 <= self.eval_share < 1.0:
            raise UsageError("--eval-share must be in [0, 1)")


# ------------------------------------------------------------------------------------ running


def _stem(out: Path) -> str:
    return out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name


def gates_path(out: str | Path) -> Path:
    """Where the quality-gate table is written: ``OUT.gates.json``."""
    out = Path(out)
    return out.with_name(_stem(out) + ".gates.json")


def config_path(out: str | Path) -> Path:
    """Where the resolved config is saved: ``OUT.config.yaml`` (``.jsonl`` dropped)."""
    out = Path(out)
    return out.with_name(_stem(out) + ".config.yaml")


def saved(cfg: Any) -> Any:
    """``cfg`` as it is saved and shown: credentials in the base URL redacted."""
    if getattr(cfg, "base_url", None):
        from trajtune.generators.teacher import redact_url

        return dataclasses.replace(cfg, base_url=redact_url(cfg.base_url))
    return cfg


def run(cfg: Any) -> dict:
    """Generate ``cfg.KIND`` records into ``cfg.output`` with ``cfg.backend``; returns the summary."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from trajtune import config as cfglib
    from trajtune.console import err_console
    from trajtune.paths import guard

    kind = cfg.KIND
    out = Path(cfg.output)
    # (--config is not guarded: it is read whole before anything is written, and re-running with the
    # saved OUT.config.yaml as --config rewrites it with the same resolved values)
    guard({"--catalog": cfg.catalog, "--templates": cfg.templates},
          files={"--output": out, "the saved config": config_path(out), "the gates table": gates_path(out),
                 "the rejects file": out.with_name(_stem(out) + ".rejects.jsonl") if cfg.backend == "openai" else None})
    fn = getattr(importlib.import_module(BACKENDS[cfg.backend]), f"generate_{kind}")
    with Progress(TextColumn(f"generate {kind}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(kind, total=cfg.count)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or cfg.count)

        summary = fn(cfg, str(out), progress=progress)
    cfglib.save(saved(cfg), config_path(out))
    if summary.get("gates"):
        import json

        from trajtune.jsonl import atomic_writer

        with atomic_writer(gates_path(out), "w") as fh:  # this run's gate counts (a resumed run: its own)
            json.dump({"gates": summary["gates"], "semantic_reasons": summary.get("semantic_reasons", {}),
                       "invalid_reasons": summary.get("invalid_reasons", {}), "by_shape": summary.get("by_shape", {}),
                       "candidates": summary.get("candidates")}, fh, indent=1)
    if summary.get("total", 0) == 0 and cfg.count > 0:
        summary["exit_code"] = 1
        summary["error"] = f"no {kind} could be generated into {out} (check --category and the templates)"
    return summary


def render(s: dict, cfg: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from trajtune.console import err_console

    table = Table(title=f"{s.get('kind', 'records')} -> {s.get('out')}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("counts")
    for key in sorted(k for k in s if k.startswith("by_") and isinstance(s[k], dict)):
        if s[key]:
            table.add_row(key[3:].replace("_", " "), ", ".join(f"{k}: {v}" for k, v in sorted(s[key].items())))
    if s.get("gates"):
        g = s["gates"]
        extra = "".join(f", {label} {g[k]}" for k, label in (("not_applicable", "not applicable (a shape or failure kind not possible here)"),
                                                              ("already_written", "already in the file")) if g.get(k))
        table.add_row("quality gates", f"{s.get('candidates', '?')} candidates: format rejected {g['format']}, semantic "
                                       f"rejected {g['semantic']}, duplicates dropped {g['dedup']}, passed {g['passed']}{extra}")
    for key in ("existing", "written", "total", "target", "dropped_near_duplicates", "invalid",
                "rejected", "failed", "requests", "retries", "prompt_tokens", "completion_tokens", "ties",
                "flat_groups", "pass_rate", "mean_reward"):
        if key in s:
            table.add_row(key.replace("_", " "), str(s[key]))
    for key in ("invalid_reasons", "semantic_reasons", "rejects", "failures", "reasons"):
        if s.get(key):
            table.add_row(key.replace("_", " "), ", ".join(f"{k}: {v}" for k, v in sorted(s[key].items())))
    err_console.print(table)
    if s.get("short"):
        err_console.print(f"[yellow]Warning:[/] {s['short']} short of --count {s.get('target')}: the templates ran out of "
                          "distinct records (near-duplicates are dropped); add phrasings or pool values, or lower --count",
                          soft_wrap=True)
    if s.get("error"):
        err_console.print(f"[bold red]Error:[/] {escape(s['error'])}", soft_wrap=True)


def synthesize_tools(cfg: ToolsConfig) -> dict:
    """``generate tools --synthesize N -o OUT``: the synthetic catalog, written atomically."""
    import json

    from trajtune.generators import synth
    from trajtune.jsonl import atomic_writer
    from trajtune.paths import guard

    out = Path(cfg.output)
    guard({}, files={"--output": out})
    cap = synth.capacity(cfg.seed)
    if cfg.synthesize > cap:
        raise UsageError(f"--synthesize {cfg.synthesize}: the vocabulary holds {cap} distinct tools for seed {cfg.seed}")
    tools = synth.synthesize(cfg.synthesize, cfg.seed, eval_share=cfg.eval_share)
    with atomic_writer(out, "w") as fh:
        fh.write(json.dumps(tools, ensure_ascii=False, indent=1) + "\n")
    return {"out": str(out), "seed": cfg.seed, "capacity": cap, **synth.summary(tools), "tools_list": [],
            "problems": [], "sources": [str(out)]}


def run_tools(cfg: ToolsConfig) -> dict:
    from trajtune.generators.catalog import check_tools

    if cfg.synthesize:
        return synthesize_tools(cfg)
    cat, problems = check_tools(cfg.catalog, cfg.templates if cfg.check else None, with_templates=cfg.check)
    if cfg.check and not problems:
        from trajtune.generators.phrasing import phrase_problem
        from trajtune.generators.offline import Sources
        from trajtune.generators.templates import load_templates

        templated: set[str] = set()
        try:
            from trajtune.generators.catalog import is_default

            lenient = cfg.templates is None and not is_default(cfg.catalog)
            templated = Sources(cat, load_templates(cfg.templates, cat, lenient=lenient)).templated()
        except Exception:  # template problems were reported by check_tools
            pass
        for t in cat.tools.values():
            if t.name in templated:
                continue
            why = phrase_problem(t.name, t.description, t.parameters)
            if why:
                problems.append((t.source, None, f"tool {t.name!r}: the phrasing grammar cannot phrase it: {why} "
                                                 "(give it a description starting with a verb, or templates)"))
            elif bad := sampled_value_problem(t):
                problems.append((t.source, None, f"tool {t.name!r}: values sampled for it fail its own schema ({bad}); "
                                                 "its records would be dropped at the format gate (give the parameter "
                                                 "bounds its values can meet, or templates)"))
    summary: dict[str, Any] = {
        "tools": [t.openai()["function"] | {"category": t.category} for t in cat.tools.values()],
        "problems": [{"file": f, "line": ln, "message": m} for f, ln, m in problems],
        "sources": [str(p) for p in cat.sources]}
    if problems:  # a domain error: exit 1
        summary["exit_code"] = 1
    return summary


def sampled_value_problem(tool: Any, tries: int = 20) -> str | None:
    """The first schema problem of arguments sampled for ``tool`` as the generator samples them
    (every parameter, ``tries`` seeds), or None: a name rule can fight a schema's own bounds."""
    import random

    from trajtune.generators.values import sample

    props = tool.parameters.get("properties") or {}
    for seed in range(tries):
        rng = random.Random(seed)
        args = {p: sample(p, s if isinstance(s, dict) else {}, rng) for p, s in props.items()}
        problems = tool.check(args)
        if problems:
            return str(problems[0])[:200]
    return None


def render_tools(s: dict, cfg: ToolsConfig) -> None:
    from rich.markup import escape
    from rich.table import Table

    from trajtune.console import err_console

    problems = s["problems"]
    if cfg.synthesize:
        err_console.print(f"Wrote {s['tools']} tools ({s['domains']} domains, {s['families']} families, "
                          f"{s['held_out_tools']} held out for evaluation) to {escape(s['out'])}; naming styles: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(s["styles"].items())) + "; parameter types: "
                          + ", ".join(f"{k} {v}" for k, v in sorted(s["parameter_types"].items())), soft_wrap=True)
        return
    if cfg.check:
        for p in problems:
            where = f"{p['file']}:{p['line']}" if p["line"] else p["file"]
            err_console.print(f"[bold red]Error:[/] {escape(where)}: {escape(p['message'])}", soft_wrap=True)
        if not problems:
            cats = sorted({t["category"] for t in s["tools"]})
            err_console.print(f"OK: {len(s['tools'])} tools in {len(s['sources'])} file(s), categories: {', '.join(cats)}",
                              soft_wrap=True)
    else:
        table = Table(show_header=True, header_style="bold")
        for col in ("tool", "category", "parameters (* required)", "description"):
            table.add_column(col)
        for t in s["tools"]:
            params = t.get("parameters") or {}
            req = set(params.get("required") or [])
            names = ", ".join(p + ("*" if p in req else "") for p in (params.get("properties") or {}))
            table.add_row(t["name"], t["category"], names, t["description"])
        err_console.print(table)
    if problems:
        err_console.print(f"[bold red]Error:[/] {len(problems)} problem(s) in the tool catalog or templates "
                          "(fix them and run `trajtune generate tools --check` again)", soft_wrap=True)


STAGES = [
    Stage(name="generate tools", config=ToolsConfig, run=run_tools, render=render_tools,
          help="List the tool catalog (our YAML, OpenAI tools JSON, MCP tools/list, OpenAPI 3), check it with "
               "--check (exit 1 on any problem, including tools the phrasing grammar cannot phrase), or write "
               "--synthesize N synthetic tools to -o.",
          example="trajtune generate tools --synthesize 1000 --seed 0 -o data/synth_tools.json"),
    Stage(name="generate trajectories", config=TrajectoriesConfig, run=run, render=render,
          help="Multi-step agent trajectories (sft records: thought -> tool call -> observation ... -> answer) "
               "from the training phrasings of the task templates and, for tools without templates (any --catalog: "
               "our YAML, OpenAI tools JSON, an MCP tools/list result, OpenAPI 3), from the phrasing grammar in the "
               "task shapes of --shapes; observations come from the tool simulators. "
               "--backend openai: a teacher model behind any OpenAI-compatible endpoint solves the tasks instead "
               "(the API key comes from the variable named by --api-key-env; invalid trajectories go to "
               "OUT.rejects.jsonl). The resolved config is saved as OUT.config.yaml.",
          example="trajtune generate trajectories --count 300 --seed 0 -o data/train.jsonl"),
    Stage(name="generate preferences", config=PreferencesConfig, run=run, render=render,
          help="Preference pairs on the same prompt: chosen = the correct next step; rejected = a realistic "
               "failure (wrong tool, missing required argument, wrong type or value, hallucinated tool, malformed "
               "or truncated JSON, chatter instead of a call), labelled in metadata.failure_type and mixed by "
               "--mix weights. --backend hf: sample -k replies of a local model per task and score them "
               "(best over worst, or --emit group). The resolved config is saved as OUT.config.yaml.",
          example="trajtune generate preferences --count 200 --mix chatter=2,wrong_tool=1 -o data/pairs.jsonl"),
    Stage(name="generate tasks", config=TasksConfig, run=run, render=render,
          help="Evaluation tasks (task records): the expected next tool call(s), with acceptable values per "
               "argument, from phrasings and templates held out of training (--split eval), plus requests whose "
               "right answer is no call. metadata.split_reason says what was held out: held_out_tool (a synthetic "
               "tool family never trained on; its irrelevance and missing-info tasks need no call), held_out_phrasing, "
               "held_out_template, no_call (a template chat request), or train_phrasing (--split train). "
               "The resolved config is saved as OUT.config.yaml.",
          example="trajtune generate tasks --count 80 --seed 1 -o data/eval_tasks.jsonl"),
]


if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGES, help="Generate synthetic agent data from a tool catalog.")
