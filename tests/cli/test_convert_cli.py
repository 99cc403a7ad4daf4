"""`trajtune convert` as a user runs it: exit codes, summaries, rejects, pipes, re-runs."""
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson

from trajtune.cli.app import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"
TT = [sys.executable, "-m", "trajtune.cli.app"]


def cli(capsys, monkeypatch, *args, stdin: bytes | None = None):
    monkeypatch.setattr(sys, "argv", ["trajtune", "convert", *map(str, args)])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_shows_an_example():
    res = subprocess.run(TT + ["convert", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "Example: trajtune convert --from sharegpt" in res.stdout and "--quality-threshold" in res.stdout


def test_convert_prints_counts_and_writes_rejects_beside_the_output(capsys, monkeypatch, tmp_path):
    out = tmp_path / "sft.jsonl"
    code, stdout, err = cli(capsys, monkeypatch, FIXTURES / "tool_logs.jsonl", "-o", out)
    assert code == 0
    assert "2 records (tool-logs -> sft)" in err
    assert "5 rejected" in err and "tool_sequence cannot be empty" in err
    assert "3 skipped" in err and "success_label false" in err
    rejects = [orjson.loads(x) for x in (tmp_path / "sft.rejects.jsonl").read_bytes().splitlines()]
    assert rejects[0]["line"] == 3 and rejects[0]["reason"] == "task_description too short or empty"
    assert rejects[0]["source"].endswith("tool_logs.jsonl")


def test_json_summary_on_stdout(capsys, monkeypatch, tmp_path):
    code, stdout, _ = cli(capsys, monkeypatch, "--json", "--to", "preference", FIXTURES / "interactions.jsonl", "-o", tmp_path / "p.jsonl")
    assert code == 0
    s = orjson.loads(stdout)
    assert s["converted"] == 1 and s["from"] == "interactions" and s["rejected"]["answer empty"] == 1


def test_rerun_gives_byte_identical_output(capsys, monkeypatch, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert cli(capsys, monkeypatch, FIXTURES / "sharegpt.json", "-o", a)[0] == 0
    first = a.read_bytes()
    assert cli(capsys, monkeypatch, "--force", FIXTURES / "sharegpt.json", "-o", a)[0] == 0
    assert cli(capsys, monkeypatch, FIXTURES / "sharegpt.json", "-o", b)[0] == 0
    assert a.read_bytes() == first == b.read_bytes()
    assert (tmp_path / "a.rejects.jsonl").read_bytes() == (tmp_path / "b.rejects.jsonl").read_bytes()


def test_an_up_to_date_output_is_skipped_and_its_saved_config_repeats_the_run(capsys, monkeypatch, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes((FIXTURES / "tool_logs.jsonl").read_bytes())
    assert cli(capsys, monkeypatch, "--quality-threshold", "0.4", inp, "-o", out)[0] == 0
    saved = tmp_path / "kept.yaml"
    saved.write_text((tmp_path / "out.convert.yaml").read_text())
    assert "quality_threshold: 0.4" in saved.read_text()
    code, stdout, err = cli(capsys, monkeypatch, "--json", "--quality-threshold", "0.4", inp, "-o", out)
    assert code == 0 and "is up to date (3 records)" in err and orjson.loads(stdout)["up_to_date"] is True
    code, _, err = cli(capsys, monkeypatch, inp, "-o", out)  # another config: converts again
    assert code == 0 and "2 records" in err
    code, _, err = cli(capsys, monkeypatch, "--config", saved, inp, "-o", out)
    assert code == 0 and "3 records" in err
    inp.write_bytes(inp.read_bytes() + b"\n")  # input changed: converts again
    code, _, err = cli(capsys, monkeypatch, "--config", saved, inp, "-o", out)
    assert code == 0 and "3 records (tool-logs -> sft)" in err


def test_nothing_converted_exits_1_and_says_why(capsys, monkeypatch, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": ""}\n')
    code, _, err = cli(capsys, monkeypatch, "--from", "alpaca", bad, "-o", tmp_path / "o.jsonl")
    assert code == 1
    assert "Error: nothing converted" in err and "output empty" in err


def test_a_file_of_no_json_at_all_is_rejected_line_by_line_and_exits_1(capsys, monkeypatch, tmp_path):
    bad = tmp_path / "repr.jsonl"
    bad.write_text("{'messages': []}\n{'messages': []}\n")
    code, _, err = cli(capsys, monkeypatch, bad, "-o", tmp_path / "o.jsonl")
    assert code == 1 and "2 rejected" in err and "not valid JSON" in err
    assert len((tmp_path / "o.rejects.jsonl").read_bytes().splitlines()) == 2


def test_usage_errors_exit_2(capsys, monkeypatch, tmp_path):
    code, _, err = cli(capsys, monkeypatch, "--from", "sharegtp", FIXTURES / "sharegpt.json", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "unknown format 'sharegtp'" in err and "did you mean 'sharegpt'" in err
    code, _, err = cli(capsys, monkeypatch, "--from", "alpaca", "--to", "preference", FIXTURES / "alpaca.json", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "--from alpaca gives sft records, not preference" in err
    code, _, err = cli(capsys, monkeypatch, "--to", "parquet", FIXTURES / "alpaca.json", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "--to must be a kind" in err
    code, _, err = cli(capsys, monkeypatch, tmp_path / "missing.json", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "no such file" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_failed_run_leaves_the_previous_output_untouched(capsys, monkeypatch, tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    code, _, _ = cli(capsys, monkeypatch, "--from", "alpaca", "--to", "group", FIXTURES / "alpaca.json", "-o", out)
    assert code == 2 and out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


def test_config_file_with_flag_override(capsys, monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("quality_threshold: 0.4\nmax_tool_calls: 6\n")
    code, _, err = cli(capsys, monkeypatch, "--config", cfg, "--max-tool-calls", "5", FIXTURES / "tool_logs.jsonl", "-o", tmp_path / "o.jsonl")
    assert code == 0 and "3 records" in err
    cfg.write_text("quality_treshold: 0.4\n")
    code, _, err = cli(capsys, monkeypatch, "--config", cfg, FIXTURES / "tool_logs.jsonl", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "did you mean 'quality_threshold'" in err


def test_pipes_stdin_to_stdout_and_into_validate(tmp_path):
    data = (FIXTURES / "alpaca.json").read_bytes()
    conv = subprocess.run(TT + ["convert", "--from", "alpaca", "--to", "sft", "-", "-o", "-"], input=data, capture_output=True)
    assert conv.returncode == 0
    assert b"3 rejected" in conv.stderr and b"pass --rejects FILE" in conv.stderr
    assert len(conv.stdout.splitlines()) == 3
    val = subprocess.run(TT + ["validate", "-"], input=conv.stdout, capture_output=True)
    assert val.returncode == 0, val.stdout + val.stderr


def test_every_fixture_conversion_passes_validate(tmp_path):
    from trajtune.schemas.validate import require_valid

    cases = [("alpaca.json", "sft"), ("sharegpt.json", "sft"), ("sharegpt_dpo.json", "preference"), ("openai.jsonl", "sft"),
             ("hermes.jsonl", "sft"), ("tool_logs.jsonl", "sft"), ("interactions.jsonl", "sft"),
             ("interactions.jsonl", "preference"), ("interactions.jsonl", "group"), ("critiques.jsonl", "preference"),
             ("traces.jsonl", "sft"), ("traces.jsonl", "preference")]
    from trajtune import config
    from trajtune.scripts import convert

    for name, kind in cases:
        out = tmp_path / f"{name}.{kind}.jsonl"
        s = convert.run(config.build(convert.Config, None, {"input": str(FIXTURES / name), "output": str(out), "to": kind}))
        assert s["converted"] > 0
        assert len(require_valid(str(out), kind)) == s["converted"], name


def help_flags(text: str) -> set[str]:
    """Every flag named anywhere in a --help page (the options table, the description, the example)."""
    import re

    return set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", text))


def config_flags(cls) -> set[str]:
    """The flags the generated command must have: one per config field, plus the shared ones."""
    from trajtune.cli.command import COMMON, flag_names, options

    flags = {"-h", *COMMON}
    for f, shape, _ in options(cls):
        if f.metadata.get("positional"):
            continue
        flags |= set(flag_names(f))
        if shape == "bool":
            flags.add("--no-" + f.name.replace("_", "-"))
    return flags


def test_help_lists_exactly_the_config_fields():
    from trajtune.scripts.convert import Config

    res = subprocess.run(TT + ["convert", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"})
    assert res.returncode == 0
    assert help_flags(res.stdout) == config_flags(Config)
    assert {"--from", "-o", "--min-tool-calls", "--max-tool-calls", "--force"} <= help_flags(res.stdout)
    assert "--max-length" not in help_flags(res.stdout) and "--report" not in help_flags(res.stdout)
    assert "IN" in res.stdout


def test_runs_as_a_script(tmp_path):
    out = tmp_path / "o.jsonl"
    res = subprocess.run([sys.executable, "-m", "trajtune.scripts.convert", str(FIXTURES / "alpaca.json"), "-o", str(out),
                          "--from", "alpaca", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    assert s["converted"] == len(out.read_bytes().splitlines()) > 0 and s["exit_code"] == 0
    res = subprocess.run([sys.executable, "-m", "trajtune.scripts.convert", str(FIXTURES / "alpaca.json")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no output given: -o OUT" in res.stderr


def test_force_is_not_part_of_the_saved_config(capsys, monkeypatch, tmp_path):
    out = tmp_path / "o.jsonl"
    assert cli(capsys, monkeypatch, "--force", FIXTURES / "sharegpt.json", "-o", out)[0] == 0
    import yaml

    saved = yaml.safe_load((tmp_path / "o.convert.yaml").read_text())
    assert "force" not in saved and saved["input"] == str(FIXTURES / "sharegpt.json") and saved["output"] == str(out)
    code, _, err = cli(capsys, monkeypatch, FIXTURES / "sharegpt.json", "-o", out)
    assert code == 0 and "is up to date" in err


# --------------------------------------------------------------------------- Parquet and datasets folders

def _parquet_of(tmp_path, name="sft.parquet"):
    out = tmp_path / name
    res = subprocess.run(TT + ["convert", str(FIXTURES / "trl_prompt_completion.jsonl"), "-o", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "3 records (trl -> sft) written to" in res.stderr and "(parquet)" in res.stderr
    return out


def test_parquet_through_stdin_and_stdout(tmp_path):
    src = _parquet_of(tmp_path)
    to_parquet = subprocess.run(TT + ["convert", "-", "-o", "-", "--container", "parquet"], input=src.read_bytes(),
                                capture_output=True)
    assert to_parquet.returncode == 0 and to_parquet.stdout.startswith(b"PAR1")
    to_jsonl = subprocess.run(TT + ["convert", "-", "-o", "-"], input=to_parquet.stdout, capture_output=True)
    assert to_jsonl.returncode == 0
    direct = subprocess.run(TT + ["convert", str(src), "-o", "-"], capture_output=True)
    assert to_jsonl.stdout == direct.stdout and len(direct.stdout.splitlines()) == 3


def test_a_datasets_folder_in_and_out_and_its_rejects_name_rows(capsys, monkeypatch, tmp_path):
    folder = tmp_path / "ds"
    code, _, err = cli(capsys, monkeypatch, FIXTURES / "trl_unpaired.jsonl", "--to", "labelled", "--container", "dataset",
                       "-o", folder)
    assert code == 0 and "7 records (trl -> labelled)" in err and (folder / "state.json").is_file()
    import datasets

    ds = datasets.load_from_disk(str(folder))
    assert len(ds) == 7 and ds[0]["label"] is True and ds[0]["completion"][0]["content"] == "It is blue."
    # labelled records are TRL unpaired rows with an id: --from trl pairs them
    code, _, err = cli(capsys, monkeypatch, "--from", "trl", folder, "--to", "preference", "-o", tmp_path / "pairs.jsonl")
    assert code == 0 and "2 records (trl -> preference)" in err
    rejects = [orjson.loads(x) for x in (tmp_path / "pairs.rejects.jsonl").read_bytes().splitlines()]
    assert {r["row"] for r in rejects} == {4, 5, 6} and all("line" not in r for r in rejects)
    code, _, err = cli(capsys, monkeypatch, "--from", "trl", folder, "--to", "preference", "-o", tmp_path / "pairs.jsonl")
    assert code == 0 and "is up to date" in err


def test_container_usage_and_data_errors(capsys, monkeypatch, tmp_path):
    code, _, err = cli(capsys, monkeypatch, FIXTURES / "alpaca.json", "--container", "dataset", "-o", "-")
    assert code == 2 and "--container dataset writes a folder; it cannot go to stdout" in err
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\0" * 64)
    code, _, err = cli(capsys, monkeypatch, bad, "-o", tmp_path / "o.jsonl")
    assert code == 1 and f"Error: {bad}: not a readable Parquet file" in err and "Traceback" not in err
    import datasets

    dd = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": "a"}]),
                          "test": datasets.Dataset.from_list([{"text": "b"}])}).save_to_disk(str(dd))
    code, _, err = cli(capsys, monkeypatch, dd, "-o", tmp_path / "o.jsonl")
    assert code == 2 and "holds several splits (train, test)" in err and f"{dd / 'train'}" in err
    code, _, err = cli(capsys, monkeypatch, FIXTURES / "ambiguous_task_prompt_completion.jsonl", "-o", tmp_path / "o.jsonl")
    assert code == 2 and "ambiguous (cold-start or trl)" in err and "pass --from cold-start or --from trl" in err
    assert not (tmp_path / "o.jsonl").exists()
