"""`trajtune split` as a user runs it: the per-split table, files, exit codes."""
import subprocess
import sys

import orjson

from trajtune.cli.app import main


def cli(capsys, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["trajtune", "split", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def records(tmp_path, n=40):
    lines = []
    for i in range(n):
        tool = ["search", "search", "search", "weather"][i % 4]
        lines.append({"id": f"r{i}", "metadata": {"source": "t", "success": i % 2 == 0}, "messages": [
            {"role": "user", "content": f"task {i}"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": tool, "arguments": {}}}]},
            {"role": "tool", "content": "ok", "tool_call_id": "call_1"},
            {"role": "assistant", "content": "done"}]})
    p = tmp_path / "in.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    return p


def test_help_shows_an_example():
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "split", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "Example: trajtune split" in res.stdout


def test_split_writes_three_files_and_prints_the_table(capsys, monkeypatch, tmp_path):
    code, _, err = cli(capsys, monkeypatch, records(tmp_path), "-o", tmp_path / "out", "--ratios", "0.5,0.25,0.25",
                       "--stratify-by", "tool", "--balance", "--balance-cap", "10")
    assert code == 0
    assert "strata before" in err and "search" in err
    for col in ("count", "success rate", "avg tool-seq len", "distinct tools"):
        assert col in err
    sizes = {n: len((tmp_path / "out" / f"{n}.jsonl").read_bytes().splitlines()) for n in ("train", "val", "test")}
    assert sizes == {"train": 10, "val": 5, "test": 5}


def test_json_summary_and_bad_ratios(capsys, monkeypatch, tmp_path):
    code, out, _ = cli(capsys, monkeypatch, records(tmp_path), "-o", tmp_path / "o", "--json")
    assert code == 0 and sum(orjson.loads(out)["counts"].values()) == 40
    code, _, err = cli(capsys, monkeypatch, records(tmp_path), "-o", tmp_path / "o", "--ratios", "0.9,0.2")
    assert code == 2 and "--ratios needs three non-negative fractions" in err


def test_split_reads_stdin(tmp_path):
    data = records(tmp_path).read_bytes()
    res = subprocess.run([sys.executable, "-m", "trajtune.cli.app", "split", "-", "-o", str(tmp_path / "o"), "--seed", "1"],
                         input=data, capture_output=True)
    assert res.returncode == 0, res.stderr
    lines = sorted(x for n in ("train", "val", "test") for x in (tmp_path / "o" / f"{n}.jsonl").read_bytes().splitlines())
    assert lines == sorted(data.splitlines())


def test_out_dir_defaults_beside_the_input(capsys, monkeypatch, tmp_path):
    code, _, err = cli(capsys, monkeypatch, records(tmp_path), "--seed", "3")
    assert code == 0 and (tmp_path / "in-split" / "train.jsonl").is_file()
    code, _, err = cli(capsys, monkeypatch, "-")
    assert code == 2 and "reading stdin needs -o OUT_DIR" in err
