"""The split stage: records -> OUT_DIR/train.jsonl, val.jsonl, test.jsonl.

* Deterministic for a seed: groups are ordered by a hash of (seed, group key), not by file order.
* Prompt-grouped: records sharing a normalised prompt always land in the same split (also with
  ``--group-by metadata.KEY``: prompt groups and key groups are merged, so no prompt is in two
  splits either way).
* Stratified (``--stratify-by tool|metadata.KEY``): each stratum is split by the ratios on its own.
* The resolved config is saved as ``OUT_DIR/split.yaml`` (usable as ``--config``).

The command and its options: :mod:`trajtune.scripts.split`.
* ``--balance`` caps over-represented strata (tools or categories) at ``--balance-cap`` records
  (default: 1.5 x the median stratum size), dropping a seeded random sample.

Memory holds per record only its offset, group, stratum and a few statistics; records are
re-read from the file when written (stdin is spooled to a temporary file first).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
from pathlib import Path
from typing import Any, Optional

import orjson

from trajtune import config
from trajtune.converters.common import Emitter, Source
from trajtune.errors import DataError
from trajtune.jsonl import atomic_writer
from trajtune.records import called_tools, normalize_text, prompt_text

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class _Rec:
    lineno: int
    offset: int
    node: int          # union-find node of its group
    stratum: str
    success: Optional[bool]
    tools: tuple


class _Raise(Emitter):
    def reject(self, row, reason, detail="", record=None, raw=None):  # noqa: D102 - split needs valid records
        raise DataError(f"{reason}" + (f" ({detail})" if detail else ""), path=row.path if row else None,
                        line=row.lineno if row else None, hint="run `trajtune validate` on the input")


def _meta_value(obj: dict, key: str) -> Any:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return meta.get(key.split(".", 1)[1])


def _success(obj: dict) -> Optional[bool]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    for k in ("success", "success_label"):
        if isinstance(meta.get(k), bool):
            return meta[k]
    return None


def _stratum(obj: dict, by: Optional[str]) -> str:
    if by is None:
        return "all"
    if by == "tool":
        tools = called_tools(obj)
        return tools[0] if tools else "(no tool)"
    v = _meta_value(obj, by)
    return "(none)" if v is None else str(v)


def _h(*parts: Any) -> bytes:
    return hashlib.sha1(orjson.dumps(parts)).digest()[:8]


def stats(recs: list[_Rec]) -> dict:
    known = [r.success for r in recs if r.success is not None]
    return {
        "count": len(recs),
        "success_rate": round(sum(known) / len(known), 4) if known else None,
        "avg_tool_seq_len": round(sum(len(r.tools) for r in recs) / len(recs), 3) if recs else 0.0,
        "distinct_tools": len({t for r in recs for t in r.tools}),
    }


def run_split(cfg: Any, inp: str, out_dir: str) -> dict:
    """Split ``inp`` into OUT_DIR/{train,val,test}.jsonl by ``cfg`` (trajtune.scripts.split.Config)."""
    from trajtune.paths import guard

    guard({"IN": inp}, files={f"OUT_DIR/{n}.jsonl": Path(out_dir) / f"{n}.jsonl" for n in SPLITS},
          dirs={"OUT_DIR": out_dir})
    source = Source(inp, _Raise())
    try:
        # 1) one pass: group node, stratum and statistics per record
        parent: list[int] = []
        nodes: dict[bytes, int] = {}

        def node(key: bytes) -> int:
            if key not in nodes:
                nodes[key] = len(parent)
                parent.append(len(parent))
            return nodes[key]

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        recs: list[_Rec] = []
        ids: set[str] = set()
        for raw in source.raw_rows():
            obj = raw.obj
            rid = obj.get("id")
            if not isinstance(rid, str):
                raise DataError("record without an id", path=source.name, line=raw.lineno)
            if rid in ids:
                raise DataError(f"duplicate id '{rid}'", path=source.name, line=raw.lineno,
                                hint="ids must be unique; `trajtune validate` lists all duplicates")
            ids.add(rid)
            n = node(b"p" + _h(normalize_text(prompt_text(obj))))
            if cfg.group_by != "prompt":
                v = _meta_value(obj, cfg.group_by)
                other = node(b"m" + _h(v) if v is not None else b"i" + _h(rid))
                parent[find(other)] = find(n)
            recs.append(_Rec(raw.lineno, raw.offset, n, _stratum(obj, cfg.stratify_by or ("tool" if cfg.balance else None)),
                             _success(obj), tuple(called_tools(obj))))
        if not recs:
            raise DataError("no records to split", path=source.name)
        before = stats(recs)
        strata_before: dict[str, int] = {}
        for r in recs:
            strata_before[r.stratum] = strata_before.get(r.stratum, 0) + 1

        # 2) balance: cap each stratum, dropping a seeded sample
        dropped = 0
        strata_after = dict(strata_before)
        if cfg.balance:
            cap = cfg.balance_cap or math.ceil(1.5 * statistics.median(strata_before.values()))
            keep: list[_Rec] = []
            by: dict[str, list[_Rec]] = {}
            for r in recs:
                by.setdefault(r.stratum, []).append(r)
            for s, members in by.items():
                if len(members) > cap:
                    members = sorted(members, key=lambda r: _h(cfg.seed, "balance", r.lineno))[:cap]
                keep.extend(members)
                strata_after[s] = len(members)
            dropped = len(recs) - len(keep)
            recs = sorted(keep, key=lambda r: r.lineno)

        # 3) assign whole groups to splits, stratum by stratum, in seeded hash order
        groups: dict[int, list[_Rec]] = {}
        for r in recs:
            groups.setdefault(find(r.node), []).append(r)
        by_stratum: dict[str, list[tuple[bytes, list[_Rec]]]] = {}
        for root, members in groups.items():
            counts: dict[str, int] = {}
            for r in members:
                counts[r.stratum] = counts.get(r.stratum, 0) + 1
            stratum = sorted(counts, key=lambda s: (-counts[s], s))[0]
            by_stratum.setdefault(stratum, []).append((_h(cfg.seed, min(m.lineno for m in members)), members))
        # A group goes where its stratum is furthest below target; when no split of the stratum
        # lacks a whole group's worth (tiny strata, remainders), to the split still short in the
        # stratum that is furthest below its overall target.
        assign: dict[int, int] = {}  # lineno -> split index
        grand = [cfg.ratios[i] * len(recs) for i in range(3)]
        overall = [0, 0, 0]
        for stratum in sorted(by_stratum):
            glist = sorted(by_stratum[stratum], key=lambda g: g[0])
            total = sum(len(m) for _, m in glist)
            have = [0, 0, 0]
            for _, members in glist:
                deficits = [cfg.ratios[i] * total - have[i] if cfg.ratios[i] > 0 else -math.inf for i in range(3)]
                i = max(range(3), key=lambda k: (deficits[k], -k))
                if deficits[i] < len(members):
                    short = [k for k in range(3) if deficits[k] > 0] or [k for k in range(3) if cfg.ratios[k] > 0]
                    i = max(short, key=lambda k: (grand[k] - overall[k], -k))
                have[i] += len(members)
                overall[i] += len(members)
                for r in members:
                    assign[r.lineno] = i
        per_split = [[r for r in recs if assign[r.lineno] == i] for i in range(3)]

        # 4) second pass: write each record to its split, in input order (atomic files)
        out = Path(out_dir)
        paths = [out / f"{name}.jsonl" for name in SPLITS]
        with atomic_writer(paths[0]) as f0, atomic_writer(paths[1]) as f1, atomic_writer(paths[2]) as f2:
            fhs = (f0, f1, f2)
            with open(source.path, "rb") as fh:
                for r in recs:
                    fh.seek(r.offset)
                    fhs[assign[r.lineno]].write(fh.readline().rstrip(b"\r\n") + b"\n")
        config.save(cfg, out / "split.yaml")  # the resolved config: repeat with --config OUT_DIR/split.yaml
    finally:
        source.close()
    table = [{"split": "input", **before}]
    if cfg.balance:
        table.append({"split": "after balance", **stats(recs)})
    table += [{"split": name, **stats(per_split[i])} for i, name in enumerate(SPLITS)]
    return {
        "input": source.name, "out_dir": str(out), "seed": cfg.seed, "ratios": cfg.ratios,
        "counts": {name: len(per_split[i]) for i, name in enumerate(SPLITS)},
        "groups": len(groups), "dropped_by_balance": dropped,
        "strata_before": dict(sorted(strata_before.items())), "strata_after": dict(sorted(strata_after.items())),
        "table": table,
    }
