"""Interaction logs -> sft, preference or group records.

Rows: ``interaction_id``, ``timestamp``, ``query``, ``answer``, ``agent_type``,
``quality_scores`` (with ``overall``), ``session_id``, ``latency_ms``, ``tools_used``,
``error_occurred``.

* sft: one record per answer with quality >= ``--min-quality``.
* preference: answers to the same normalised query; the best is chosen over the worst when
  their quality differs by at least ``--min-quality-diff``.
* group: the first ``--group-size`` answers (in file order) to the same normalised query, each
  with its quality as the reward.

Filters (counted as skipped): ``error_occurred``, ``--agent-types``, ``--days-back`` (before
``--as-of``, default now). Grouping keeps only the normalised query's hash, the quality and
the byte offset of each row in memory; records are re-read from the file when written.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from trajtune.converters.common import ROW_ERRORS, Reject, Skip, as_reject, record, source_id
from trajtune.records import normalize_text

NAME = "interactions"
KINDS = ("sft", "preference", "group")


def detect(obj: Any) -> bool:
    return isinstance(obj, dict) and "query" in obj and "answer" in obj and \
        ("quality_scores" in obj or "interaction_id" in obj)


def _time(v: Any) -> datetime | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return datetime.fromtimestamp(v / 1000 if v > 1e11 else v, tz=timezone.utc)
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _cutoff(cfg) -> datetime | None:
    if cfg.days_back is None:
        return None
    ref = _time(cfg.as_of) if cfg.as_of else datetime.now(timezone.utc)
    if ref is None:
        from trajtune.errors import ConfigError

        raise ConfigError(f"--as-of: not an ISO date: {cfg.as_of!r}")
    return ref - timedelta(days=cfg.days_back)


def check(obj: dict, cfg, cutoff: datetime | None) -> float:
    """Reject bad rows, skip filtered ones; return the row's quality."""
    for key in ("query", "answer"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise Reject(f"{key} empty")
    q = obj.get("quality_scores")
    q = q.get("overall") if isinstance(q, dict) else q
    if not isinstance(q, (int, float)) or isinstance(q, bool):
        raise Reject("quality_scores.overall missing or not a number")
    if obj.get("error_occurred") in (True, "true", 1):
        raise Skip("error_occurred")
    if cfg.agent_types and obj.get("agent_type") not in cfg.agent_types:
        raise Skip("agent_type not selected")
    if cutoff is not None:
        t = _time(obj.get("timestamp"))
        if t is None:
            raise Reject("invalid timestamp", repr(obj.get("timestamp")))
        if t < cutoff:
            raise Skip("older than days_back")
    return float(q)


def _meta(obj: dict, quality: float) -> dict:
    meta: dict[str, Any] = {"source": NAME, "quality": quality}
    for src, dst in (("agent_type", "agent"), ("session_id", "session_id"), ("timestamp", "timestamp"),
                     ("latency_ms", "latency_ms"), ("tools_used", "tools_used")):
        if obj.get(src) is not None:
            meta[dst] = obj[src]
    return meta


def _rid(obj: dict) -> str:
    return source_id(obj, "interaction-", "interaction_id", "id")


def convert(source, kind, cfg, emit):
    cutoff = _cutoff(cfg)
    if kind == "sft":
        for row in source.rows():
            try:
                q = check(row.obj, cfg, cutoff)
                if q < cfg.min_quality:
                    raise Skip("quality below min_quality")
            except ROW_ERRORS as r_:
                r = as_reject(r_)
                emit.reject(row, r.reason, r.detail)
                continue
            except Skip as s:
                emit.skip(s.reason)
                continue
            o = row.obj
            body = {"messages": [{"role": "user", "content": o["query"]}, {"role": "assistant", "content": o["answer"]}]}
            yield row, record(_rid(o), NAME, body, _meta(o, q))
        return
    # grouping: pass 1 keeps (quality, line, offset) per normalised-query hash, in first-seen order
    groups: dict[bytes, list[tuple[float, int, int]]] = {}
    for raw in source.raw_rows():
        from trajtune.jsonl import Row

        row = Row(source.name, raw.lineno, raw.obj)
        try:
            q = check(raw.obj, cfg, cutoff)
        except ROW_ERRORS as r_:
            r = as_reject(r_)
            emit.reject(row, r.reason, r.detail)
            continue
        except Skip as s:
            emit.skip(s.reason)
            continue
        key = hashlib.sha1(normalize_text(raw.obj["query"]).encode()).digest()
        groups.setdefault(key, []).append((q, raw.lineno, raw.offset))
    # pass 2: build one record per group, re-reading only the rows it needs
    for members in groups.values():
        if len(members) < 2:
            emit.skip("query with a single answer")
            continue
        if kind == "preference":
            ranked = sorted(members, key=lambda m: (-m[0], m[1]))
            best, worst = ranked[0], ranked[-1]
            if best[0] - worst[0] < cfg.min_quality_diff:
                emit.skip("quality difference below min_quality_diff")
                continue
            rb, rw = source.read_at(best[2], best[1]), source.read_at(worst[2], worst[1])
            if normalize_text(rb.obj["answer"]) == normalize_text(rw.obj["answer"]):
                emit.skip("identical chosen and rejected")
                continue
            meta = {"source": NAME, "chosen_quality": best[0], "rejected_quality": worst[0],
                    "chosen_id": _rid(rb.obj), "rejected_id": _rid(rw.obj)}
            if rb.obj.get("agent_type") is not None:
                meta["agent"] = rb.obj["agent_type"]
            body = {"prompt": [{"role": "user", "content": rb.obj["query"]}],
                    "chosen": [{"role": "assistant", "content": rb.obj["answer"]}],
                    "rejected": [{"role": "assistant", "content": rw.obj["answer"]}]}
            yield rb, record(f"{_rid(rb.obj)}-vs-{_rid(rw.obj)}", NAME, body, meta)
        else:
            if len(members) < cfg.group_size:
                emit.skip("fewer answers than group_size")
                continue
            rows = [source.read_at(off, ln) for _, ln, off in members[:cfg.group_size]]
            responses = [{"messages": [{"role": "assistant", "content": r.obj["answer"]}], "reward": q}
                         for r, (q, _, _) in zip(rows, members)]
            ids = [_rid(r.obj) for r in rows]
            from trajtune.records import content_id

            body = {"prompt": [{"role": "user", "content": rows[0].obj["query"]}], "responses": responses}
            yield rows[0], record(content_id(ids, "group-"), NAME, body, {"source": NAME, "member_ids": ids})
