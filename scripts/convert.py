"""`trajtune convert IN -o OUT`: any common source of agent data -> trajtune records (or an export).

Every record is checked against its schema and the error-severity checks of ``trajtune validate``;
rejected inputs go to a rejects JSONL with their line and reason. A file-to-file run whose config
and inputs are unchanged since the last one (``OUT.convert.yaml``, usable as ``--config``) is
skipped unless ``--force``. The work is :func:`trajtune.converters.convert.run_convert`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from trajtune.config import field
from trajtune.errors import ConfigError, UsageError
from trajtune.stage import Stage


@dataclass
class Config:
    input: str = field("", positional=True, metavar="IN", help="input JSON, JSONL or Parquet file, or a datasets "
                       "save_to_disk folder ('-' = stdin, Parquet too; bfcl: also bfcl:CATEGORY or, with --from bfcl, "
                       "a category name)")
    output: str = field("", flags=("-o",), output=True, metavar="OUT",
                        help="output file or folder ('-' = stdout); its container: --container")
    source_format: str = field("auto", flags=("--from",), metavar="FORMAT",
                               help="input format (alpaca, sharegpt, openai, trl, cold-start, hermes, tool-logs, "
                                    "interactions, traces, otel, atif, critiques, hh-rlhf, bfcl, trajtune); auto = detect "
                                    "from the first rows; live sources: phoenix (IN = server URL, --project) and redis "
                                    "(IN = redis://host:port/db)")
    to: str = field("sft", metavar="KIND", help="output: a record kind (sft, preference, labelled, group, triplet; "
                    "task from bfcl) or an export (openai, sharegpt, alpaca-text, trl, trl-prompt-completion, "
                    "trl-preference, trl-unpaired, trl-stepwise)")
    container: str = field("auto", choices=("auto", "jsonl", "parquet", "dataset"), metavar="WHAT",
                           help="how OUT is written: jsonl, parquet (one file) or dataset (a datasets save_to_disk "
                                "folder); auto = parquet for *.parquet, else jsonl")
    rejects: Optional[str] = field(None, output=True, metavar="FILE",
                                   help="rejects JSONL (default: OUT with .rejects.jsonl beside it; none when OUT is '-')")
    max_records: Optional[int] = field(None, help="stop after this many converted records")
    allow_placeholders: bool = field(False, help="keep records with unfilled {{placeholders}} (template data)")
    force: bool = field(False, help="convert again even if OUT is up to date")
    keep_failed: bool = field(False, help="cold-start: keep rows whose metadata.success is false")
    # tool-invocation logs
    quality_threshold: float = field(0.90, help="tool-logs: minimum success rate kept")
    min_tool_calls: int = field(1, help="tool-logs: shortest tool sequence kept (tool calls)")
    max_tool_calls: int = field(5, help="tool-logs: longest tool sequence kept (tool calls)")
    min_task_chars: int = field(10, help="tool-logs: a shorter task_description is rejected")
    min_result_chars: int = field(2, help="tool-logs: a shorter expected_result is rejected")
    # interaction logs
    min_quality: float = field(0.8, help="interactions -> sft: minimum quality_scores.overall")
    min_quality_diff: float = field(0.2, help="interactions -> preference: minimum quality gap")
    group_size: int = field(4, help="interactions -> group: answers per group")
    agent_types: list[str] = field(default_factory=list, help="interactions: keep only these agent types")
    days_back: Optional[int] = field(None, help="interactions: keep only the last N days before --as-of")
    as_of: Optional[str] = field(None, metavar="DATE",
                                 help="interactions: reference date for --days-back (default: now, UTC)")
    # traces
    annotations: Optional[str] = field(None, metavar="FILE",
                                       help="traces: annotations JSON/JSONL (else read from the input)")
    approved_only: bool = field(True, help="traces -> sft: only spans annotated approved")
    sessions: bool = field(False, help="traces -> sft: one multi-turn trajectory per session.id")
    min_turns: int = field(2, help="traces --sessions: fewest turns in a session")
    # live sources: phoenix, redis
    project: Optional[str] = field(None, metavar="NAME", help="phoenix: the project to read spans from")
    api_key_env: str = field("PHOENIX_API_KEY", metavar="VAR",
                             help="phoenix: environment variable holding the API key; redis: the one holding the password "
                                  "(default there: REDIS_PASSWORD); the secret itself is never saved or printed")
    start_time: Optional[str] = field(None, metavar="TIME", help="phoenix: spans started at or after this ISO time")
    end_time: Optional[str] = field(None, metavar="TIME", help="phoenix: spans started before this ISO time")
    span_kinds: list[str] = field(default_factory=list, help="phoenix: only these span kinds (LLM, CHAIN, ...)")
    page_size: int = field(100, help="phoenix / redis: spans or interactions fetched per request")
    key_prefix: str = field("", metavar="PREFIX", help="redis: prefix of the interaction-log keys")
    # tool-retrieval triplets (sft or task records -> triplet)
    negatives_from: Optional[str] = field(None, metavar="CATALOG",
                                          help="triplet: take each negative from this tool catalog (JSON tools list or YAML "
                                               "catalog) instead of the record's offered tools: a sibling of the called "
                                               "tool's family (synthetic APIs) when there is one, else the catalog's most "
                                               "similar tool; tools held out for evaluation are never negatives")
    # bfcl
    answers: Optional[str] = field(None, metavar="FILE",
                                   help="bfcl: the possible_answer file (default: found beside IN, or in the cached "
                                        "bfcl-eval wheel)")

    def check(self) -> None:
        from trajtune.converters.exports import EXPORTS
        from trajtune.records import KINDS

        if not self.input:
            raise UsageError("no input given", hint="trajtune convert --from sharegpt glaive.json -o data/sft.jsonl")
        if not self.output:
            raise UsageError("no output given: -o OUT ('-' = stdout)",
                             hint=f"trajtune convert {self.input} -o data/sft.jsonl")
        if self.to not in KINDS and self.to not in EXPORTS:
            raise ConfigError(f"--to must be a kind ({', '.join(KINDS)}) or an export "
                              f"({', '.join(EXPORTS)}), got '{self.to}'")
        if self.min_tool_calls < 0 or self.max_tool_calls < self.min_tool_calls:
            raise ConfigError("--min-tool-calls/--max-tool-calls: need 0 <= min-tool-calls <= max-tool-calls")
        if self.group_size < 2:
            raise ConfigError("--group-size must be at least 2")
        if not 1 <= self.page_size <= 1000:
            raise ConfigError("--page-size must be between 1 and 1000")
        if self.source_format == "phoenix" and not self.project:
            raise UsageError("--from phoenix needs --project NAME",
                             hint=f"trajtune convert --from phoenix {self.input or 'http://127.0.0.1:6006'} "
                                  "--project default -o spans.jsonl")
        if not 0 <= self.quality_threshold <= 1:
            raise ConfigError("--quality-threshold must be between 0 and 1")


def run(cfg: Config) -> dict:
    from trajtune.converters.convert import run_convert

    summary = run_convert(cfg)
    summary["exit_code"] = 1 if summary["converted"] == 0 else 0  # nothing converted: bad data
    return summary


def render(s: dict, cfg: Config) -> None:
    from rich.markup import escape

    from trajtune.console import err_console

    if s.get("up_to_date"):
        err_console.print(f"{escape(s['output'])} is up to date ({s['converted']} records); --force converts again",
                          soft_wrap=True)
    else:
        as_ = f" ({s['container']})" if s.get("container", "jsonl") != "jsonl" else ""
        err_console.print(f"[bold]{s['converted']}[/] records ({s['from']} -> {s['to']}) written to "
                          f"{escape(s['output'])}{as_}", soft_wrap=True)
        for title, counts in (("rejected", s["rejected"]), ("skipped", s["skipped"])):
            if counts:
                total = sum(counts.values())
                where = f" -> {escape(s['rejects'])}" if title == "rejected" and s["rejects"] else ""
                err_console.print(f"{total} {title}{where}:", soft_wrap=True)
                for reason, n in counts.items():
                    err_console.print(f"  {n:>6}  {reason}", markup=False)
        if s["rejected"] and not s["rejects"]:
            err_console.print("rejected inputs were not written (output is stdout); pass --rejects FILE to keep them",
                              soft_wrap=True)
    if s["converted"] == 0:
        err_console.print("[bold red]Error:[/] nothing converted; see the reasons above"
                          + (f" and {escape(s['rejects'])}" if s["rejects"] else ""), soft_wrap=True)


STAGE = Stage(
    name="convert", config=Config, run=run, render=render,
    help="Convert agent data (alpaca, sharegpt, openai, TRL's dataset formats, cold-start exports, hermes, "
         "tool-logs, interactions, traces, atif, critiques, hh-rlhf, trajtune) into trajtune records, or export "
         "records to openai / sharegpt / alpaca-text / TRL's formats; BFCL questions (--from bfcl) into task "
         "records. Inputs and outputs are JSONL, Parquet or datasets folders.\n\n"
         "Every record is checked against its schema; rejected inputs go to a rejects JSONL with their line (row, "
         "for Parquet) and reason. '-' reads stdin / writes stdout. An unchanged file-to-file run is skipped (--force converts "
         "again); the resolved config is saved as OUT.convert.yaml (repeat the run with --config). "
         "Exit 1 when nothing converts.",
    example="trajtune convert --from sharegpt --to sft glaive.json -o data/sft.jsonl",
)

if __name__ == "__main__":
    from trajtune.cli.command import script

    script(STAGE)
