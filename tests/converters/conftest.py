"""Helpers for converter tests: run the convert stage on a fixture and read back what it wrote."""
from pathlib import Path

import orjson
import pytest

from trajtune import config
from trajtune.converters.convert import run_convert
from trajtune.scripts.convert import Config
from trajtune.records import validator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "convert"


def read(path):
    p = Path(path)
    return [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()] if p.exists() else []


@pytest.fixture
def convert(tmp_path):
    """convert(fixture, **options) -> (summary, records, rejects); every record is schema-checked."""

    def run(fixture, **options):
        out = tmp_path / f"{Path(fixture).stem}-{len(list(tmp_path.iterdir()))}.jsonl"
        cfg = config.build(Config, None, {"input": str(FIXTURES / fixture), "output": str(out), **options})
        summary = run_convert(cfg)
        recs = read(out)
        if cfg.to in ("sft", "preference", "group", "triplet"):
            for r in recs:
                validator(cfg.to)(r)
        return summary, recs, read(summary["rejects"])

    return run
