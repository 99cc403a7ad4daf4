"""`trajtune validate PATH...`: schema + agent-specific checks, the gate before GPU hours."""
from __future__ import annotations

from typing import List, Optional

import typer

EPILOG = (
    "Example: trajtune validate data/examples/valid/sft.jsonl --against test.jsonl "
    "--tokenizer default --max-length 2048 --format github --report validate.json"
)


def register(app: typer.Typer) -> None:
    @app.command(
        "validate",
        help="Check JSONL records (sft, preference, group, triplet, task) against their schemas and "
        "agent-specific rules: tool call ids, tool names, arguments vs the tool's parameters, role "
        "order, duplicates, leakage, token lengths. Exit 0 clean, 1 errors found, 2 bad usage or unreadable path.",
        epilog=EPILOG,
    )
    def validate_cmd(
        paths: List[str] = typer.Argument(..., help="JSONL files (.gz works); '-' reads stdin", show_default=False),
        kind: Optional[str] = typer.Option(None, "--kind", help="sft|preference|group|triplet|task (default: detected per file)"),
        tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="model whose tokenizer counts tokens (folder, hub id or 'default')"),
        max_length: Optional[int] = typer.Option(None, "--max-length", help="with --tokenizer: report records longer than N tokens"),
        against: Optional[List[str]] = typer.Option(None, "--against", help="file whose prompts must not appear (leakage); repeatable"),
        report: Optional[str] = typer.Option(None, "--report", help="write the full report as JSON here"),
        fmt: Optional[str] = typer.Option(None, "--format", help="text | json | github (Actions annotations)"),
        json_out: bool = typer.Option(False, "--json", help="same as --format json: the report on stdout"),
        max_errors: Optional[int] = typer.Option(None, "--max-errors", help="print at most N problems per file (default 50); all are counted"),
        strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="warnings fail too"),
        workers: Optional[int] = typer.Option(None, "--workers", help="processes for large files (default 1)"),
        max_line_mb: Optional[float] = typer.Option(None, "--max-line-mb", help="longer lines are reported, not parsed (default 32)"),
        config: Optional[str] = typer.Option(None, "--config", help="YAML file with these options as keys"),
    ) -> None:
        from trajtune import config as cfgmod
        from trajtune.schemas import validate as stage

        cfg = cfgmod.build(stage.ValidateConfig, config, {
            "kind": kind, "tokenizer": tokenizer, "max_length": max_length, "against": against or None,
            "report": report, "format": "json" if json_out else fmt, "max_errors": max_errors, "strict": strict,
            "workers": workers, "max_line_mb": max_line_mb,
        })
        code = stage.run(paths, cfg)
        if code:
            # SystemExit, not typer.Exit: run_app calls the app with standalone_mode=False, where
            # click turns typer.Exit into a return value that run_app drops (exit 0).
            raise SystemExit(code)
