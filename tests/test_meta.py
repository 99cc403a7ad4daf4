"""Meta-tests that keep the surface honest: packaging, --help, configs, README commands."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from trajtune.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        else:
            out.append(path)

    walk(root, [])
    return out


def test_no_top_level_cli_or_generators_module_installed(tmp_path):
    code = ("import importlib.util as u, trajtune.cli, trajtune.generators, trajtune.schemas;"
            "print([m for m in ('cli','generators','converters','schemas','scripts') if u.find_spec(m)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p))
def test_every_command_help_shows_an_example(path):
    res = CliRunner().invoke(app, path + ["--help"])
    assert res.exit_code == 0, res.output
    assert "Example" in res.output


def test_top_level_help_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "trajtune.cli.app", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    heavy = [m for m in ("torch", "transformers", "trl", "peft", "datasets") if re.search(rf"\| {m}$", out.stderr, re.M)]
    assert heavy == [], f"--help imported heavy modules: {heavy}"
    for path in _commands():
        assert path[0] in out.stdout


def test_every_shipped_yaml_config_parses():
    files = sorted((ROOT / "configs").rglob("*.yaml"))
    for f in files:
        text = f.read_text()
        assert text.lstrip().startswith("#"), f"{f} must open with a comment saying what it is for"
        assert isinstance(yaml.safe_load(text), dict), f


def test_readme_commands_are_what_ci_and_make_run():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    cmds = [l.split("#")[0].strip() for l in first_block if l.strip()]
    assert cmds == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", make, re.M) and re.search(r"^test:", make, re.M)
