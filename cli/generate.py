"""`trajtune generate ...`: synthetic trajectories, preference pairs and eval tasks from a tool catalog.

Subcommands: ``tools`` (list/check the catalog), ``trajectories``, ``preferences``, ``tasks``.
``--backend offline`` (default) uses templates + simulators (trajtune.generators.offline).
Other backends plug in through :func:`dispatch`: ``--backend NAME`` imports the module in
``BACKENDS`` and calls its ``generate_<kind>(cfg, out, options=..., progress=...)`` where
``cfg`` is this command's resolved offline config (count, seed, category, catalog, templates;
see ``trajtune.generators.offline.iter_tasks`` for the prompt stream) and ``options`` holds the
backend flags (--base-url, --model, --api-key-env, --concurrency, --set KEY=VALUE).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from trajtune.cli.common import err_console

# backend name -> module providing generate_trajectories / generate_preferences / generate_tasks
BACKENDS = {"offline": "trajtune.generators.offline", "openai": "trajtune.generators.teacher",
            "hf": "trajtune.generators.local"}


def dispatch(kind: str, backend: str, cfg: Any, out: str, *, options: dict | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Run ``generate_<kind>`` of ``backend``; the one seam between this command and the backends."""
    from trajtune.errors import UsageError

    if backend not in BACKENDS:
        raise UsageError(f"unknown --backend {backend!r}", hint=f"choose from {', '.join(BACKENDS)}")
    mod = importlib.import_module(BACKENDS[backend])
    fn = getattr(mod, f"generate_{kind}", None)
    if fn is None:
        raise UsageError(f"--backend {backend} cannot generate {kind}",
                         hint="use --backend offline, or a backend that supports it")
    if backend == "offline":
        if options:
            raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k in options)}: "
                             "backend options need --backend openai or hf")
        return fn(cfg, out, progress=progress)
    return fn(cfg, out, options=options or {}, progress=progress)


def _config_path(out: Path) -> Path:
    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(name + ".config.yaml")


def _print_summary(s: dict) -> None:
    from rich.table import Table

    table = Table(title=f"{s.get('kind', 'records')} -> {s.get('out')}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("counts")
    for key in sorted(k for k in s if k.startswith("by_") and isinstance(s[k], dict)):
        if s[key]:
            table.add_row(key[3:].replace("_", " "), ", ".join(f"{k}: {v}" for k, v in sorted(s[key].items())))
    for key in ("existing", "written", "total", "target", "dropped_near_duplicates", "invalid",
                "rejected", "failed", "requests", "retries", "prompt_tokens", "completion_tokens", "ties",
                "flat_groups", "pass_rate", "mean_reward"):
        if key in s:
            table.add_row(key.replace("_", " "), str(s[key]))
    for key in ("invalid_reasons", "rejects", "failures", "reasons"):
        if s.get(key):
            table.add_row(key.replace("_", " "), ", ".join(f"{k}: {v}" for k, v in sorted(s[key].items())))
    err_console.print(table)
    if s.get("short"):
        err_console.print(f"[yellow]Warning:[/] {s['short']} short of --count {s.get('target')}: the templates ran out of "
                          "distinct records (near-duplicates are dropped); add phrasings or pool values, or lower --count",
                          soft_wrap=True)


def _run(kind: str, cls_name: str, out: Path, config: Optional[Path], flags: dict, backend: Optional[str],
         options: dict, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from trajtune import config as cfglib
    from trajtune.generators import offline

    cls = getattr(offline, cls_name)
    if str(out) == "-":
        from trajtune.errors import UsageError

        raise UsageError("generate appends to a file (so a re-run resumes); give a path, not '-'")
    cfg = cfglib.build(cls, config, {**flags, "backend": backend})
    options = {k: v for k, v in options.items() if v is not None}
    from trajtune.paths import guard

    name = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    # (--config is not guarded: it is read whole before anything is written, and re-running with the
    # saved OUT.config.yaml as --config rewrites it with the same resolved values)
    guard({"--catalog": cfg.catalog, "--templates": cfg.templates},
          files={"OUT": out, "the saved config": _config_path(out),
                 "the rejects file": out.with_name(name + ".rejects.jsonl") if cfg.backend != "offline" else None})
    with Progress(TextColumn(f"generate {kind}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(kind, total=cfg.count)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = dispatch(kind, cfg.backend, cfg, str(out), options=options, progress=progress)
    cfglib.save(cfg, _config_path(out))
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary.get("total", 0) == 0 and cfg.count > 0:
        from trajtune.errors import RunError

        raise RunError(f"no {kind} could be generated into {out}", hint="check --category and the templates")


def register(app: typer.Typer) -> None:
    gen = typer.Typer(name="generate", no_args_is_help=True,
                      epilog="Example: trajtune generate trajectories --count 300 data/train.jsonl",
                      help="Generate synthetic agent data from a tool catalog: trajectories (sft), preference pairs, "
                      "eval tasks. Offline by default (templates + tool simulators), deterministic for a seed; "
                      "re-running appends only the records still missing. Records carry metadata.review: pending "
                      "until `trajtune review` approves them.")
    app.add_typer(gen, name="generate")

    @gen.command("tools", help="List the tool catalog, or check it with --check (exit 1 on any problem).",
                 epilog="Example: trajtune generate tools --check")
    def tools(
        catalog: Optional[Path] = typer.Option(None, "--catalog", help="catalog YAML file or folder (default: data/tools)"),
        check: bool = typer.Option(False, "--check", help="validate the catalog and the templates that use it"),
        templates: Optional[Path] = typer.Option(None, "--templates", help="templates to check with --check (default: data/templates)"),
        as_json: bool = typer.Option(False, "--json", help="print the tools (or the problems) as JSON on stdout"),
    ) -> None:
        from rich.table import Table

        from trajtune.generators.catalog import check_tools

        cat, problems = check_tools(catalog, templates if check else None, with_templates=check)
        if as_json:
            typer.echo(json.dumps({"tools": [t.openai()["function"] | {"category": t.category} for t in cat.tools.values()],
                                   "problems": [{"file": f, "line": ln, "message": m} for f, ln, m in problems]}))
        elif check:
            for f, ln, m in problems:
                err_console.print(f"[bold red]Error:[/] {f}:{ln}: {m}" if ln else f"[bold red]Error:[/] {f}: {m}",
                                  soft_wrap=True)
            if not problems:
                cats = sorted({t.category for t in cat.tools.values()})
                err_console.print(f"OK: {len(cat.tools)} tools in {len(cat.sources)} file(s), categories: {', '.join(cats)}",
                                  soft_wrap=True)
        else:
            table = Table(show_header=True, header_style="bold")
            for col in ("tool", "category", "parameters (* required)", "description"):
                table.add_column(col)
            for t in cat.tools.values():
                req = set(t.parameters.get("required") or [])
                params = ", ".join(p + ("*" if p in req else "") for p in (t.parameters.get("properties") or {}))
                table.add_row(t.name, t.category, params, t.description)
            err_console.print(table)
        if problems:  # a domain error, not typer.Exit: run_app turns it into exit 1
            from trajtune.errors import DataError

            raise DataError(f"{len(problems)} problem(s) in the tool catalog or templates",
                            hint="fix them and run `trajtune generate tools --check` again")

    def _backend_options(base_url, model, api_key_env, concurrency, set_, **more):
        from trajtune.config import parse_set

        opts = {"base_url": base_url, "model": model, "api_key_env": api_key_env, "concurrency": concurrency, **more}
        opts.update(parse_set(set_))
        return {k: v for k, v in opts.items() if v is not None}

    # the options every generating command shares (Typer needs them spelled out per command)
    O_COUNT = typer.Option(None, "--count", "-n", help="target number of records in OUT (re-runs append what is missing)")
    O_SEED = typer.Option(None, "--seed", help="random seed: the same seed gives the same records")
    O_CAT = typer.Option(None, "--category", "-c", help="only this category (repeatable): coding, debugging, refactoring, devops, data")
    O_CATALOG = typer.Option(None, "--catalog", help="tool catalog YAML file or folder (default: data/tools)")
    O_TEMPLATES = typer.Option(None, "--templates", help="templates YAML file or folder (default: data/templates)")
    O_NOCALL = typer.Option(None, "--no-call-share", help="share of records whose right answer is no tool call")
    O_BACKEND = typer.Option(None, "--backend", help="offline (default), openai (teacher endpoint) or hf (local model)")
    O_BASE_URL = typer.Option(None, "--base-url", help="(openai backend) OpenAI-compatible endpoint URL")
    O_MODEL = typer.Option(None, "--model", help="(openai/hf backends) model name or local model")
    O_KEYENV = typer.Option(None, "--api-key-env", help="(openai backend) environment variable holding the API key")
    O_CONC = typer.Option(None, "--concurrency", help="(openai backend) parallel requests")
    O_SET = typer.Option(None, "--set", help="backend option KEY=VALUE (repeatable)")
    O_TIMEOUT = typer.Option(None, "--timeout", help="(openai backend) seconds per request before it is retried")
    O_RETRIES = typer.Option(None, "--max-retries", help="(openai backend) retries on 429/5xx/timeouts, exponential backoff")
    O_SAMPLES = typer.Option(None, "--samples", "-k", help="(hf backend) responses sampled per prompt")
    O_CONFIG = typer.Option(None, "--config", help="YAML with any of these options (flags override it)")
    O_JSON = typer.Option(False, "--json", help="print the summary as JSON on stdout")

    @gen.command("trajectories",
                 help="Multi-step agent trajectories (sft records: thought -> tool call -> observation ... -> answer) "
                 "from the training phrasings of the task templates; observations come from the tool simulators.",
                 epilog="Example: trajtune generate trajectories --count 300 --seed 0 data/train.jsonl")
    def trajectories(
        out: Path = typer.Argument(..., help="output JSONL (appended; created if missing)"),
        count: Optional[int] = O_COUNT, seed: Optional[int] = O_SEED, category: Optional[List[str]] = O_CAT,
        catalog: Optional[Path] = O_CATALOG, templates: Optional[Path] = O_TEMPLATES,
        no_call_share: Optional[float] = O_NOCALL, backend: Optional[str] = O_BACKEND,
        base_url: Optional[str] = O_BASE_URL, model: Optional[str] = O_MODEL, api_key_env: Optional[str] = O_KEYENV,
        concurrency: Optional[int] = O_CONC, set_: Optional[List[str]] = O_SET,
        timeout: Optional[float] = O_TIMEOUT, max_retries: Optional[int] = O_RETRIES,
        config: Optional[Path] = O_CONFIG, as_json: bool = O_JSON,
    ) -> None:
        flags = {"count": count, "seed": seed, "category": category or None, "catalog": _s(catalog),
                 "templates": _s(templates), "no_call_share": no_call_share}
        _run("trajectories", "TrajectoriesConfig", out, config, flags, backend,
             _backend_options(base_url, model, api_key_env, concurrency, set_, timeout=timeout,
                              max_retries=max_retries), as_json)

    @gen.command("preferences",
                 help="Preference pairs on the same prompt: chosen = the correct next step; rejected = a realistic "
                 "failure (wrong tool, missing required argument, wrong type or value, hallucinated tool, malformed "
                 "or truncated JSON, chatter instead of a call), labelled in metadata.failure_type and mixed by "
                 "--mix weights.",
                 epilog="Example: trajtune generate preferences --count 200 --mix chatter=2,wrong_tool=1 data/pairs.jsonl")
    def preferences(
        out: Path = typer.Argument(..., help="output JSONL (appended; created if missing)"),
        count: Optional[int] = O_COUNT, seed: Optional[int] = O_SEED, category: Optional[List[str]] = O_CAT,
        catalog: Optional[Path] = O_CATALOG, templates: Optional[Path] = O_TEMPLATES,
        no_call_share: Optional[float] = O_NOCALL,
        mix: Optional[str] = typer.Option(None, "--mix", help="failure weights TYPE=W,... (others keep weight 1; 0 disables)"),
        backend: Optional[str] = O_BACKEND,
        base_url: Optional[str] = O_BASE_URL, model: Optional[str] = O_MODEL, api_key_env: Optional[str] = O_KEYENV,
        concurrency: Optional[int] = O_CONC, set_: Optional[List[str]] = O_SET, samples: Optional[int] = O_SAMPLES,
        config: Optional[Path] = O_CONFIG, as_json: bool = O_JSON,
    ) -> None:
        flags = {"count": count, "seed": seed, "category": category or None, "catalog": _s(catalog),
                 "templates": _s(templates), "no_call_share": no_call_share, "failure_mix": _parse_mix(mix)}
        _run("preferences", "PreferencesConfig", out, config, flags, backend,
             _backend_options(base_url, model, api_key_env, concurrency, set_, samples=samples), as_json)

    @gen.command("tasks",
                 help="Evaluation tasks (task records): the expected next tool call(s), with acceptable values per "
                 "argument, from phrasings and templates held out of training (--split eval), plus requests whose "
                 "right answer is no call. metadata.split_reason says which: held_out_phrasing, held_out_template, "
                 "no_call.",
                 epilog="Example: trajtune generate tasks --count 80 --seed 1 data/eval_tasks.jsonl")
    def tasks(
        out: Path = typer.Argument(..., help="output JSONL (appended; created if missing)"),
        count: Optional[int] = O_COUNT, seed: Optional[int] = O_SEED, category: Optional[List[str]] = O_CAT,
        catalog: Optional[Path] = O_CATALOG, templates: Optional[Path] = O_TEMPLATES,
        no_call_share: Optional[float] = O_NOCALL,
        split: Optional[str] = typer.Option(None, "--split", help="eval (held out of training, default) or train"),
        heldout_template_share: Optional[float] = typer.Option(None, "--held-out-template-share",
                                                               help="share of tasks from whole held-out templates"),
        backend: Optional[str] = O_BACKEND,
        base_url: Optional[str] = O_BASE_URL, model: Optional[str] = O_MODEL, api_key_env: Optional[str] = O_KEYENV,
        concurrency: Optional[int] = O_CONC, set_: Optional[List[str]] = O_SET,
        config: Optional[Path] = O_CONFIG, as_json: bool = O_JSON,
    ) -> None:
        flags = {"count": count, "seed": seed, "category": category or None, "catalog": _s(catalog),
                 "templates": _s(templates), "no_call_share": no_call_share, "split": split,
                 "heldout_template_share": heldout_template_share}
        _run("tasks", "TasksConfig", out, config, flags, backend,
             _backend_options(base_url, model, api_key_env, concurrency, set_), as_json)


def _s(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None


def _parse_mix(mix: Optional[str]) -> Optional[dict]:
    """``chatter=2,wrong_tool=1`` -> weights over all failure types (unlisted ones keep 1)."""
    if mix is None:
        return None
    from trajtune.errors import UsageError
    from trajtune.generators.offline import FAILURE_TYPES

    weights = {t: 1.0 for t in FAILURE_TYPES}
    for part in mix.split(","):
        if not part.strip():
            continue
        name, sep, val = part.partition("=")
        name = name.strip()
        if not sep or name not in FAILURE_TYPES:
            raise UsageError(f"--mix: bad entry {part.strip()!r}", hint=f"use TYPE=WEIGHT with TYPE in {', '.join(FAILURE_TYPES)}")
        try:
            weights[name] = float(val)
        except ValueError:
            raise UsageError(f"--mix: weight for {name} must be a number, got {val!r}") from None
    return weights
