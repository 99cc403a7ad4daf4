"""`trajtune validate PATH...`: schema + agent-specific checks, the gate before GPU hours.

Problems go to stdout (``file:line: severity [check] message``, or GitHub Actions annotations
with ``--format github``), a summary per file to stderr. The summary of the run is the report
(``-o FILE`` writes it; ``--json`` or ``--format json`` prints it on stdout instead of the
problems). Exit 0 clean, 1 errors found (or warnings with ``--strict``), 2 bad usage or an
unreadable path. The engine is :mod:`trajtune.schemas.validate`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from trajtune.config import field
from trajtune.errors import UsageError
from trajtune.records import KINDS
from trajtune.stage import Stage

FORMATS = ("text", "json", "github")


@dataclass
class Config:
    paths: list[str] = field(default_factory=list, positional=True, metavar="PATH",
                             help="JSONL files (.gz works); '-' reads stdin")
    kind: Optional[str] = field(None, choices=KINDS, help="record kind for every file; default: detected per file")
    tokenizer: Optional[str] = field(None, metavar="MODEL",
                                     help="model whose tokenizer counts tokens (a folder, hub id or 'default')")
    max_length: Optional[int] = field(None, metavar="TOKENS",
                                      help="with --tokenizer: records longer than this many tokens are reported as truncated")
    against: list[str] = field(default_factory=list, split=False, metavar="FILE",
                               help="files whose prompts must not appear in the validated files (leakage)")
    output: Optional[str] = field(None, flags=("-o",), output=True, metavar="FILE",
                                  help="write the full report as JSON to this file ('-' = stdout)")
    format: str = field("text", choices=FORMATS,
                        help="how problems are printed: text, json (the report on stdout) or github (Actions annotations)")
    max_errors: int = field(50, metavar="N", help="print at most this many problems per file (counting is never limited)")
    strict: bool = field(False, help="warnings fail the run too")
    workers: int = field(1, help="processes for large files (split by byte ranges)")
    max_line_mb: float = field(32.0, help="longer lines are reported as line_too_long without being parsed")

    def check(self) -> None:
        if not self.paths:
            raise UsageError("no files given", hint="trajtune validate data/train.jsonl")
        if self.max_length is not None and self.tokenizer is None:
            raise UsageError("--max-length needs --tokenizer MODEL")
        if self.max_length is not None and self.max_length < 1:
            raise UsageError("--max-length must be at least 1 token")
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.max_errors < 0:
            raise UsageError("--max-errors must be >= 0")
        if not self.max_line_mb > 0:
            raise UsageError(f"--max-line-mb must be a positive number of megabytes, got {self.max_line_mb:g}")


def run(cfg: Config) -> dict:
    """Validate every path and write the report (``-o``); the report is the summary."""
    from trajtune.console import err_console
    from trajtune.jsonl import write_json
    from trajtune.schemas.validate import report_dict, validate

    with err_console.status("validating...", spinner="dots"):
        results = validate(cfg.paths, cfg)
    report = report_dict(results, cfg)
    report["exit_code"] = 0 if report["ok"] else 1
    if cfg.output and cfg.output != "-":
        write_json(cfg.output, report)
    return report


def render(report: dict, cfg: Config, as_json: bool = False) -> None:
    """Stdout: the problems, or the report with --format json / -o - (nothing with ``--json``,
    where the command prints the report itself); stderr: a summary per file and the verdict."""
    import json
    import sys

    from rich.markup import escape

    from trajtune.console import err_console
    from trajtune.schemas.validate import file_failed, print_problems, summary_table

    if not as_json:
        if cfg.format == "json" or cfg.output == "-":
            sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            print_problems(report["files"], cfg)
    for f in report["files"]:
        status = "[red]FAIL[/]" if file_failed(f, cfg.strict) else "[green]OK[/]"
        err_console.print(f"[bold]{escape(f['path'])}[/] ({f['kind'] or 'unknown kind'}) {status}", soft_wrap=True)
        err_console.print(summary_table(f, cfg.strict))
    t = report["totals"]
    verdict = "[red]FAILED[/]" if not report["ok"] else "[green]OK[/]"
    err_console.print(f"{verdict}: {t['files']} file(s), {t['records']:,} records, {t['valid']:,} valid, "
                      f"{t['errors']:,} error(s), {t['warnings']:,} warning(s)" + (" (--strict)" if cfg.strict else ""),
                      soft_wrap=True)


STAGE = Stage(
    name="validate", config=Config, run=run, render=render,
    help="Check JSONL records (sft, preference, group, triplet, task) against their schemas and agent-specific "
         "rules: tool call ids, tool names, arguments vs the tool's parameters, role order, duplicates, leakage, "
         "token lengths. Problems go to stdout, a summary per file to stderr; --json (or --format json) prints "
         "the report instead. Exit 0 clean, 1 errors found, 2 bad usage or unreadable path.",
    example="trajtune validate data/examples/valid/sft.jsonl --against test.jsonl --tokenizer default "
            "--max-length 2048 --format github -o validate.json",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
