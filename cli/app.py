"""The trajtune command line: each command is the stage module ``trajtune.scripts.<command>``
(its ``STAGE``, or ``STAGES`` for a command with subcommands), turned into a Typer command by
``trajtune.cli.command``. Commands not yet moved onto that shape still register themselves from
``trajtune.cli.<command>``."""
from __future__ import annotations

from importlib import import_module

import typer

from trajtune.cli import common
from trajtune.cli.command import group, register
from trajtune.stage import Stage

app = typer.Typer(
    name="trajtune",
    help="Turn agent data into clean datasets and fine-tune language models on them.\n\n"
    "Every stage reads and writes JSONL/YAML files and can be re-run to resume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# the commands in the order --help lists them (importing a stage module is cheap: heavy imports are lazy)
COMMANDS = ("validate", "convert", "split", "merge_lora", "train_sft", "generate", "review", "train_dpo", "train_grpo", "train_embed", "evaluate",
            "advise", "runs")
GROUP_HELP = {
    "generate": "Generate synthetic agent data from a tool catalog: trajectories (sft), preference pairs, eval tasks. "
                "Offline by default (templates + tool simulators), deterministic for a seed; re-running appends only "
                "the records still missing. Records carry metadata.review: pending until `trajtune review` approves them.",
    "runs": "Find, inspect, compare and promote runs: every stage writes a lineage manifest beside its output and "
            "registers the run in an SQLite index (runs/registry.sqlite, or $TRAJTUNE_REGISTRY).",
}


def _wire(name: str) -> None:
    try:
        module = import_module(f"trajtune.scripts.{name}")
    except ModuleNotFoundError:
        module = None
    stages = getattr(module, "STAGES", None) or [getattr(module, "STAGE", None)]
    if not all(isinstance(st, Stage) for st in stages):
        import_module(f"trajtune.cli.{name}").register(app)
        return
    if len(stages) == 1 and " " not in stages[0].name:
        register(app, stages[0])
        return
    app.add_typer(group(stages, GROUP_HELP.get(name, "")), name=name.replace("_", "-"))


for _name in COMMANDS:
    _wire(_name)


def main() -> None:
    common.run_app(app)


if __name__ == "__main__":
    raise SystemExit(main())
