"""`trajtune merge-lora` through the real CLI (subprocess: exit codes and messages as a user sees them)."""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trajtune.cli.command import COMMON, flag_names, options
from trajtune.scripts.merge_lora import Config

_spec = importlib.util.spec_from_file_location("_merge_helpers", Path(__file__).parents[1] / "scripts" / "test_merge_lora.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_adapter = _helpers.make_adapter  # one way to build a real LoRA adapter with non-zero B, shared with the stage tests


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "merge-lora", *map(str, args)],
                          capture_output=True, text=True, env=env)


def help_flags(res) -> set[str]:
    """The flags in the option table of a rich --help (each row starts with its flag names)."""
    flags = set()
    for line in res.stdout.splitlines():
        cells = line.strip().strip("│").split()
        while cells and cells[0].startswith("-"):
            flags.add(cells.pop(0))
    return flags


def expected_flags(cls) -> set[str]:
    want = {"-h", *COMMON}
    for f, shape, _ in options(cls):
        if not f.metadata.get("positional"):
            want |= set(flag_names(f)) | ({"--no-" + f.name.replace("_", "-")} if shape == "bool" else set())
    return want


def test_help_lists_exactly_the_config_fields():
    res = run("--help", env={**os.environ, "COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    assert help_flags(res) == expected_flags(Config)
    assert {f.name for f, _, _ in options(Config)} == {f.name for f in dataclasses.fields(Config)}
    assert "ADAPTER" in res.stdout and "--base" not in res.stdout and "Example: trajtune merge-lora" in res.stdout


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("run") / "final", seed=3)


def test_merge_then_rerun_is_up_to_date_and_json_summary(tiny_model, adapter, tmp_path):
    out = tmp_path / "merged"
    res = run(adapter, "--model", tiny_model, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "verified: max |logit diff|" in res.stderr
    assert (out / "model.safetensors").is_file() and (out / "merge_report.json").is_file()
    res = run(adapter, "--model", tiny_model, "--output", out, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["skipped"] is True


def test_existing_output_is_refused_with_exit_2(tiny_model, adapter, tmp_path):
    (tmp_path / "taken").mkdir()
    res = run(adapter, "--model", tiny_model, "-o", tmp_path / "taken")
    assert res.returncode == 2
    assert "Error:" in res.stderr and "already exists" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr


def test_not_an_adapter_is_a_usage_error(tiny_model, tmp_path):
    res = run(tiny_model, "-o", tmp_path / "o")
    assert res.returncode == 2
    assert "is not a LoRA adapter" in res.stderr
    res = run("-o", tmp_path / "o")
    assert res.returncode == 2 and "no adapter given" in res.stderr


def test_config_yaml_and_set_reach_every_field(tiny_model, adapter, tmp_path):
    """The YAML keys are the field names (samples and tolerance had no flag before); flags override them."""
    cfg = tmp_path / "merge.yaml"
    cfg.write_text(f"adapters: [{adapter}]\nmodel: {tiny_model}\noutput: {tmp_path / 'm'}\nsamples: 1\n")
    res = run("--config", cfg, "--set", "tolerance=0.5", "--json")
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["samples"] == 1 and rep["tolerance"] == 0.5 and rep["passed"] and "signature" not in rep
