"""`trajtune advise` through the real CLI: the design's thresholds, review states counted, bad records not counted."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_{name}", TESTS / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sft_records, dpo_pairs = _load("sft_records"), _load("dpo_pairs")


def advise(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", "advise", *map(str, args)], capture_output=True,
                          text=True, env={**__import__("os").environ, "COLUMNS": "200"})


def advice(*files) -> dict:
    res = advise(*files, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("sft, pairs, method", [(49, 0, "generate"), (50, 0, "sft"), (50, 19, "sft"), (0, 20, "dpo"),
                                                (50, 20, "sft+dpo")])
def test_the_thresholds_are_the_designs(tmp_path, sft, pairs, method):
    files = [sft_records.write(tmp_path / "sft.jsonl", sft)] if sft else []
    if pairs:
        files.append(dpo_pairs.write_pairs(tmp_path / "pairs.jsonl", pairs))
    got = advice(*files)
    assert got["method"] == method and got["sft"]["approved"] == sft and got["preference"]["approved"] == pairs
    if method == "generate":  # how many more, and the command that makes them
        assert got["commands"] == ["trajtune generate trajectories --count 1 -o data/more_sft.jsonl && "
                                   "trajtune review data/more_sft.jsonl"]
    if method == "sft+dpo":
        assert got["commands"][1] == f"trajtune train-dpo {tmp_path / 'pairs.jsonl'} --adapter runs/sft/final -o runs/dpo"
    if pairs and pairs < 20:
        assert any("1 more" in n and "generate preferences --count 1" in n for n in got["notes"])


def test_pending_rejected_and_invalid_records_do_not_count(tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft_records.write(sft, 45)
    with sft.open("a") as fh:
        for i in range(3):
            fh.write(json.dumps(sft_records.trajectory(100 + i, review="pending")) + "\n")
        fh.write(json.dumps(sft_records.trajectory(200, review="rejected")) + "\n")
        fh.write(json.dumps(sft_records.trajectory(201, review="approved")) + "\n")
        fh.write('{"id": "broken", "messages": [{"role": "user"}]}\n')  # fails the record check
        fh.write("not json at all\n")
    got = advice(sft)
    assert got["sft"] == {"records": 51, "approved": 46, "pending": 3, "rejected": 1, "invalid": 1}
    assert got["files"][0]["kinds"]["unknown"] == {"records": 1, "approved": 0, "pending": 0, "rejected": 0, "invalid": 1}
    assert got["method"] == "generate" and "--count 4" in got["commands"][0]
    assert any(f"trajtune review {sft}" in n for n in got["notes"])  # they count once approved (46 + 3 < 50: not enough)
    res = advise(sft)  # the human report: the table on stderr, the method and commands in words
    assert res.returncode == 0 and res.stdout == ""
    assert "method: generate" in res.stderr and "trajtune generate trajectories --count 4 -o data/more_sft.jsonl" in res.stderr
    assert "DPO needs at least 20 (the design's threshold), 20 more" in " ".join(res.stderr.split())


def test_when_approving_the_pending_records_is_enough_advise_says_review_first(tmp_path):
    sft = sft_records.write(tmp_path / "sft.jsonl", 60, review="pending")
    got = advice(sft)
    assert got["method"] == "generate" and got["reason"] == ("0 approved sft records and 0 approved pairs, but 60 records are pending review: "
                                                    "approved, they would support sft") and not got["notes"]
    assert got["commands"] == [f"trajtune review {sft}", f"trajtune advise {sft}"]


def test_errors_are_one_line_with_exit_2(tmp_path):
    res = advise(tmp_path / "missing.jsonl")
    assert res.returncode == 2 and res.stderr.startswith("Error:") and res.stderr.count("\n") == 1
    res = advise()
    assert res.returncode == 2 and "no data files given" in res.stderr
