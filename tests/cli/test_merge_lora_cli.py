"""`trajtune merge-lora` through the real CLI (subprocess: exit codes and messages as a user sees them)."""
import json
import subprocess
import sys

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_merge_helpers", Path(__file__).parents[1] / "scripts" / "test_merge_lora.py")
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_adapter = _helpers.make_adapter  # one way to build a real LoRA adapter with non-zero B, shared with the stage tests


def run(*args):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "merge-lora", *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("run") / "final", seed=3)


def test_merge_then_rerun_is_up_to_date_and_json_summary(tiny_model, adapter, tmp_path):
    out = tmp_path / "merged"
    res = run("--base", tiny_model, "--adapter", adapter, "--output", out)
    assert res.returncode == 0, res.stderr
    assert "verified: max |logit diff|" in res.stderr
    assert (out / "model.safetensors").is_file() and (out / "merge_report.json").is_file()
    res = run("--base", tiny_model, "--adapter", adapter, "--output", out, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["skipped"] is True


def test_existing_output_is_refused_with_exit_2(tiny_model, adapter, tmp_path):
    (tmp_path / "taken").mkdir()
    res = run("--base", tiny_model, "--adapter", adapter, "--output", tmp_path / "taken")
    assert res.returncode == 2
    assert "Error:" in res.stderr and "already exists" in res.stderr and "--force" in res.stderr
    assert "Traceback" not in res.stderr


def test_not_an_adapter_is_a_usage_error(tiny_model, tmp_path):
    res = run("--adapter", tiny_model, "--output", tmp_path / "o")
    assert res.returncode == 2
    assert "is not a LoRA adapter" in res.stderr
