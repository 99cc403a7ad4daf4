"""Hostile inputs: split, and YAML configs every command reads.

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

BOMB = "".join([f"{k}: &{k} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, k in zip("abcdefgh", "bcdefghi")])


BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB + "max_records: *i\n"


def test_split_into_the_folder_of_its_input_named_like_a_split_is_refused(tt, tmp_path):
    out = tmp_path / "splits"
    out.mkdir()
    inp = out / "train.jsonl"
    inp.write_bytes((VALID / "sft.jsonl").read_bytes())
    before = digest(inp)
    r = tt("split", inp, "-o", out)
    assert r.code == 2 and "is the input IN" in r.err
    assert digest(inp) == before


def test_a_yaml_alias_bomb_in_config_is_refused_in_bounded_memory(tt, tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(BOMB)
    r = tt("convert", "--config", cfg, alpaca(tmp_path / "a.jsonl"), "-o", tmp_path / "o.jsonl", timeout=60)
    assert r.code == 2 and f"Error: {cfg}" in r.err and "expands (through aliases)" in r.err
    assert len(r.err) < 2000
    # peak memory of that one command: measured from a fresh parent whose only child it is
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    peak_kb = int(subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "trajtune.cli.app", "convert",
                                  "--config", str(cfg), str(tmp_path / "a.jsonl"), "-o", str(tmp_path / "o2.jsonl")],
                                 capture_output=True, text=True, timeout=60).stdout)
    assert peak_kb < 300 * 1024  # tens of MB, not the gigabytes of the expanded document


def test_a_deeply_nested_yaml_config_is_a_clear_error(tt, tmp_path):
    cfg = tmp_path / "deep.yaml"
    cfg.write_text("seed: " + "[" * 20000 + "]" * 20000 + "\n")
    r = tt("split", "--config", cfg, VALID / "sft.jsonl", "-o", tmp_path / "s")
    assert r.code == 2 and "nested deeper than" in r.err and f"{cfg}:1:" in r.err


def test_a_split_output_that_is_a_file_or_under_one_is_a_usage_error(tt, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for target in (plain, plain / "out"):
        r = tt("split", VALID / "sft.jsonl", "-o", target)
        assert r.code == 2 and r.err.startswith("Error:") and "is a file" in r.err, r.err
    assert plain.read_text() == "x"


def test_a_non_utf8_config_is_a_clear_error(tt, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"seed: 3\n# caf\xe9\n")
    r = tt("split", "--config", bad, VALID / "sft.jsonl", "-o", tmp_path / "s")
    assert r.code == 2 and f"{bad}:2: not UTF-8 text" in r.err


def test_a_bad_set_value_is_a_usage_error(tt, tmp_path):
    r = tt("split", VALID / "sft.jsonl", "-o", tmp_path / "s", "--set", "seed=[unclosed")
    assert r.code == 2 and "Error: --set seed" in r.err and "invalid YAML" in r.err
