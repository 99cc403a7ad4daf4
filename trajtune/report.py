"""evaluate's report: metrics and breakdowns from scored predictions, the paired comparison of
two models (exact McNemar test), and the summary table shared by ``report.md`` and the terminal.

A prediction is one line of ``predictions.jsonl`` (see ``trajtune.scripts.evaluate``): the task
id, the reply, and the fields of its :class:`trajtune.scoring.Score`.
"""
from __future__ import annotations

from collections import defaultdict


def _rate(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(sum(map(float, xs)) / len(xs), 4) if xs else None


def metrics(preds: list[dict], tasks_by_id: dict[str, dict]) -> dict:
    """One model's metrics, failure reasons and breakdowns (by category, difficulty, tool)."""
    n = len(preds)
    call_tasks = [p for p in preds if p["kind"] == "calls"]
    nocall = [p for p in preds if p["kind"] == "no_call"]
    attempted = [p for p in preds if p["calls"] or not p["valid_json"]]
    gen_tokens = sum(p["generated_tokens"] for p in preds)
    secs = sum(p["latency_s"] for p in preds)
    reasons: dict[str, int] = defaultdict(int)
    for p in preds:
        if not p["pass"]:
            reasons[p["reason"]] += 1
    out = {
        "tasks": n, "passed": sum(p["pass"] for p in preds), "pass_rate": _rate([p["pass"] for p in preds]),
        "tool_name_accuracy": _rate([p["tool_name_correct"] for p in call_tasks]),
        "argument_accuracy": _rate([p["argument_accuracy"] for p in call_tasks]),
        "valid_json_rate": _rate([p["valid_json"] for p in attempted]),
        "hallucination_rate": _rate([p["hallucinated"] for p in preds]),
        "no_call_accuracy": _rate([p["pass"] for p in nocall]),
        "mean_latency_s": round(secs / n, 4) if n else None,
        "generated_tokens": gen_tokens, "tokens_per_s": round(gen_tokens / secs, 2) if secs else None,
        "truncated": sum(p["truncated"] for p in preds), "reasons": dict(sorted(reasons.items())),
    }
    groups: dict[str, dict[str, list[bool]]] = {"category": defaultdict(list), "difficulty": defaultdict(list),
                                                "tool": defaultdict(list), "split_reason": defaultdict(list)}
    for p in preds:
        t = tasks_by_id[p["task_id"]]
        md = t.get("metadata") or {}
        groups["category"][str(md.get("category", "(none)"))].append(p["pass"])
        if md.get("split_reason"):  # held_out_tool / held_out_phrasing / held_out_template / no_call
            groups["split_reason"][str(md["split_reason"])].append(p["pass"])
        groups["difficulty"][str(md.get("difficulty", "(none)"))].append(p["pass"])
        exp = t["expected"]
        names = sorted({c["name"] for c in exp.get("calls", [])}) if "calls" in exp else []
        for name in names or (["(no call)"] if "calls" in exp else ["(answer)"]):
            groups["tool"][name].append(p["pass"])
    out["by"] = {g: {k: {"tasks": len(v), "pass_rate": _rate(v)} for k, v in sorted(d.items())} for g, d in groups.items()}
    # the unweighted mean over categories (how BFCL summarises; a big category does not drown a small one)
    cats = [v["pass_rate"] for v in out["by"]["category"].values() if v["pass_rate"] is not None]
    out["category_mean_pass_rate"] = round(sum(cats) / len(cats), 4) if len(cats) > 1 else None
    return out


def compare(base: list[dict], tuned: list[dict], threshold: float) -> dict:
    """Paired comparison on the tasks both answered: exact McNemar test on the discordant pairs."""
    from scipy.stats import binomtest

    b = {p["task_id"]: p["pass"] for p in base}
    t = {p["task_id"]: p["pass"] for p in tuned}
    common = sorted(set(b) & set(t))
    only_base = sum(1 for k in common if b[k] and not t[k])
    only_tuned = sum(1 for k in common if t[k] and not b[k])
    disc = only_base + only_tuned
    p = binomtest(only_tuned, disc, 0.5).pvalue if disc else 1.0
    br = sum(b[k] for k in common) / len(common) if common else 0.0
    tr = sum(t[k] for k in common) / len(common) if common else 0.0
    return {"paired_tasks": len(common), "baseline_pass_rate": round(br, 4), "tuned_pass_rate": round(tr, 4),
            "improvement_points": round(100 * (tr - br), 2), "fixed": only_tuned, "broken": only_base,
            "mcnemar_p": float(p), "significant": bool(p < 0.05), "ready_threshold": threshold,
            "ready_for_rl": bool(tr >= threshold)}


# ---------------------------------------------------------------------------------------------
# report.md and the terminal table


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


METRIC_ROWS = [("pass rate", "pass_rate", _pct), ("pass rate, mean over categories", "category_mean_pass_rate", _pct),
               ("tool-name accuracy", "tool_name_accuracy", _pct),
               ("argument accuracy", "argument_accuracy", _pct), ("valid-JSON rate", "valid_json_rate", _pct),
               ("hallucination rate", "hallucination_rate", _pct), ("no-call accuracy", "no_call_accuracy", _pct),
               ("mean latency per task", "mean_latency_s", lambda x: "-" if x is None else f"{x:.3f} s"),
               ("generated tokens", "generated_tokens", str), ("truncated", "truncated", str)]


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (report.md and the terminal show the same)."""
    roles = list(report["models"])
    rows = [[label] + [fmt(report["models"][r]["metrics"].get(key)) for r in roles] for label, key, fmt in METRIC_ROWS]
    c = report.get("comparison")
    if c:
        rows.append(["improvement", "", f"{c['improvement_points']:+.1f} points"])
        rows.append(["McNemar p (paired, exact)", "", f"{c['mcnemar_p']:.4g}" + (" (significant)" if c["significant"] else " (not significant)")])
    last = roles[-1] if not c else "tuned"
    rate = report["models"][last]["metrics"]["pass_rate"] or 0.0
    ready = rate >= report["ready_threshold"]
    rows.append(["ready for RL", *([""] * (len(roles) - 1)), f"{'yes' if ready else 'no'} (threshold {_pct(report['ready_threshold'])})"])
    return ["metric", *roles], rows


def render_markdown(report: dict) -> str:
    head, rows = table_rows(report)
    lines = ["# Evaluation report", "", f"Tasks: `{report['tasks_file']}` ({report['tasks']} tasks)", ""]
    for role, m in report["models"].items():
        how = f"{m['backend']}, {m['dtype']}" if m.get("backend") and m.get("dtype") else (m.get("backend") or "from predictions.jsonl")
        lines.append(f"- **{role}**: `{m['model']}` ({how})")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Pass rate: all tasks. Tool-name and argument accuracy: tasks expecting calls. Valid-JSON rate: replies "
              "that attempted a call. No-call accuracy: tasks whose right answer is no call. Latency: a task's "
              "share of the generation time (its own prefill plus its share of each decode step it ran in; with "
              "--engine generate, its batch's time divided by the batch size), so latencies add up to the run's time."]
    roles = list(report["models"])
    cats = sorted({k for m in report["models"].values() for k in m["metrics"]["by"]["category"]})
    if len(cats) > 1:  # the models side by side, per category
        lines += ["", "## Pass rate by category", "", "| category | tasks | " + " | ".join(roles) + " |",
                  "|---|---|" + "---|" * len(roles)]
        for k in cats:
            cells = [m["metrics"]["by"]["category"].get(k, {}) for m in report["models"].values()]
            lines.append(f"| {k} | {max(c.get('tasks', 0) for c in cells)} | "
                         + " | ".join(_pct(c.get("pass_rate")) for c in cells) + " |")
        lines.append("| **mean over categories** | | " + " | ".join(
            _pct(report["models"][r]["metrics"].get("category_mean_pass_rate")) for r in roles) + " |")
    reasons = sorted({k for m in report["models"].values() for k in m["metrics"]["by"].get("split_reason", {})})
    if len(reasons) > 1:  # how far from training each task is: tools, templates, phrasings never trained on
        lines += ["", "## Pass rate by what was held out", "", "| held out | tasks | " + " | ".join(roles) + " |",
                  "|---|---|" + "---|" * len(roles)]
        for k in reasons:
            cells = [m["metrics"]["by"].get("split_reason", {}).get(k, {}) for m in report["models"].values()]
            lines.append(f"| {k} | {max(c.get('tasks', 0) for c in cells)} | "
                         + " | ".join(_pct(c.get("pass_rate")) for c in cells) + " |")
    for role, m in report["models"].items():
        mm = m["metrics"]
        lines += ["", f"## {role}: failure reasons", ""]
        lines += [f"- {k}: {v}" for k, v in mm["reasons"].items()] or ["- none"]
        for g, d in mm["by"].items():
            lines += ["", f"### {role} by {g}", "", f"| {g} | tasks | pass rate |", "|---|---|---|"]
            lines += [f"| {k} | {v['tasks']} | {_pct(v['pass_rate'])} |" for k, v in d.items()]
    c = report.get("comparison")
    if c:
        lines += ["", "## Paired comparison", "",
                  f"{c['paired_tasks']} tasks answered by both: the tuned model fixed {c['fixed']} and broke {c['broken']}; "
                  f"{c['improvement_points']:+.1f} points, exact McNemar p = {c['mcnemar_p']:.4g} "
                  f"({'significant' if c['significant'] else 'not significant'} at 0.05)."]
    return "\n".join(lines) + "\n"


def rich_table(report: dict):
    from rich.table import Table

    head, rows = table_rows(report)
    table = Table(title=f"evaluate: {report['tasks']} tasks")
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    return table
