"""`trajtune runs ...`: find, inspect, compare and promote the runs the stages registered.

Every stage writes a lineage manifest beside its output and registers the run in the SQLite
index (``trajtune.lineage``, ``trajtune.registry``). These subcommands read that index:

* ``list`` (filters: stage, agent, base model, status), ``show RUN`` (the manifest and its lineage
  down to the raw data), ``compare A B`` (two evaluations of the same tasks: per-metric deltas and
  the exact McNemar test on the paired tasks; refused, with the reason, when the task sets differ);
* ``promote RUN --agent NAME`` / ``active --agent NAME`` / ``rollback --agent NAME``: which
  adapter (or merged model) serves which agent, with its history; ``export --agent NAME --format
  vllm``: the ``--lora-modules`` line and a JSON description for the server;
* ``reindex DIR``: rebuild the index from the manifests under DIR (they are the truth).

RUN is a run id (or a unique prefix of one), or the folder or file a stage wrote. For ``compare``
an evaluation with a baseline holds two models: ``RUN:baseline`` and ``RUN:tuned`` (default: the
tuned one, or the only one).
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from trajtune.config import field
from trajtune.errors import DataError, UsageError
from trajtune.stage import Stage

MODEL_STAGES = ("train-sft", "train-dpo", "merge-lora")
ROLES = ("tuned", "baseline", "model")
STATUSES = ("finished", "failed", "interrupted")
REGISTRY_HELP = "registry database (default: $TRAJTUNE_REGISTRY, else runs/registry.sqlite)"


def _registry_field() -> Any:
    return field(None, metavar="FILE", help=REGISTRY_HELP)


def _open(path: Optional[str], create: bool = False):
    from trajtune import registry

    return registry.Registry(registry.resolve(path), create=create)


def _rel(path: Optional[str]) -> str:
    if not path:
        return "-"
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# list


@dataclass
class ListConfig:
    stage: Optional[str] = field(None, help="only runs of this stage (train-sft, evaluate, 'generate trajectories', ...)")
    agent: Optional[str] = field(None, metavar="NAME", help="only runs promoted for this agent")
    base_model: Optional[str] = field(None, metavar="MODEL", help="only runs on this base model (as given to --model)")
    status: Optional[str] = field(None, choices=STATUSES, help="only runs that ended so")
    registry: Optional[str] = _registry_field()


HEADLINE_KEYS = {"train-sft": ("train_loss", "eval_loss", "global_step"), "train-dpo": ("train_loss", "eval_loss", "global_step"),
                 "evaluate": ("pass_rate", "improvement_points", "mcnemar_p")}


def _short_metrics(stage: str, metrics: dict) -> str:
    keys = HEADLINE_KEYS.get(stage) or list(metrics)[:3]
    return ", ".join(f"{k}={_fmt(metrics[k])}" for k in keys if k in metrics)


def list_runs(cfg: ListConfig) -> dict:
    with _open(cfg.registry) as reg:
        rows = reg.list(stage=cfg.stage, agent=cfg.agent, base_model=cfg.base_model, status=cfg.status)
        promoted: dict[str, list[str]] = {}
        for agent in {r["agent"] for r in reg.db.execute("SELECT DISTINCT agent FROM promotions").fetchall()}:
            live = reg.active(agent)
            for p in reg.history(agent):
                mark = "*" if live and p["id"] == live["id"] else ""
                promoted.setdefault(p["run_id"], []).append(f"{agent} {p['version']}{mark}")
    for r in rows:
        r["promoted"] = promoted.get(r["run_id"], [])
    return {"registry": str(reg.path), "runs": rows, "count": len(rows)}


def render_list(summary: dict, cfg: ListConfig) -> None:
    from rich.table import Table

    from trajtune.console import err_console

    table = Table(title=f"{summary['count']} runs in {_rel(summary['registry'])}")
    for col in ("run", "stage", "status", "finished", "wall s", "headline", "output", "promoted"):
        table.add_column(col, justify="right" if col == "wall s" else "left", no_wrap=col == "run")  # the id to type
    for r in summary["runs"]:
        table.add_row(r["run_id"], r["stage"], r["status"], (r["finished_at"] or "-")[5:16].replace("T", " "),
                      _fmt(r["wall_time_s"]), _short_metrics(r["stage"], r["metrics"]), _rel(r["output"]),
                      ", ".join(r["promoted"]))
    err_console.print(table)


# ---------------------------------------------------------------------------------------------
# show


@dataclass
class ShowConfig:
    run: str = field("", positional=True, metavar="RUN", help="run id (or a unique prefix), or a folder or file a stage wrote")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if not self.run:
            raise UsageError("no run given", hint="trajtune runs show RUN (see trajtune runs list)")


def _lookup(reg: Any, parent: dict) -> Optional[dict]:
    from trajtune.lineage import read_manifest

    got = reg.get(parent["run_id"])
    if got is None and parent.get("manifest"):
        m = read_manifest(parent["manifest"])
        if m is not None and m["run_id"] == parent["run_id"]:
            return m
        for old in (m or {}).get("earlier", []):
            if old.get("run_id") == parent["run_id"]:
                return old
    return got


def lineage_tree(reg: Any, manifest: dict, seen: Optional[set] = None) -> dict:
    """The run, what it read, and recursively the runs that made what it read, down to raw data."""
    seen = set(seen or ()) | {manifest["run_id"]}
    made = {p.get("path"): p for p in manifest.get("parents") or [] if p.get("path")}
    node: dict[str, Any] = {"run_id": manifest["run_id"], "stage": manifest.get("stage"), "status": manifest.get("status"),
                            "output": manifest.get("output"), "from": []}
    listed = set()
    for inp in manifest.get("inputs") or []:
        listed.add(inp["path"])
        node["from"].append(_edge(reg, inp, made.get(inp["path"]), seen))
    for p in manifest.get("parents") or []:
        if p.get("path") not in listed:
            node["from"].append(_edge(reg, {"field": p.get("field"), "path": p.get("path"), "model": p.get("model")}, p, seen))
    return node


def _edge(reg: Any, inp: dict, parent: Optional[dict], seen: set) -> dict:
    edge = {k: inp.get(k) for k in ("field", "path", "model", "records", "sha256", "folder") if inp.get(k) is not None}
    if not parent or not parent.get("run_id"):
        edge["raw"] = True  # nothing known made it: raw data, or a model from outside
        return edge
    edge["matches"] = parent.get("matches", True)
    if parent["run_id"] in seen:
        edge["run"] = {"run_id": parent["run_id"], "stage": parent.get("stage"), "cycle": True}
        return edge
    m = _lookup(reg, parent)
    edge["run"] = lineage_tree(reg, m, seen) if m else {"run_id": parent["run_id"], "stage": parent.get("stage"),
                                                           "missing": True}
    return edge


def show(cfg: ShowConfig) -> dict:
    with _open(cfg.registry) as reg:
        run = reg.find(cfg.run)
        manifest_file = run.pop("_manifest", None)
        return {"manifest_file": manifest_file, "manifest": run, "lineage": lineage_tree(reg, run)}


def _tree_label(node: dict) -> str:
    from rich.markup import escape

    return escape(f"{node['run_id']} ({node.get('stage')}, {node.get('status')}) -> {_rel(node.get('output'))}")


def _add_edges(tree: Any, node: dict) -> None:
    from rich.markup import escape

    for e in node["from"]:
        what = e.get("path") or e.get("model")
        facts = []
        if e.get("records") is not None:
            facts.append(f"{e['records']} records")
        if e.get("sha256"):
            facts.append(f"sha256 {e['sha256'][:12]}")
        if e.get("matches") is False:
            facts.append("changed since that run wrote it")
        label = f"{e.get('field')}: {_rel(what) if e.get('path') else what}" + (f" ({', '.join(facts)})" if facts else "")
        if e.get("raw"):
            label += " [raw]" if e.get("path") and not e.get("folder") else ""
        sub = tree.add(escape(label))
        run = e.get("run")
        if run is None:
            continue
        if run.get("cycle") or run.get("missing"):
            sub.add(escape(f"{run['run_id']} ({run.get('stage')}, {'shown above' if run.get('cycle') else 'not in the registry'})"))
            continue
        _add_edges(sub.add(_tree_label(run)), run)


def render_show(summary: dict, cfg: ShowConfig) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    from trajtune.console import err_console

    m = summary["manifest"]
    lines = [f"[bold]{escape(m['run_id'])}[/]  {escape(m.get('stage', '?'))}, {m.get('status')}",
             f"command:  {escape(shlex.join(m['command'])) if m.get('command') else '(called from Python)'}",
             f"when:     {m.get('started_at')} .. {m.get('finished_at')} ({_fmt(m.get('wall_time_s'))} s, peak "
             f"{_fmt(max([v for v in (m.get('peak_memory') or {}).values()], default=None))} MB)",
             f"output:   {escape(_rel(m.get('output')))}  (manifest {escape(_rel(summary['manifest_file']))})",
             "metrics:  " + escape(", ".join(f"{k}={_fmt(v)}" for k, v in (m.get("metrics") or {}).items()) or "-"),
             "packages: " + escape(", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items()))]
    for line in lines:
        err_console.print(line, markup=True, highlight=False, soft_wrap=True)
    tree = Tree(_tree_label(summary["lineage"]))
    _add_edges(tree, summary["lineage"])
    err_console.print("lineage:")
    err_console.print(tree)


# ---------------------------------------------------------------------------------------------
# compare


@dataclass
class CompareConfig:
    runs: list[str] = field(default_factory=list, positional=True, metavar="A B",
                            help="two evaluate runs (id, prefix or folder); RUN:baseline / RUN:tuned pick a model of an evaluation with a baseline")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if len(self.runs) != 2:
            raise UsageError(f"compare takes two evaluations, got {len(self.runs)}",
                             hint="trajtune runs compare EVAL_A EVAL_B (or EVAL:baseline EVAL:tuned)")


def _evaluation(reg: Any, ref: str) -> dict:
    """An evaluate run's model: its predictions by task id and its report's metrics."""
    from trajtune.jsonl import read_jsonl

    role = None
    head, _, tail = ref.rpartition(":")
    if head and tail in ROLES:
        ref, role = head, tail
    run = reg.find(ref)
    if run.get("stage") != "evaluate":
        raise UsageError(f"{run['run_id']} is a {run.get('stage')} run; compare takes two evaluate runs",
                         hint="see trajtune runs list --stage evaluate")
    folder = Path(run["_manifest"]).parent
    report_file = folder / "report.json"
    try:
        report = json.loads(report_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{report_file}: cannot read the evaluation's report ({exc})",
                        hint="re-run the evaluate command; it resumes from predictions.jsonl") from None
    models = report.get("models") or {}
    role = role or ("tuned" if "tuned" in models else "model" if "model" in models else next(iter(models), None))
    if role not in models:
        raise UsageError(f"{run['run_id']} has no {role!r} model (it has: {', '.join(models)})",
                         hint=f"use {ref}:{next(iter(models), 'tuned')}")
    key = models[role]["key"]
    info = run.get("evaluation") or {}
    evaluated = set(info["task_ids"]) if info.get("task_ids") else None  # the file may hold more (an earlier run)
    preds = {}
    for row in read_jsonl(folder / "predictions.jsonl"):
        if row.obj.get("model_key") == key and (evaluated is None or row.obj.get("task_id") in evaluated):
            preds[row.obj["task_id"]] = row.obj
    return {"run_id": run["run_id"], "role": role, "model": models[role]["model"], "path": str(folder),
            "tasks_digest": info.get("tasks_digest"), "tasks": report.get("tasks"), "metrics": models[role]["metrics"],
            "predictions": preds, "threshold": report.get("ready_threshold", 0.85)}


def _examples(ids: set) -> str:
    shown = sorted(map(str, ids))[:3]
    return ", ".join(shown) + (", ..." if len(ids) > 3 else "")


def compare_runs(cfg: CompareConfig) -> dict:
    from trajtune.report import compare
    from trajtune.scripts.evaluate import HEADLINE

    with _open(cfg.registry) as reg:
        a, b = (_evaluation(reg, ref) for ref in cfg.runs)
    if (a["run_id"], a["role"]) == (b["run_id"], b["role"]):
        raise UsageError(f"{cfg.runs[0]} and {cfg.runs[1]} are the same model of the same evaluation",
                         hint="compare two evaluations, or EVAL:baseline with EVAL:tuned")
    ta, tb = set(a["predictions"]), set(b["predictions"])
    if ta != tb:
        raise DataError(f"the two evaluations ran on different tasks: A has {len(ta)}, B has {len(tb)}; "
                        f"{len(ta - tb)} only in A ({_examples(ta - tb) or '-'}), {len(tb - ta)} only in B "
                        f"({_examples(tb - ta) or '-'}); a paired test needs the same tasks",
                        hint="evaluate both models on the same tasks file with the same --limit")
    if a["tasks_digest"] and b["tasks_digest"] and a["tasks_digest"] != b["tasks_digest"]:
        raise DataError(f"the two evaluations have the same {len(ta)} task ids but different task contents (tasks "
                        f"digest {a['tasks_digest']} vs {b['tasks_digest']}): a paired test needs the same tasks",
                        hint="evaluate both models on the same tasks file")
    # the tasks both answered (the same set, checked above): B against A, exact McNemar on the discordant pairs
    paired = compare(list(a["predictions"].values()), list(b["predictions"].values()), b["threshold"])
    deltas = {}
    for k in HEADLINE:
        va, vb = a["metrics"].get(k), b["metrics"].get(k)
        deltas[k] = {"a": va, "b": vb, "delta": round(vb - va, 4) if va is not None and vb is not None else None}
    side = lambda e: {k: e[k] for k in ("run_id", "role", "model", "path", "tasks_digest")}  # noqa: E731
    return {"a": side(a), "b": side(b), "paired_tasks": paired["paired_tasks"], "metrics": deltas,
            "improvement_points": paired["improvement_points"], "fixed": paired["fixed"], "broken": paired["broken"],
            "mcnemar_p": paired["mcnemar_p"], "significant": paired["significant"]}


RATE_KEYS = {"pass_rate", "tool_name_accuracy", "argument_accuracy", "valid_json_rate", "hallucination_rate", "no_call_accuracy"}


def _cell(key: str, v: Any, delta: bool = False) -> str:
    if v is None:
        return "-"
    if key in RATE_KEYS:
        return f"{100 * v:+.1f} pts" if delta else f"{100 * v:.1f}%"
    if key == "mean_latency_s":
        return f"{v:+.3f} s" if delta else f"{v:.3f} s"
    return f"{v:+g}" if delta else f"{v:g}"


def render_compare(summary: dict, cfg: CompareConfig) -> None:
    from rich.markup import escape
    from rich.table import Table

    from trajtune.console import err_console

    a, b = summary["a"], summary["b"]
    table = Table(title=f"runs compare: {summary['paired_tasks']} paired tasks")
    table.add_column("metric")
    table.add_column(escape(f"A {_rel(a['path'])}:{a['role']}"), justify="right")
    table.add_column(escape(f"B {_rel(b['path'])}:{b['role']}"), justify="right")
    table.add_column("B - A", justify="right")
    for k, d in summary["metrics"].items():
        table.add_row(k.replace("_", " "), _cell(k, d["a"]), _cell(k, d["b"]), _cell(k, d["delta"], delta=True))
    table.add_row("improvement", "", "", f"{summary['improvement_points']:+.1f} points")
    table.add_row("fixed / broken (B vs A)", "", "", f"{summary['fixed']} / {summary['broken']}")
    table.add_row("McNemar p (paired, exact)", "", "",
                  f"{summary['mcnemar_p']:.4g} ({'significant' if summary['significant'] else 'not significant'})")
    err_console.print(table)
    err_console.print(f"A: {a['run_id']} {a['model']}\nB: {b['run_id']} {b['model']}", markup=False, highlight=False,
                      soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# promote, active, rollback, export


@dataclass
class PromoteConfig:
    run: str = field("", positional=True, metavar="RUN", help="a finished train-sft, train-dpo or merge-lora run")
    agent: str = field("", metavar="NAME", help="the agent (type) this model serves")
    version: Optional[str] = field(None, metavar="X", help="version label (default: v1, v2, ... per agent)")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if not self.run or not self.agent:
            raise UsageError("promote needs a run and --agent", hint="trajtune runs promote RUN --agent NAME")


def _model_of(run: dict) -> tuple[str, Optional[str], Optional[str]]:
    """(folder to serve, base model, method) of a run that made a model."""
    stage = run.get("stage")
    if stage not in MODEL_STAGES:
        raise UsageError(f"{run['run_id']} is a {stage} run: only {', '.join(MODEL_STAGES)} runs make a model to promote",
                         hint="see trajtune runs list --stage train-sft")
    if run.get("status") != "finished":
        raise DataError(f"{run['run_id']} did not finish ({run.get('status')}): it has no final model",
                        hint="re-run its command to resume it, then promote it")
    model = run.get("model") or {}
    cfg = run.get("config") or {}
    path = model.get("final") if stage != "merge-lora" else run.get("output")
    if not path or not Path(path).is_dir():
        raise DataError(f"{run['run_id']}: its model folder {path} is gone", hint="promote a run whose output still exists")
    return str(Path(path).resolve()), model.get("base") or cfg.get("model"), model.get("method") or \
        ("merged" if stage == "merge-lora" else cfg.get("method"))


def promote(cfg: PromoteConfig) -> dict:
    with _open(cfg.registry) as reg:
        run = reg.find(cfg.run)
        run.pop("_manifest", None)
        path, base, method = _model_of(run)
        live = reg.promote(cfg.agent, run["run_id"], path, base, method, cfg.version)
        return {"agent": cfg.agent, "active": live, "history": reg.history(cfg.agent)}


def _say(text: str) -> None:
    from trajtune.console import err_console

    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def render_promote(summary: dict, cfg: Any) -> None:
    a = summary["active"]
    _say(f"{summary['agent']}: {a['version']} is active ({a['run_id']}, {_rel(a['model_path'])})")


@dataclass
class AgentConfig:
    agent: str = field("", metavar="NAME", help="the agent (type)")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if not self.agent:
            raise UsageError("--agent NAME is required")


def active(cfg: AgentConfig) -> dict:
    with _open(cfg.registry) as reg:
        live, history = reg.active(cfg.agent), reg.history(cfg.agent)
    if not history:
        raise DataError(f"nothing was ever promoted for agent {cfg.agent!r}",
                        hint=f"trajtune runs promote RUN --agent {cfg.agent}")
    return {"agent": cfg.agent, "active": live, "history": history}


def render_active(summary: dict, cfg: Any) -> None:
    from rich.table import Table

    from trajtune.console import err_console

    live = summary["active"]
    _say(f"{summary['agent']}: " + (f"{live['version']} is active ({live['run_id']}, {_rel(live['model_path'])})"
                                     if live else "no active version (all rolled back)"))
    table = Table(title=f"{summary['agent']}: history")
    for col in ("version", "run", "model", "method", "promoted", "rolled back"):
        table.add_column(col)
    for h in summary["history"]:
        table.add_row(h["version"] + (" *" if live and h["id"] == live["id"] else ""), h["run_id"], _rel(h["model_path"]),
                      h["method"] or "-", h["promoted_at"][:19].replace("T", " "),
                      (h["rolled_back_at"] or "")[:19].replace("T", " "))
    err_console.print(table)


def rollback(cfg: AgentConfig) -> dict:
    with _open(cfg.registry) as reg:
        retired, live = reg.rollback(cfg.agent)
        return {"agent": cfg.agent, "rolled_back": retired, "active": live, "history": reg.history(cfg.agent)}


def render_rollback(summary: dict, cfg: Any) -> None:
    r, a = summary["rolled_back"], summary["active"]
    _say(f"{summary['agent']}: rolled back {r['version']} ({r['run_id']}); {a['version']} is active again "
         f"({a['run_id']}, {_rel(a['model_path'])})")


@dataclass
class ExportConfig:
    agent: str = field("", metavar="NAME", help="the agent whose active model to export")
    format: str = field("vllm", choices=("vllm",), help="what to export for")
    name: Optional[str] = field(None, help="the model name clients request (default: the agent name)")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if not self.agent:
            raise UsageError("--agent NAME is required", hint="trajtune runs export --agent NAME --format vllm")


# vLLM's --max-lora-rank defaults to 16 and takes these values
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def export(cfg: ExportConfig) -> dict:
    with _open(cfg.registry) as reg:
        live = reg.active(cfg.agent)
    if live is None:
        raise DataError(f"agent {cfg.agent!r} has no active version", hint=f"trajtune runs promote RUN --agent {cfg.agent}")
    name = cfg.name or cfg.agent
    path = Path(live["model_path"])
    if not path.is_dir():
        raise DataError(f"the active model of {cfg.agent!r} ({live['version']}) is gone: {path}",
                        hint=f"promote another run, or trajtune runs rollback --agent {cfg.agent}")
    out: dict[str, Any] = {"format": cfg.format, "agent": cfg.agent, "name": name, "version": live["version"],
                           "run_id": live["run_id"], "method": live["method"]}
    adapter_cfg = path / "adapter_config.json"
    if adapter_cfg.is_file():
        ac = json.loads(adapter_cfg.read_text("utf-8"))
        base = ac.get("base_model_name_or_path") or live["base_model"]
        rank = ac.get("r")
        line = f"--lora-modules {name}={shlex.quote(str(path))}"
        args = ["--enable-lora", line]
        if isinstance(rank, int) and rank > 16:
            args.append(f"--max-lora-rank {next((r for r in VLLM_LORA_RANKS if r >= rank), rank)}")
        out.update(base_model=base, adapter=str(path), lora_rank=rank, lora_modules=f"{name}={path}",
                   lora_module={"name": name, "path": str(path), "base_model_name": base})
        out["serve"] = f"vllm serve {shlex.quote(str(base))} " + " ".join(args)
    else:  # a merged model: served as itself
        line = f"--served-model-name {name}"
        out.update(base_model=live["base_model"], model=str(path), adapter=None)
        out["serve"] = f"vllm serve {shlex.quote(str(path))} {line}"
    out["line"] = line
    return out


def render_export(summary: dict, cfg: ExportConfig, as_json: bool = False) -> None:
    if as_json:
        return
    import typer

    typer.echo(summary["line"])
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "line"}, indent=2))


# ---------------------------------------------------------------------------------------------
# reindex


@dataclass
class ReindexConfig:
    dir: str = field("runs", positional=True, metavar="DIR", help="folder to search for manifests (recursively)")
    registry: Optional[str] = _registry_field()

    def check(self) -> None:
        if not Path(self.dir).is_dir():
            raise UsageError(f"{self.dir}: no such folder", hint="trajtune runs reindex DIR (a folder holding runs)")


SKIP_DIRS = ("tensorboard", "node_modules", "__pycache__")


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    from trajtune.lineage import is_manifest_name
    from trajtune.registry import JOURNAL

    manifests, journals = [], []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "checkpoint-")) and d not in SKIP_DIRS)
        for f in sorted(files):
            if is_manifest_name(f):
                manifests.append(Path(here) / f)
            elif f == JOURNAL:
                journals.append(Path(here) / f)
    return manifests, journals


def reindex(cfg: ReindexConfig) -> dict:
    from trajtune.lineage import read_manifest
    from trajtune.registry import JOURNAL

    root = Path(cfg.dir)
    manifests, journals = _walk(root)
    with _open(cfg.registry, create=True) as reg:
        beside = reg.path.parent / JOURNAL
        if beside.is_file() and all(os.path.realpath(j) != os.path.realpath(beside) for j in journals):
            journals.append(beside)
        found: set[str] = set()
        unreadable = []
        with reg.write():
            for path in manifests:
                m = read_manifest(path)
                if m is None:
                    unreadable.append(str(path))
                    continue
                for one in [m, *(m.get("earlier") or [])]:  # runs replaced on the same output are kept inside
                    if isinstance(one, dict) and one.get("run_id"):
                        one = {k: v for k, v in one.items() if k != "earlier"}
                        reg._upsert(one, path)
                        found.add(one["run_id"])
            removed = reg.remove_missing(root, found)
            events = reg.replay(journals) if journals else 0
        total = reg.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    return {"dir": str(root), "registry": str(reg.path), "manifests": len(manifests), "runs_indexed": len(found),
            "removed": removed, "unreadable": unreadable, "promotion_events": events, "runs_in_registry": total}


def render_reindex(summary: dict, cfg: Any) -> None:
    _say(f"indexed {summary['runs_indexed']} runs from {summary['manifests']} manifests under {summary['dir']} into "
         f"{_rel(summary['registry'])} ({summary['removed']} gone removed, {summary['promotion_events']} promotion events "
         f"replayed; {summary['runs_in_registry']} runs in all)")
    for p in summary["unreadable"]:
        _say(f"skipped {p}: not a trajtune manifest")


STAGES = [
    Stage(name="runs list", config=ListConfig, run=list_runs, render=render_list,
          help="List the registered runs (every stage registers its run when it finishes), oldest first, with their "
               "headline metrics and the agents they are promoted for.",
          example="trajtune runs list --stage evaluate"),
    Stage(name="runs show", config=ShowConfig, run=show, render=render_show,
          help="Show a run's manifest (command, config, inputs with sha256, packages, time, memory, metrics) and "
               "its lineage: the runs that made what it read, down to the raw data.",
          example="trajtune runs show runs/sft"),
    Stage(name="runs compare", config=CompareConfig, run=compare_runs, render=render_compare,
          help="Compare two evaluations of the same tasks: each metric side by side with its delta, and the exact "
               "McNemar test on the paired tasks. Refused, with the reason, when the task sets differ.",
          example="trajtune runs compare runs/eval-old runs/eval-new"),
    Stage(name="runs promote", config=PromoteConfig, run=promote, render=render_promote,
          help="Make a finished train-sft, train-dpo or merge-lora run the active model of an agent (a new version; "
               "the previous one stays in the history for rollback).",
          example="trajtune runs promote runs/dpo --agent support"),
    Stage(name="runs active", config=AgentConfig, run=active, render=render_active,
          help="The active model of an agent, and the history of its promotions and rollbacks.",
          example="trajtune runs active --agent support"),
    Stage(name="runs rollback", config=AgentConfig, run=rollback, render=render_rollback,
          help="Retire an agent's active version: the one promoted before it is active again.",
          example="trajtune runs rollback --agent support"),
    Stage(name="runs export", config=ExportConfig, run=export, render=render_export,
          help="Print what a server needs to load an agent's active model: for vLLM the --lora-modules line, then a "
               "JSON description (base model, adapter, rank, the full `vllm serve` command); stdout.",
          example="trajtune runs export --agent support --format vllm"),
    Stage(name="runs reindex", config=ReindexConfig, run=reindex, render=render_reindex,
          help="Rebuild the registry from the manifests under DIR (the manifests are the truth; the database is an "
               "index): adds what is missing, drops runs whose manifest is gone, replays promotions.jsonl.",
          example="trajtune runs reindex runs"),
]

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGES, help="Find, inspect, compare and promote registered runs.")
