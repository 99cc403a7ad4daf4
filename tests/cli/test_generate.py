"""`trajtune generate`: the CLI surface, exit codes, summaries, and surviving a SIGKILL."""
import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import click
import pytest
import typer
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
    res = runner.invoke(app, ["generate", "trajectories", "--count", "12", "--seed", "3", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert (s["written"], s["total"], s["dropped_near_duplicates"]) == (12, 12, s["dropped_near_duplicates"])
    assert sum(s["by_category"].values()) == 12 and sum(s["by_difficulty"].values()) == 12
    assert len(_lines(out)) == 12
    cfg = (tmp_path / "train.config.yaml").read_text()
    assert "count: 12" in cfg and "seed: 3" in cfg and f"output: {out}" in cfg
    res = runner.invoke(app, ["generate", "trajectories", "--config", str(tmp_path / "train.config.yaml"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["written"] == 0  # same config: nothing missing


def test_summary_table_lists_failure_types(tmp_path):
    res = runner.invoke(app, ["generate", "preferences", "-n", "20", "--mix", "chatter=1,wrong_tool=0",
                              "-o", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert "failure type" in res.output and "chatter" in res.output and "wrong_tool:" not in res.output


def test_tasks_split_reasons_in_summary(tmp_path):
    res = runner.invoke(app, ["generate", "tasks", "-n", "40", "-o", str(tmp_path / "e.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)["by_split_reason"]) <= {"held_out_phrasing", "held_out_template", "no_call"}


def test_usage_errors_exit_2_with_the_fix(tmp_path):
    res = runner.invoke(app, ["generate", "trajectories", "-c", "cooking", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "preferences", "--mix", "bogus=1", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "tasks", "--base-url", "http://127.0.0.1:1/v1", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["generate", "tasks", "--backend", "nope", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2
    assert not (tmp_path / "x.jsonl").exists()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "trajtune.cli.app", *args], capture_output=True, text=True, **kw)


def test_messages_through_the_real_entry_point(tmp_path):
    p = _cli("generate", "preferences", "--mix", "bogus=1", "-o", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2
    assert p.stderr.startswith("Error: --mix: bad entry 'bogus=1' (use TYPE=WEIGHT with TYPE in wrong_tool,")
    assert "Traceback" not in p.stderr
    p = _cli("generate", "trajectories", "-c", "cooking", "-o", str(tmp_path / "x.jsonl"))
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
    proc = subprocess.Popen(args + ["-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _lines(out)
    assert 0 < len(partial) < 400, "the run should have been killed mid-way"
    p = _cli("generate", "trajectories", "-n", "400", "--seed", "5", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["existing"] in (len(partial), len(partial) - 1)  # a torn last line is dropped, never kept
    assert s["total"] == 400
    rows = [json.loads(x) for x in _lines(out)]
    assert len({r["id"] for r in rows}) == 400
    assert _cli("generate", "trajectories", "-n", "400", "--seed", "5", "-o", str(ref)).returncode == 0
    assert out.read_bytes() == ref.read_bytes()  # identical to an uninterrupted run


# ------------------------------------------------------------------- the same data, the same surface

# sha256 of the template generator's data for the shipped catalog alone (data/tools +
# data/templates; 400 trajectories with no-call share 0.2, 40 pairs, 80 tasks, seed 0; train and
# prefs after `review --approve-all`): the sizes the demo used before it added synthetic tools
# (configs/demo.mk now mixes both). Recorded before generate moved onto the stage shape (the old
# positional-OUT command line gave these exact bytes): a change here changes every template record
# the demo trains on. If the catalog or the templates are edited on purpose, record the new digests.
DEMO_DIGESTS = {
    "train_all.jsonl": "2bd42e41d23fab5a7119449b320dec56faf2aa77502cb4e6e189178cfe3967f3",
    "prefs.jsonl": "24460f8012e0a2351f9ff799aa5d74293deea6e71650e60d323e515b5b0830df",  # 2026-12-06: extra_argument / extra_call failures
    "tasks.jsonl": "b290661ce0baadd2bbc9c203f9a2f5fc4e96472ad95f2ad4bfcff00b3230c9c6",
}


def test_the_demo_data_is_byte_identical_for_the_same_seed_and_options(tmp_path):
    d = tmp_path
    steps = [
        ["generate", "trajectories", "--count", "400", "--no-call-share", "0.2", "--seed", "0", "-o", str(d / "train_all.jsonl")],
        ["review", str(d / "train_all.jsonl"), "--approve-all"],
        ["generate", "preferences", "--count", "40", "--seed", "0", "-o", str(d / "prefs.jsonl")],
        ["review", str(d / "prefs.jsonl"), "--approve-all"],
        ["generate", "tasks", "--split", "eval", "--count", "80", "--seed", "0", "-o", str(d / "tasks.jsonl")],
    ]
    for args in steps:
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    got = {name: hashlib.sha256((d / name).read_bytes()).hexdigest() for name in DEMO_DIGESTS}
    assert got == DEMO_DIGESTS


def _declared_flags(cls) -> set:
    """Every flag a config's fields give (bools also --no-X), plus the options every command shares."""
    from trajtune.cli.command import COMMON, flag_names, options

    out = set(COMMON) | {"-h"}
    for f, shape, _ in options(cls):
        if f.metadata.get("positional"):
            continue
        out |= set(flag_names(f))
        if shape == "bool":
            out.add("--no-" + f.name.replace("_", "-"))
    return out


def _help_flags(args: list) -> set:
    """The flags in the Options panel of `trajtune ARGS --help` (the names before the metavar)."""
    res = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    shown = set()
    for line in res.output.splitlines():
        m = re.match(r"^│ (.*)$", line)
        if not m:
            continue
        for tok in re.split(r"[\s,]+", m.group(1).strip()):
            if not tok.startswith("-"):
                break
            shown.add(tok)
    return shown


def _stages():
    from trajtune.scripts import generate

    return generate.STAGES


@pytest.mark.parametrize("stage", _stages(), ids=lambda st: st.name)
def test_help_lists_exactly_the_config_fields(stage):
    from trajtune.cli.app import app as tt

    assert _help_flags(stage.name.split()) == _declared_flags(stage.config)
    sub = typer.main.get_command(tt).commands["generate"].commands[stage.command]
    accepted = {o for p in sub.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    assert accepted | {"--help", "-h"} == _declared_flags(stage.config)  # click adds --help itself
    # and every field is a flag (no positional, no YAML-only key) except those that cannot be one
    from trajtune.cli.command import yaml_only

    assert yaml_only(stage.config) == []
    names = [f.name for f in dataclasses.fields(stage.config)]
    assert len(names) == len(set(names))


def test_backend_options_are_declared_once_and_shared_with_the_backends():
    from trajtune.generators.local import LocalConfig, LocalOptions
    from trajtune.generators.teacher import TeacherConfig, TeacherOptions
    from trajtune.scripts.generate import PreferencesConfig, TrajectoriesConfig

    def own(cls):
        return {f.name for f in dataclasses.fields(cls)}

    assert issubclass(TrajectoriesConfig, TeacherOptions) and issubclass(TeacherConfig, TeacherOptions)
    assert issubclass(PreferencesConfig, LocalOptions) and issubclass(LocalConfig, LocalOptions)
    assert own(TeacherConfig) - own(TeacherOptions) == {"seed", "system_prompt"}
    assert own(LocalConfig) - own(LocalOptions) == {"seed"}
    # the command's values reach the backend's config
    cfg = TrajectoriesConfig(output="x.jsonl", backend="openai", base_url="http://127.0.0.1:1/v1", model="m",
                             max_steps=3, concurrency=2)
    t = TeacherConfig.of(cfg)
    assert (t.base_url, t.model, t.max_steps, t.concurrency, t.system_prompt) == (
        cfg.base_url, "m", 3, 2, cfg.system_prompt)
    p = LocalConfig.of(PreferencesConfig(output="x.jsonl", backend="hf", samples=3, seed=9))
    assert (p.samples, p.seed, p.emit) == (3, 9, "preference")


def test_backend_options_without_their_backend_are_refused(tmp_path):
    res = runner.invoke(app, ["generate", "trajectories", "--model", "m", "--max-steps", "2", "-o", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 2 and "--model, --max-steps: backend options need --backend openai" in res.output
    res = runner.invoke(app, ["generate", "preferences", "-k", "3", "-o", str(tmp_path / "b.jsonl")])
    assert res.exit_code == 2 and "--samples: backend options need --backend hf" in res.output
    res = runner.invoke(app, ["generate", "preferences", "--backend", "openai", "-o", str(tmp_path / "c.jsonl")])
    assert res.exit_code == 2 and "--backend must be one of offline, hf" in res.output
    res = runner.invoke(app, ["generate", "trajectories", "--backend", "openai", "-o", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 2 and "--base-url is required with --backend openai" in res.output
    assert not any(tmp_path.iterdir())


def test_output_is_required_and_never_stdout(tmp_path):
    res = runner.invoke(app, ["generate", "tasks", "-n", "2"])
    assert res.exit_code == 2 and "no output given" in res.output and "-o data/tasks.jsonl" in res.output
    res = runner.invoke(app, ["generate", "tasks", "-n", "2", "-o", "-", "--json"])
    assert res.exit_code == 2 and "generate appends to a file (so a re-run resumes)" in res.output


def test_config_and_set_keys_and_an_old_saved_config(tmp_path):
    out = tmp_path / "p.jsonl"
    conf = tmp_path / "old.config.yaml"
    # a config saved before the output and the backend options were config keys
    conf.write_text("count: 6\nseed: 4\ncategory: [coding]\nbackend: offline\nfailure_mix:\n  chatter: 1.0\n"
                    "later_step_share: 0.3\n")
    res = runner.invoke(app, ["generate", "preferences", "--config", str(conf), "--set", "no_call_share=0", "-o", str(out),
                              "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["total"] == 6 and s["by_failure_type"] == {"chatter": 6} and s["by_category"] == {"coding": 6}
    saved = (tmp_path / "p.config.yaml").read_text()
    assert "no_call_share: 0.0" in saved and f"output: {out}" in saved and "failure_mix:" in saved


def test_no_records_is_exit_1_with_the_summary(tmp_path):
    res = runner.invoke(app, ["generate", "trajectories", "-n", "3", "--max-attempts", "0", "-o", str(tmp_path / "t.jsonl"),
                              "--json"])
    assert res.exit_code == 1
    s = json.loads(res.stdout)
    assert s["exit_code"] == 1 and s["total"] == 0
    assert "Error: no trajectories could be generated into" in res.output


def test_script_form_runs_the_same_subcommands(tmp_path):
    out = tmp_path / "e.jsonl"
    p = subprocess.run([sys.executable, "-m", "trajtune.scripts.generate", "tasks", "-n", "5", "-o", str(out), "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total"] == 5 and len(_lines(out)) == 5
    p = subprocess.run([sys.executable, "-m", "trajtune.scripts.generate", "tasks", "-n", "5"], capture_output=True, text=True)
    assert p.returncode == 2 and "Error: no output given" in p.stderr
