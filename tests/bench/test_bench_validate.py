"""bench/bench_validate.py keeps working: it prints the three rates and the two target ratios."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_rates_and_ratios(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_validate.py"), "--records", "300",
                          "--naive-records", "50", "--rounds", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("validate (1 worker)", "validate (--workers 2)", "naive jsonschema loop (50)", "parse floor (orjson.loads)"):
        assert re.search(re.escape(name) + r"\s+[\d,]+ records/s .* peak RSS \d+ MB", out), out
    assert re.search(r"validate / naive\s+= [\d.]+x  \(target >= 4x\)", out)
    assert re.search(r"validate / parse floor = [\d.]+x  \(target >= 0.6x, one core\)", out)
