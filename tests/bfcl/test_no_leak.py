"""BFCL is evaluation data only: the synthetic generator must earn its BFCL score by generalising.

Checks, on BFCL's own files (from the cached ``bfcl-eval`` wheel):

* no BFCL question appears among generated training requests (``trajtune validate --against`` on
  the BFCL task files, the same leakage check the demo runs on its own eval tasks);
* how many BFCL function names also occur among every tool the synthesiser can make (all seeds'
  vocabulary is the same: seed 0's full pool). The vocabulary was written without BFCL; the names
  that coincide are the obvious snake_case names of textbook computations (``calculate_density``,
  ``calculate_compound_interest``, ...). The count is printed (``-s``), reported in the README, and
  bounded at 2% of the synthetic names (a vocabulary copied from BFCL would share hundreds).
"""
from __future__ import annotations

import json

import pytest

from tests.helpers.cli import run as cli

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")


def _bfcl_functions() -> tuple[set[str], list[str]]:
    from trajtune.bfcl import category_files
    from trajtune.errors import TrajtuneError

    names, questions = set(), []
    try:
        for c in CATEGORIES:
            lines, _ = category_files(c)
            for line in lines:
                row = json.loads(line)
                names |= {f["name"] for f in row["function"]}
                questions += [m["content"] for turn in row["question"] for m in turn if m.get("role") == "user"]
    except TrajtuneError as exc:
        pytest.skip(f"bfcl-eval wheel unavailable: {exc}")
    return names, questions


def test_synthetic_tool_names_barely_meet_bfcl_function_names():
    from trajtune.generators.synth import synthesize

    bfcl, _ = _bfcl_functions()
    ours = {t["function"]["name"] for t in synthesize(None, 0)}
    shared = sorted(ours & bfcl)
    print(f"\nBFCL function names (5 categories): {len(bfcl)}; synthetic tool names: {len(ours)}; shared: "
          f"{len(shared)} {shared}")
    assert len(shared) <= 0.02 * len(ours), shared


def test_generated_training_data_holds_no_bfcl_question(tmp_path):
    _, questions = _bfcl_functions()
    tools = tmp_path / "tools.json"
    train = tmp_path / "train.jsonl"
    assert cli("generate", "tools", "--synthesize", "1000", "-o", str(tools)).exit_code == 0
    r = cli("generate", "trajectories", "--catalog", "data/tools", "--catalog", str(tools), "-n", "3000",
            "-o", str(train))
    assert r.exit_code == 0, r.output
    for c in CATEGORIES:
        tasks = tmp_path / f"{c}.jsonl"
        assert cli("convert", "--from", "bfcl", "--to", "task", c, "-o", str(tasks)).exit_code == 0
        r = cli("validate", str(train), "--against", str(tasks))
        assert r.exit_code == 0, r.output
    ours = {json.loads(line)["messages"][1 if json.loads(line)["messages"][0]["role"] == "system" else 0]["content"].lower()
            for line in train.read_text().splitlines()}
    assert not ours & {q.lower() for q in questions}
