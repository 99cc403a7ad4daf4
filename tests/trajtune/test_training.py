"""Shared training helpers: data preparation, split, weights, run folders, checkpoint discovery."""
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from trajtune import training
from trajtune.errors import ConfigError, DataError
from trajtune.records import normalize_text, prompt_text

_spec = importlib.util.spec_from_file_location("_sft_records", Path(__file__).parents[1] / "scripts" / "sft_records.py")
sft_records = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sft_records)


def test_split_by_prompt_never_puts_a_prompt_on_both_sides():
    recs = [sft_records.trajectory(i) for i in range(120)]
    recs += [sft_records.trajectory(i) for i in range(30)]  # 30 prompts appear twice
    train, ev = training.split_by_prompt(recs, 0.1, seed=1)
    assert len(train) + len(ev) == 150
    assert 13 <= len(ev) <= 17
    tp = {normalize_text(prompt_text(r)) for r in train}
    assert not tp & {normalize_text(prompt_text(r)) for r in ev}
    assert training.split_by_prompt(recs, 0.1, seed=1) == (train, ev)  # deterministic


def test_mixing_weight_repeats_or_samples():
    recs = [{"id": str(i)} for i in range(10)]
    assert len(training.apply_weight(recs, 2.5, 0)) == 25
    half = training.apply_weight(recs, 0.5, 0)
    assert len(half) == 5 and len({r["id"] for r in half}) == 5
    assert training.apply_weight(recs, 1.0, 0) == recs


def test_prepare_data_splits_over_100_and_weights_train_only(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 110)
    b = sft_records.write(tmp_path / "b.jsonl", 20, start=500)
    d = training.prepare_data([str(a), str(b)], "sft", weights=[1.0, 2.0])
    assert d.counts["eval_split"] == "auto"
    assert d.counts["records_read"] == 130
    # b's 20 records are doubled on the train side only; eval holds originals, never copies
    b_ids = {f"t{500 + i}" for i in range(20)}
    b_held = sum(r["id"] in b_ids for r in d.eval)
    assert len(d.train) == (110 - (len(d.eval) - b_held)) + 2 * (20 - b_held)
    assert len({r["id"] for r in d.eval}) == len(d.eval)
    assert not {r["id"] for r in d.eval} & {r["id"] for r in d.train}


def test_the_split_spans_files_so_a_prompt_in_two_files_never_leaks(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 110)
    b = sft_records.write(tmp_path / "b.jsonl", 110)  # the same prompts again
    d = training.prepare_data([str(a), str(b)], "sft")
    held = {normalize_text(prompt_text(r)) for r in d.eval}
    assert held and not held & {normalize_text(prompt_text(r)) for r in d.train}


def test_prepare_data_without_split_at_100_or_fewer(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 60)
    d = training.prepare_data([str(a)], "sft")
    assert d.counts["eval_split"] == "none" and d.eval == [] and len(d.train) == 60


def test_too_few_records_is_refused_with_the_count(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 12)
    with pytest.raises(DataError) as exc:
        training.prepare_data([str(a)], "sft")
    assert "only 12 sft records" in str(exc.value) and "at least 50" in str(exc.value)


def test_invalid_file_fails_with_file_and_line(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 60)
    lines = a.read_text().splitlines()
    bad = json.loads(lines[6])
    bad["messages"][2]["tool_calls"][0]["function"]["arguments"]["limit"] = [1, 2]  # not integer/string
    lines[6] = json.dumps(bad)
    a.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        training.prepare_data([str(a)], "sft")
    assert f"{a}:7:" in str(exc.value)


def test_pending_review_is_refused_unless_allowed(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 60, review="pending")
    with pytest.raises(DataError) as exc:
        training.prepare_data([str(a)], "sft")
    assert "--allow-unreviewed" in str(exc.value)
    assert len(training.prepare_data([str(a)], "sft", allow_unreviewed=True).train) == 60


def test_weights_must_match_files(tmp_path):
    a = sft_records.write(tmp_path / "a.jsonl", 60)
    with pytest.raises(ConfigError, match="2 weights for 1 data files"):
        training.prepare_data([str(a)], "sft", weights=[1, 2])


def _fake_checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    ck = run / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ck


def test_newest_complete_checkpoint_wins_and_a_half_written_one_is_skipped(tmp_path, capsys):
    _fake_checkpoint(tmp_path, 4)
    good = _fake_checkpoint(tmp_path, 8)
    _fake_checkpoint(tmp_path, 12, complete=False)
    torn = _fake_checkpoint(tmp_path, 10, complete=False)
    (torn / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
    assert training.find_checkpoint(tmp_path, "auto") == good
    err = capsys.readouterr().err
    assert "skipping incomplete checkpoint" in err and "checkpoint-12" in err and "checkpoint-10" in err
    assert training.find_checkpoint(tmp_path, "never") is None
    assert training.find_checkpoint(tmp_path, str(good)) == good


def test_resume_path_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint"):
        training.find_checkpoint(tmp_path, str(tmp_path / "checkpoint-7"))
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        training.find_checkpoint(tmp_path, str(_fake_checkpoint(tmp_path, 3, complete=False)))


@dataclass
class _Cfg:
    lr: float = 0.1
    output: str | None = None
    resume: str = "auto"


def test_rerun_reuses_the_unfinished_run_folder_with_the_same_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, reused = training.resolve_run_dir("train-sft", _Cfg(), None, "auto")
    assert not reused and run.parent.name == "runs" and run.name.startswith("train-sft-")
    training.save_config(_Cfg(), run)
    assert training.resolve_run_dir("train-sft", _Cfg(), None, "auto") == (run, True)
    other, reused = training.resolve_run_dir("train-sft", _Cfg(lr=0.2), None, "auto")  # different config: new folder
    assert other != run and not reused
    fresh, _ = training.resolve_run_dir("train-sft", _Cfg(), None, "never")
    assert fresh not in (run, other)
    training.write_summary(run, {"finished": True})
    assert training.resolve_run_dir("train-sft", _Cfg(), None, "auto") == (run, True)  # the stage reports it finished


def test_precision_can_be_forced_and_stop_reasons_read_well():
    assert training.choose_precision("fp32", "cpu").bf16 is False
    assert training.choose_precision("bf16", "cpu").bf16 is True
    assert training.stop_reason(interrupted="SIGTERM", early_stopping=None, global_step=3, max_steps=10, patience=3) == "interrupted (SIGTERM)"
    assert training.stop_reason(interrupted=None, early_stopping=None, global_step=10, max_steps=10, patience=3) == "max_steps reached"


def test_eval_and_save_steps_must_line_up_for_best_checkpoint_restore():
    with pytest.raises(ConfigError, match="multiple of eval_steps"):
        training.check_eval_save_steps(True, 4, 6)
    training.check_eval_save_steps(False, 4, 6)
