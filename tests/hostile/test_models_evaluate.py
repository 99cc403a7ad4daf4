"""Hostile inputs: merge-lora, evaluate and model resolution.

Each test runs the real `trajtune` command in a process under the network guard
(tests/hostile/conftest.py) and asserts the exit code, the message shape (`Error: ...`,
file:line where there is one, never a traceback), that inputs are byte-for-byte unchanged, and
bounded time.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers (pytest runs in importlib mode)
from helpers.hostile import FIX, NETGUARD, ROOT, VALID, alpaca, digest, fake_adapter, jsonl, sft_with_tool  # noqa: E402,F401

@pytest.mark.parametrize("where", ["same", "parent"])
def test_merge_lora_output_onto_or_around_the_adapter_is_refused_before_any_work(tt, tmp_path, where):
    adapter = fake_adapter(tmp_path / "runs" / "A")
    before = digest(adapter)
    out = adapter if where == "same" else adapter.parent
    r = tt("merge-lora", adapter, "--model", "default", "-o", out, "--force")
    assert r.code == 2 and "Error:" in r.err and "verified" not in r.out + r.err
    assert digest(adapter) == before
    assert r.seconds < 30


def test_evaluate_into_a_folder_holding_its_tasks_as_predictions_is_refused(tt, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    tasks = ev / "predictions.jsonl"
    tasks.write_bytes((VALID / "task.jsonl").read_bytes())
    before = digest(tasks)
    r = tt("evaluate", tasks, "--model", "default", "-o", ev)
    assert r.code == 2 and "is the input TASKS" in r.err
    assert digest(tasks) == before


def test_a_hub_id_in_offline_mode_is_refused_saying_it_needs_the_network(tt, tmp_path):
    r = tt("evaluate", VALID / "task.jsonl", "--model", "someorg/somemodel", "-o", tmp_path / "ev")
    assert r.code == 2 and "would need the network" in r.err


def test_a_model_folder_with_only_config_json_names_what_is_missing(tt, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    (m / "config.json").write_text("{}")
    r = tt("evaluate", VALID / "task.jsonl", "--model", m, "-o", tmp_path / "ev")
    assert r.code == 2 and "no weights" in r.err and "model.safetensors" in r.err


def test_a_catastrophic_task_regex_is_scored_in_bounded_time():
    from trajtune.scoring import score

    task = {"id": "t", "prompt": [{"role": "user", "content": "q"}], "tools": [],
            "expected": {"answer": "^(a+)+$", "match": "regex"}}
    t0 = time.monotonic()
    s = score(task, "a" * 5000 + "!")
    assert s.passed is False and time.monotonic() - t0 < 5


def test_merge_lora_output_that_is_a_file_fails_before_the_merge(tt, tmp_path):
    f = tmp_path / "merged"
    f.write_text("keep me")
    r = tt("merge-lora", fake_adapter(tmp_path / "A"), "--model", "default", "-o", f, "--force")
    assert r.code == 2 and "is a file, not a folder" in r.err and f.read_text() == "keep me" and r.seconds < 30


def test_an_evaluate_output_under_a_file_is_a_usage_error(tt, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for target in (plain, plain / "ev"):
        r = tt("evaluate", VALID / "task.jsonl", "--model", "default", "-o", target)
        assert r.code == 2 and r.err.startswith("Error:") and "is a file" in r.err, r.err
    assert plain.read_text() == "x"
