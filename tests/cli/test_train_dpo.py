"""`trajtune train-dpo` through the real CLI: exit codes, the messages users see, --json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from dpo_pairs import make_pairs, write_pairs  # noqa: E402
from trajtune.cli.app import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads per process crawl on a shared 2-core machine
    yield
    torch.set_num_threads(before)


def cli(*args, capsys=None):
    """Run through cli.common.run_app (the console entry point) and return (code, stdout, stderr)."""
    import trajtune.cli.app as appmod

    old = sys.argv
    sys.argv = ["trajtune", *args]
    try:
        appmod.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_shows_an_example():
    res = CliRunner().invoke(app, ["train-dpo", "--help"])
    assert res.exit_code == 0
    assert "Example: trajtune train-dpo data/pairs.jsonl --adapter runs/sft/final --config configs/train_dpo/smollm2-135m.yaml -o runs/dpo" in " ".join(res.output.split())


def test_trains_the_tiny_model_and_prints_a_json_summary(tiny_model, tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", 22)
    code, out, err = cli("train-dpo", "--config", str(ROOT / "configs/train_dpo/smollm2-135m.yaml"), "--model", str(tiny_model),
                         str(data), "-o", str(tmp_path / "run"), "--max-steps", "2",
                         "--precision", "fp32", "--set", "gradient_accumulation_steps=1", "--json", capsys=capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["finished"] and summary["global_step"] == 2 and summary["data"]["train_pairs"] == 22
    assert Path(summary["final"], "adapter_model.safetensors").is_file()
    assert "22 train / 0 eval pairs" in err
    # the same command again: the run is finished, nothing is retrained
    code, out, err = cli("train-dpo", "--config", str(ROOT / "configs/train_dpo/smollm2-135m.yaml"), "--model", str(tiny_model),
                         str(data), "-o", str(tmp_path / "run"), "--max-steps", "2",
                         "--precision", "fp32", "--set", "gradient_accumulation_steps=1", capsys=capsys)
    assert code == 0 and "already holds a finished run" in err


def test_bad_record_fails_with_file_and_line_before_loading_a_model(tmp_path, capsys):
    recs = make_pairs(25)
    del recs[6]["rejected"]
    p = tmp_path / "bad.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, out, err = cli("train-dpo", str(p), "--model", str(tmp_path / "no-such-model"),
                         "-o", str(tmp_path / "run"), capsys=capsys)
    assert code == 1
    assert f"{p}:7" in err and "Error:" in err and "Traceback" not in err


def test_too_few_pairs_is_a_clear_refusal(tmp_path, capsys):
    data = write_pairs(tmp_path / "few.jsonl", 5)
    code, out, err = cli("train-dpo", str(data), "-o", str(tmp_path / "run"), capsys=capsys)
    assert code == 1
    assert "only 5 preference pairs" in err and "at least 20 are needed" in err


def test_pending_review_is_refused_unless_allowed(tmp_path, capsys):
    data = write_pairs(tmp_path / "pending.jsonl", 25, review="pending")
    code, out, err = cli("train-dpo", str(data), "-o", str(tmp_path / "run"), capsys=capsys)
    assert code == 1 and "pending" in err and "--allow-unreviewed" in err


def test_unknown_config_key_names_the_nearest_one(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("bta: 0.2\n")
    code, out, err = cli("train-dpo", "--config", str(cfg), "x.jsonl", capsys=capsys)
    assert code == 2 and "unknown config key 'bta'" in err and "did you mean 'beta'" in err


def test_resume_path_that_does_not_exist_is_a_usage_error(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", 22)
    code, out, err = cli("train-dpo", str(data), "-o", str(tmp_path / "run"),
                         "--resume", str(tmp_path / "nope" / "checkpoint-3"), capsys=capsys)
    assert code == 2 and "no such checkpoint folder" in err


def test_qlora_on_cpu_is_refused(tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", 22)
    code, out, err = cli("train-dpo", str(data), "-o", str(tmp_path / "run"), "--method", "qlora",
                         "--set", "device=cpu", capsys=capsys)
    assert code == 2 and "qlora needs a CUDA GPU" in err


def test_shipped_dpo_configs_load_into_the_dpo_config(repo_root):
    from trajtune.config import build
    from trajtune.scripts.train_dpo import Config

    files = sorted((repo_root / "configs" / "train_dpo").glob("*.yaml"))
    assert files
    for f in files:
        cfg = build(Config, f)
        assert cfg.beta > 0 and cfg.method in ("lora", "full", "qlora")
        assert f.read_text().startswith("#")
