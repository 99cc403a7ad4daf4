"""`trajtune generate`: the CLI surface, exit codes, summaries, and surviving a SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import click
from click.testing import CliRunner

from trajtune.cli.app import main

runner = CliRunner()


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def app(args):
    """The real entry point (errors -> 'Error: ...' + exit code), run inside CliRunner."""
    sys.argv = ["trajtune", *args]
    main()


def _lines(p):
    return p.read_bytes().splitlines(keepends=True)


def test_trajectories_json_summary_and_resolved_config(tmp_path):
    out = tmp_path / "train.jsonl"
    res = runner.invoke(app, ["generate", "trajectories", "--count", "12", "--seed", "3", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert (s["written"], s["total"], s["dropped_near_duplicates"]) == (12, 12, s["dropped_near_duplicates"])
    assert sum(s["by_category"].values()) == 12 and sum(s["by_difficulty"].values()) == 12
    assert len(_lines(out)) == 12
    cfg = (tmp_path / "train.config.yaml").read_text()
    assert "count: 12" in cfg and "seed: 3" in cfg
    res = runner.invoke(app, ["generate", "trajectories", "--config", str(tmp_path / "train.config.yaml"), str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["written"] == 0  # same config: nothing missing


def test_summary_table_lists_failure_types(tmp_path):
    res = runner.invoke(app, ["generate", "preferences", "-n", "20", "--mix", "chatter=1,wrong_tool=0",
                              str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert "failure type" in res.output and "chatter" in res.output and "wrong_tool:" not in res.output


def test_tasks_split_reasons_in_summary(tmp_path):
    res = runner.invoke(app, ["generate", "tasks", "-n", "40", str(tmp_path / "e.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["by_split_reason"]) <= {"held_out_phrasing", "held_out_template", "no_call"}


def test_usage_errors_exit_2_with_the_fix(tmp_path):
    res = runner.invoke(app, ["generate", "trajectories", "-c", "cooking", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "preferences", "--mix", "bogus=1", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "tasks", "--base-url", "http://127.0.0.1:1/v1", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "tasks", "--backend", "nope", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    assert not (tmp_path / "x.jsonl").exists()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", *args], capture_output=True, text=True, **kw)


def test_messages_through_the_real_entry_point(tmp_path):
    p = _cli("generate", "preferences", "--mix", "bogus=1", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2
    assert p.stderr.startswith("Error: --mix: bad entry 'bogus=1' (use TYPE=WEIGHT with TYPE in wrong_tool,")
    assert "Traceback" not in p.stderr
    p = _cli("generate", "trajectories", "-c", "cooking", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2 and "Error: unknown category 'cooking' (choose from coding, debugging" in p.stderr


def test_tools_check_ok_and_broken_catalog(tmp_path):
    res = runner.invoke(app, ["generate", "tools", "--check"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("OK: 22 tools")
    bad = tmp_path / "tools.yaml"
    bad.write_text("- name: x\n  category: data\n  description: d\n  parameters: {type: array}\n  simulate: {result: ok}\n")
    p = _cli("generate", "tools", "--check", "--catalog", str(bad))
    assert p.returncode == 1
    assert f"Error: {bad}:1: tool 'x': `parameters` must be a JSON Schema with type: object" in p.stderr
    res = runner.invoke(app, ["generate", "tools", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["tools"]) == 22


def test_sigkill_leaves_whole_lines_and_a_rerun_completes_exactly(tmp_path):
    out, ref = tmp_path / "t.jsonl", tmp_path / "ref.jsonl"
    args = [sys.executable, "-m", "trajtune.cli.app", "generate", "trajectories", "-n", "400", "--seed", "5"]
    proc = subprocess.Popen(args + [str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _lines(out)
    assert 0 < len(partial) < 400, "the run should have been killed mid-way"
    p = _cli("generate", "trajectories", "-n", "400", "--seed", "5", str(out), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["existing"] in (len(partial), len(partial) - 1)  # a torn last line is dropped, never kept
    assert s["total"] == 400
    rows = [json.loads(x) for x in _lines(out)]
    assert len({r["id"] for r in rows}) == 400
    assert _cli("generate", "trajectories", "-n", "400", "--seed", "5", str(ref)).returncode == 0
    assert out.read_bytes() == ref.read_bytes()  # identical to an uninterrupted run
