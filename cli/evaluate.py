"""`trajtune evaluate`: score a model (and a baseline) on tool-use tasks; predictions + reports."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from trajtune.cli.common import err_console, out_console


def register(app: typer.Typer) -> None:
    @app.command(
        "evaluate",
        help="Evaluate a model on task records: prompts rendered exactly as in training, batched greedy generation "
        "(shared prompt prefixes computed once, no padding, finished sequences replaced at once), "
        "each reply scored (tool names, type-aware arguments, order, no-call, answers). Writes predictions.jsonl "
        "(appended as it goes; re-running skips done tasks), report.json and report.md, and prints the table. "
        "With --baseline both models answer the same tasks and the report adds the improvement in points, an "
        "exact paired McNemar p-value and 'ready for RL'.",
        epilog="Example: trajtune evaluate --model default --adapter runs/sft/final --baseline base "
        "--tasks data/tasks.jsonl --output runs/eval",
    )
    def evaluate_cmd(
        tasks: Optional[Path] = typer.Option(None, "--tasks", "-t", help="task JSONL (prompt, tools, expected)"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for predictions.jsonl, report.json, report.md"),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="model folder, .gguf, hub id or 'default' (default: default)"),
        adapter: List[Path] = typer.Option(None, "--adapter", help="LoRA adapter applied to --model; repeat for a chain"),
        baseline: Optional[str] = typer.Option(None, "--baseline", help="'base' (--model without adapter) or another model to compare with"),
        max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="generation limit per task (default 256)"),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences decoded together (default 64; fewer when their KV cache would not fit in a quarter of free memory)"),
        engine: Optional[str] = typer.Option(None, "--engine", help="transformers backend: slots (shared prefixes, no padding, continuous batching), generate (model.generate, padded batches) or auto (default)"),
        stop: List[str] = typer.Option(None, "--stop", help="extra stop string (the end-of-turn token always stops); repeatable"),
        ready_threshold: Optional[float] = typer.Option(None, "--ready-threshold", help="pass rate that means 'ready for RL' (default 0.85)"),
        backend: Optional[str] = typer.Option(None, "--backend", help="auto (vLLM when installed with a GPU), transformers or vllm"),
        limit: Optional[int] = typer.Option(None, "--limit", help="only the first N tasks"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML with any of these options (flags override it)"),
        as_json: bool = typer.Option(False, "--json", help="print report.json's content on stdout instead of the table"),
    ) -> None:
        from trajtune import config as cfglib
        from trajtune.scripts.evaluate import EvaluateConfig, evaluate, rich_table

        cfg = cfglib.build(EvaluateConfig, config, {
            "tasks": str(tasks) if tasks else None, "output": str(output) if output else None, "model": model,
            "adapter": [str(a) for a in adapter] if adapter else None, "baseline": baseline,
            "max_new_tokens": max_new_tokens, "batch_size": batch_size, "stop": list(stop) if stop else None,
            "ready_threshold": ready_threshold, "backend": backend, "engine": engine, "limit": limit})
        with err_console.status("evaluating") as status:
            report = evaluate(cfg, progress=lambda m: (status.update(m), err_console.print(m, markup=False)))
        if as_json:
            typer.echo(json.dumps(report))
        else:
            out_console.print(rich_table(report))
            err_console.print(f"wrote {Path(cfg.output) / 'report.md'} and report.json")
