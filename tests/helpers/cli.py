"""The real entry point inside click's CliRunner: `run("generate", "tools", ...)`.

Errors become the one `Error: ...` line and the exit code, exactly as for a user.
"""
from __future__ import annotations

import sys

import click
from click.testing import CliRunner, Result


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _app(args):
    from trajtune.cli.app import main

    sys.argv = ["trajtune", *args]
    main()


def run(*args: str) -> Result:
    return CliRunner().invoke(_app, list(args))
