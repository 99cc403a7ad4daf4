"""The trajtune command line: this module only wires the subcommands (one module each)."""
from __future__ import annotations

import typer

from trajtune.cli import common

app = typer.Typer(
    name="trajtune",
    help="Turn agent data into clean datasets and fine-tune language models on them.\n\n"
    "Every stage reads and writes JSONL/YAML files and can be re-run to resume.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each command module registers itself on `app`; importing is cheap (heavy imports are lazy).
from trajtune.cli import validate as _validate  # noqa: E402

_validate.register(app)
from trajtune.cli import convert as _convert  # noqa: E402

_convert.register(app)
from trajtune.cli import split as _split  # noqa: E402

_split.register(app)
from trajtune.cli import merge_lora as _merge_lora  # noqa: E402

_merge_lora.register(app)
from trajtune.cli import train_sft as _train_sft  # noqa: E402

_train_sft.register(app)
from trajtune.cli import generate as _generate  # noqa: E402

_generate.register(app)
from trajtune.cli import review as _review  # noqa: E402

_review.register(app)
from trajtune.cli import train_dpo as _train_dpo  # noqa: E402

_train_dpo.register(app)
from trajtune.cli import evaluate as _evaluate  # noqa: E402

_evaluate.register(app)


def main() -> None:
    common.run_app(app)


if __name__ == "__main__":
    raise SystemExit(main())
