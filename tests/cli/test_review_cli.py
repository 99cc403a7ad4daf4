"""`trajtune review`: interactive and bulk approval of generated records."""
import json
import sys

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


def _gen(tmp_path, n=4):
    out = tmp_path / "pairs.jsonl"
    res = runner.invoke(app, ["generate", "preferences", "-n", str(n), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out


def _states(p):
    return [json.loads(x)["metadata"]["review"] for x in p.read_text().splitlines()]


def test_interactive_review_shows_the_record_and_resumes(tmp_path):
    p = _gen(tmp_path)
    res = runner.invoke(app, ["review", str(p)], input="a\nwhat\nr\nq\n")
    assert res.exit_code == 0, res.output
    assert "CHOSEN" in res.output and "REJECTED" in res.output and "failure_type=" in res.output
    assert "unknown answer 'what'" in res.output
    assert f"{p}: 1 approved, 1 rejected, 2 pending" in res.output
    assert _states(p) == ["approved", "rejected", "pending", "pending"]
    res = runner.invoke(app, ["review", str(p), "--json"], input="s\na\n")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert (s["approved"], s["rejected"], s["pending"]) == (2, 1, 1)


def test_approve_all_then_drop_rejected(tmp_path):
    p = _gen(tmp_path, 3)
    ids = tmp_path / "bad.txt"
    ids.write_text(json.loads(p.read_text().splitlines()[0])["id"] + "\n")
    res = runner.invoke(app, ["review", str(p), "--reject-ids", str(ids)])
    assert res.exit_code == 0 and "0 approved, 1 rejected, 2 pending" in res.output
    res = runner.invoke(app, ["review", str(p), "--approve-all"])
    assert res.exit_code == 0 and f"{p}: 2 approved, 1 rejected, 0 pending" in res.output
    res = runner.invoke(app, ["review", str(p), "--drop-rejected", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["dropped"] == 1
    assert _states(p) == ["approved", "approved"]


def test_missing_ids_file_is_a_usage_error(tmp_path):
    p = _gen(tmp_path, 2)
    res = runner.invoke(app, ["review", str(p), "--approve-ids", str(tmp_path / "none.txt")])
    assert res.exit_code == 2


def test_help_lists_exactly_the_config_fields():
    import re

    from trajtune.cli.command import COMMON, flag_names, options
    from trajtune.scripts.review import Config

    want = set(COMMON) | {"-h"}
    for f, shape, _ in options(Config):
        if not f.metadata.get("positional"):
            want |= set(flag_names(f)) | ({"--no-" + f.name.replace("_", "-")} if shape == "bool" else set())
    res = runner.invoke(app, ["review", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    shown = set()
    for line in res.output.splitlines():
        m = re.match(r"^│ (.*)$", line)
        for tok in re.split(r"[\s,]+", m.group(1).strip()) if m else []:
            if not tok.startswith("-"):
                break
            shown.add(tok)
    assert shown == want
    assert "FILE" in res.output and [f.name for f, _, _ in options(Config) if f.metadata.get("positional")] == ["input"]


def test_config_file_and_script_form(tmp_path):
    import subprocess

    p = _gen(tmp_path, 2)
    conf = tmp_path / "review.yaml"
    conf.write_text(f"input: {p}\napprove_all: true\n")
    res = runner.invoke(app, ["review", "--config", str(conf), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["approved"] == 2 and _states(p) == ["approved", "approved"]
    q = subprocess.run([sys.executable, "-m", "trajtune.scripts.review", str(p), "--json"], input="", capture_output=True,
                       text=True)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["pending"] == 0
    q = subprocess.run([sys.executable, "-m", "trajtune.scripts.review", "-"], capture_output=True, text=True)
    assert q.returncode == 2 and "Error: review needs a file, not stdin" in q.stderr
