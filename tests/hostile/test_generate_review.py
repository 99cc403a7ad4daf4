"""Hostile inputs: generate and review.

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

def test_generate_onto_its_catalog_is_refused(tt, tmp_path):
    cat = tmp_path / "tools.yaml"
    cat.write_bytes((ROOT / "data" / "tools" / "coding.yaml").read_bytes())
    before = digest(cat)
    r = tt("generate", "trajectories", "--catalog", cat, "--count", "2", "-o", cat)
    assert r.code == 2 and "is the input --catalog" in r.err
    assert digest(cat) == before


def test_an_output_that_is_a_folder_or_under_a_file_is_a_usage_error(tt, tmp_path):
    folder, plain = tmp_path / "folder", tmp_path / "plain.txt"
    folder.mkdir()
    plain.write_text("x")
    for target in (folder, plain / "out.jsonl"):
        r = tt("generate", "tasks", "--count", "1", "-o", target)
        assert r.code == 2 and r.err.startswith("Error:") and ("is a folder" in r.err or "is a file" in r.err), r.err
    assert plain.read_text() == "x"


def test_non_utf8_catalog_and_id_files_are_clear_errors(tt, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"max_records: 3\n# caf\xe9\n")
    r = tt("generate", "tools", "--catalog", bad, "--check")
    assert r.code in (1, 2) and "not UTF-8 text" in r.err + r.out
    data = tmp_path / "d.jsonl"
    data.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(data)
    r = tt("review", data, "--approve-ids", bad)
    assert r.code == 2 and "not UTF-8 text" in r.err and digest(data) == before


def test_a_bad_set_value_is_a_usage_error(tt, tmp_path):
    r = tt("generate", "trajectories", "--set", "key=[unclosed", "--backend", "openai", "--base-url",
           "http://127.0.0.1:9/v1", "--model", "m", "-o", tmp_path / "o.jsonl")
    assert r.code == 2 and "Error: --set key" in r.err and "invalid YAML" in r.err
