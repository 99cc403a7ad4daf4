"""One convention for every command, checked over all of them, and the README's tables against the code.

Each command is a stage module (``trajtune.scripts.<command>``: ``Config`` + ``run``); its
command line is generated from the Config, so these tests hold for every command at once:
the flags ``--help`` shows are exactly the Config's fields plus the shared ones, outputs are
``-o/--output``, the model is ``--model``, randomness is ``--seed``, and the README says so.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from importlib import import_module
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajtune.cli.app import COMMANDS, app
from trajtune.cli.command import flag_names, options, yaml_only
from trajtune.stage import Stage

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"--config", "--set", "--json", "--help", "-h"}


def stages() -> list[Stage]:
    out = []
    for name in COMMANDS:
        mod = import_module(f"trajtune.scripts.{name}")
        out += getattr(mod, "STAGES", None) or [mod.STAGE]
    return out


ALL = stages()


def _click_command(stage: Stage):
    import typer

    cmd = typer.main.get_command(app)
    for word in stage.name.split():
        cmd = cmd.commands[word]
    return cmd


def flags_in_help(stage: Stage) -> set[str]:
    """Every flag the command accepts, as click (which renders --help) holds them."""
    return {o for p in _click_command(stage).params for o in (*p.opts, *getattr(p, "secondary_opts", ()))
            if o.startswith("-")} | {"--help", "-h"}


def test_every_command_is_a_stage_module_with_a_config_and_run():
    assert {s.name.split()[0] for s in ALL} == {c.replace("_", "-") for c in COMMANDS}
    for s in ALL:
        assert dataclasses.is_dataclass(s.config) and callable(s.run) and s.example.startswith("trajtune ")


@pytest.mark.parametrize("stage", ALL, ids=lambda s: s.name)
def test_help_lists_exactly_the_config_fields_and_the_shared_flags(stage):
    expected = set(SHARED)
    for f, shape, _ in options(stage.config):
        if f.metadata.get("positional"):
            continue
        expected |= set(flag_names(f))
        if shape == "bool":
            expected.add("--no-" + f.name.replace("_", "-"))
    assert flags_in_help(stage) == expected
    # --help renders, with the example, and a field without a flag of its own (a mapping) is named in --set's help
    res = CliRunner().invoke(app, [*stage.name.split(), "--help"], env={"COLUMNS": "300"})
    assert res.exit_code == 0 and "Example:" in res.output
    set_help = next(p.help for p in _click_command(stage).params if "--set" in p.opts)
    for name in yaml_only(stage.config):
        assert name in set_help


@pytest.mark.parametrize("stage", ALL, ids=lambda s: s.name)
def test_outputs_are_dash_o_inputs_positional_models_dash_dash_model(stage):
    fields = {f.name: f for f in dataclasses.fields(stage.config)}
    outputs = [f for f in fields.values() if f.metadata.get("output")]
    if outputs:  # the main output is -o/--output (side outputs such as --rejects keep their own name)
        assert "output" in fields and "-o" in fields["output"].metadata["flags"], stage.name
    for bad in ("output_dir", "tasks_file", "base", "data_file"):
        assert bad not in fields or fields[bad].metadata.get("positional"), f"{stage.name}: {bad}"
    if "seed" in fields:
        assert "--seed" in flags_in_help(stage)
    if "model" in fields:
        assert "--model" in flag_names(fields["model"])


def test_the_readme_stage_table_names_real_modules_and_real_flags():
    text = (ROOT / "README.md").read_text()
    table = text.split("| stage | command (module) | does |")[1].split("\n\n")[0]
    by_name = {s.name: s for s in ALL}
    rows = [r for r in table.splitlines() if r.startswith("| ") and "`trajtune " in r]
    assert len(rows) >= 13
    modules = set()
    for row in rows:
        cmd = re.search(r"`(trajtune [^`]+)`", row).group(1)
        mod = re.search(r"\(`(scripts/\w+\.py)`\)", row)
        if mod:
            modules.add(mod.group(1))
            assert (ROOT / mod.group(1)).is_file()
        words = shlex.split(cmd)[1:]
        stage = by_name.get(" ".join(words[:2])) or by_name[words[0]]
        known = {n for f, _, _ in options(stage.config) for n in flag_names(f)} | SHARED
        known |= {"--no-" + f.name.replace("_", "-") for f, shape, _ in options(stage.config) if shape == "bool"}
        for w in words:
            if w.startswith("-") and w != "-":
                assert w in known, f"README: {cmd}: {w} is not an option of {stage.name}"
    assert modules == {f"scripts/{c}.py" for c in COMMANDS}


def test_the_readme_convention_table_matches_the_code():
    text = (ROOT / "README.md").read_text()
    conv = text.split("### One convention for every command")[1].split("```bash")[0]
    for flag in ("-o/--output", "--model", "--config FILE.yaml", "--set KEY=VALUE", "--seed N", "--json"):
        assert flag in conv
    seeded = sorted(s.name.split()[0] for s in ALL if "seed" in {f.name for f in dataclasses.fields(s.config)})
    line = next(line for line in conv.splitlines() if line.startswith("| randomness"))
    for name in set(seeded):
        assert name in line, f"{name} has --seed but the README's convention table does not say so"


def test_the_example_of_every_command_parses(tmp_path):
    """Each --help example uses only options the command has (run with --help appended: parsed, not run)."""
    for s in ALL:
        words = shlex.split(s.example)[1:]
        known = {n for f, _, _ in options(s.config) for n in flag_names(f)} | SHARED
        known |= {"--no-" + f.name.replace("_", "-") for f, shape, _ in options(s.config) if shape == "bool"}
        for w in words:
            if w.startswith("-") and w != "-":
                assert w in known, f"{s.name} example: {w}"
