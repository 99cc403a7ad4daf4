"""scripts/stage.py: how `make demo` times each stage, records its peak memory and names a failure."""
import subprocess
import sys

from trajtune.scripts import stage


def test_a_stage_is_timed_with_its_peak_memory_and_the_report_keeps_the_latest_run(tmp_path, capsys):
    times = tmp_path / "demo" / "stage_times.tsv"
    # a child that holds ~60 MB: its peak RSS must show up in the row (the largest process of the stage)
    grow = f"{sys.executable} -c 'b = bytearray(60 * 2**20); b[::4096] = b\"x\" * len(b[::4096])'"
    for name, command in (("grow", grow), ("quick", "true"), ("quick", "sleep 1.1")):
        res = subprocess.run([sys.executable, "-m", "trajtune.scripts.stage", str(times), name, command],
                             capture_output=True, text=True)
        assert res.returncode == 0 and f">>> {name}" in res.stdout
    rows = [line.split("\t") for line in times.read_text().splitlines()]
    assert [r[0] for r in rows] == ["grow", "quick", "quick"]
    assert int(rows[0][2]) >= 60 > int(rows[1][2])  # each stage's own peak, not the largest so far
    assert int(rows[2][1]) >= 1
    capsys.readouterr()
    assert stage.report(str(times)) == 0
    out = capsys.readouterr().out
    assert out.count("quick") == 1 and "total" in out


def test_a_failing_stage_is_named_exits_1_and_records_nothing(tmp_path):
    times = tmp_path / "stage_times.tsv"
    res = subprocess.run([sys.executable, "-m", "trajtune.scripts.stage", str(times), "train-sft", "exit 3"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert "stage train-sft failed (exit 3)" in res.stderr and "re-run make demo" in res.stderr
    assert not times.exists()
    usage = subprocess.run([sys.executable, "-m", "trajtune.scripts.stage", str(times)], capture_output=True, text=True)
    assert usage.returncode == 2
