"""Hostile inputs: train-sft and train-dpo.

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

def test_train_sft_run_folder_holding_its_data_is_refused(tt, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = run / "train.jsonl"
    data.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(data)
    r = tt("train-sft", data, "-o", run, "--max-steps", "1")
    assert r.code == 2 and "lies inside --output" in r.err
    assert digest(data) == before


def test_train_dpo_run_folder_holding_its_adapter_is_refused(tt, tmp_path):
    adapter = fake_adapter(tmp_path / "runs" / "sft" / "final")
    before = digest(adapter)
    r = tt("train-dpo", VALID / "preference.jsonl", "--adapter", adapter,
           "-o", tmp_path / "runs" / "sft", "--max-steps", "1")
    assert r.code == 2 and "lies inside --output" in r.err
    assert digest(adapter) == before
