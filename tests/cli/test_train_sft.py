"""`trajtune train-sft` through the real CLI (subprocess: exit codes and messages as a user sees them)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_sft_records", Path(__file__).parents[1] / "scripts" / "sft_records.py")
sft_records = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sft_records)

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "train-sft", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sft_records.write(tmp_path_factory.mktemp("d") / "train.jsonl", 60)


def test_train_in_a_timestamped_run_folder_then_rerun_is_a_no_op(tiny_model, data, tmp_path):
    args = [data, "--model", tiny_model, "--max-steps", "2", "--batch-size", "4", "--set", "save_steps=2", "--json"]
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    out = tmp_path / s["run_dir"]
    assert out.parent == tmp_path / "runs" and out.name.startswith("train-sft-")
    assert s["finished"] and s["global_step"] == 2 and s["stop_reason"] == "max_steps reached"
    assert "done: max_steps reached at step 2" in res.stderr
    assert (out / "final" / "adapter_model.safetensors").is_file() and (out / "config.yaml").is_file()
    res = run(*args, cwd=tmp_path)  # the same command again: finds its run folder, already finished
    assert res.returncode == 0, res.stderr
    again = json.loads(res.stdout)
    assert again["skipped"] is True and again["run_dir"] == s["run_dir"]
    assert "already holds a finished run; nothing to do" in res.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_bad_record_fails_with_file_and_line_before_the_model_loads(data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = data.read_text().splitlines()
    lines[2] = lines[2].replace('"role": "tool"', '"role": "robot"')
    bad.write_text("\n".join(lines) + "\n")
    res = run(bad, "--model", tmp_path / "no-such-model", cwd=tmp_path)  # the model path is never reached
    assert res.returncode == 1
    assert res.stderr.startswith("Error:") and f"{bad}:3:" in res.stderr
    assert "Traceback" not in res.stderr
    # no -o: the timestamped run folder it made is removed again, empty, when the data is refused
    assert not list((tmp_path / "runs").glob("train-sft-*"))


def test_too_few_records_is_refused(tmp_path):
    small = sft_records.write(tmp_path / "s.jsonl", 10)
    res = run(small, cwd=tmp_path)
    assert res.returncode == 1
    assert "only 10 sft records" in res.stderr and "at least 50" in res.stderr
    assert not list((tmp_path / "runs").glob("train-sft-*"))


def test_unknown_key_names_the_nearest_one(data):
    res = run(data, "--set", "lora_rank=8")
    assert res.returncode == 2
    assert "unknown option 'lora_rank'" in res.stderr and "did you mean 'lora_r'" in res.stderr


def test_unknown_key_in_config_file_names_the_nearest_one(data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("# test\nlearning_rat: 0.1\n")
    res = run(data, "--config", cfg)
    assert res.returncode == 2
    assert "unknown config key 'learning_rat'" in res.stderr and "did you mean 'learning_rate'" in res.stderr


def test_resume_path_that_does_not_exist_is_a_usage_error(tiny_model, data, tmp_path):
    res = run(data, "--model", tiny_model, "-o", tmp_path / "r", "--resume", tmp_path / "checkpoint-9")
    assert res.returncode == 2
    assert "no such checkpoint folder" in res.stderr


def test_qlora_on_cpu_is_refused_clearly(tiny_model, data, tmp_path):
    res = run(data, "--model", tiny_model, "-o", tmp_path / "q", "--method", "qlora", "--set", "device=cpu")
    assert res.returncode == 2
    assert "qlora needs a CUDA GPU" in res.stderr and "method: lora" in res.stderr


def test_shipped_configs_load(repo_root):
    from trajtune.config import build
    from trajtune.scripts.train_sft import Config as TrainSFTConfig

    files = sorted((repo_root / "configs" / "train_sft").glob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        cfg = build(TrainSFTConfig, f)
        assert cfg.method in ("lora", "full", "qlora")
        text = f.read_text()
        assert text.startswith("#") and "# Run:" in text and "# Override:" in text
