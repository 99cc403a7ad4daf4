"""LLaMA-Factory's real demo files (read in place from ../shared/realworld, never copied here):
every row is converted or rejected with a reason, as JSON and as Parquet alike."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trajtune import config
from trajtune.converters.convert import run_convert
from trajtune.scripts.convert import Config

REAL = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "llamafactory"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real-world samples not present at {REAL}")

# (file, --to, converted, rejected, rows each record consumed)
CASES = [
    ("kto_en_demo.json", "labelled", 300, 0, 1),
    ("kto_en_demo.json", "preference", 1, 298, 2),  # one prompt of 297 has both labels
    ("v1_sft_demo.jsonl", "sft", 449, 51, 1),        # 50 identity templates with {{name}}, 1 duplicate row
    ("v1_dpo_demo.jsonl", "preference", 10, 0, 1),
]


def _rows(path: Path) -> list:
    return json.loads(path.read_bytes()) if path.suffix == ".json" else [json.loads(x) for x in path.open()]


@pytest.mark.parametrize("container", ["json", "parquet"])
@pytest.mark.parametrize("name,to,converted,rejected,per", CASES)
def test_every_row_is_converted_or_rejected(tmp_path, name, to, converted, rejected, per, container):
    src = REAL / name
    rows = _rows(src)
    if container == "parquet":
        src = tmp_path / (src.stem + ".parquet")
        pq.write_table(pa.Table.from_pylist(rows), src)  # as `datasets` would save it: one inferred schema
    out = tmp_path / "out.jsonl"
    s = run_convert(config.build(Config, None, {"input": str(src), "output": str(out), "to": to}))
    assert (s["converted"], sum(s["rejected"].values()), s["skipped"]) == (converted, rejected, {})
    assert per * s["converted"] + sum(s["rejected"].values()) == len(rows)
    assert len(out.read_bytes().splitlines()) == converted
