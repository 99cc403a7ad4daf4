"""The review gate: a person approves synthetic data before anything trains on it.

Generated records carry ``metadata.review: "pending"``. ``trajtune review FILE`` records a
decision per id (approve / reject / skip) in a sidecar ``FILE.review.jsonl`` (appended with
fsync, so an interrupted session resumes where it stopped) and applies the decisions to FILE
atomically. Training calls :func:`require_reviewed`: pending records are refused unless the user
passes ``--allow-unreviewed``; rejected records are always refused.

Records without ``metadata.review`` (converted real data) are not subject to the gate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from trajtune.errors import DataError, UsageError

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
DECISIONS = (APPROVED, REJECTED, "skip")


def review_state(record: dict) -> str | None:
    meta = record.get("metadata") if isinstance(record, dict) else None
    state = meta.get("review") if isinstance(meta, dict) else None
    return state if isinstance(state, str) else None


def require_reviewed(records: list[dict], path: str, allow_unreviewed: bool) -> None:
    """Refuse records a person has not approved.

    Raises DataError naming ``path``, how many records are pending or rejected, the first such
    id, and the fix. ``allow_unreviewed`` lets pending records through; rejected ones never pass.
    """
    pending: list[str] = []
    rejected: list[str] = []
    for rec in records:
        state = review_state(rec)
        if state == PENDING:
            pending.append(str(rec.get("id", "?")))
        elif state == REJECTED:
            rejected.append(str(rec.get("id", "?")))
    if rejected:
        raise DataError(
            f"{len(rejected)} of {len(records)} records were rejected in review (metadata.review = \"rejected\", "
            f"first: {rejected[0]}); rejected records are never trained on",
            path=str(path),
            hint=f"remove them with `trajtune review {path} --drop-rejected`",
        )
    if pending and not allow_unreviewed:
        raise DataError(
            f"{len(pending)} of {len(records)} records are not reviewed (metadata.review = \"pending\", "
            f"first: {pending[0]})",
            path=str(path),
            hint=f"review them with `trajtune review {path}` or `trajtune review {path} --approve-all`, "
            "or pass --allow-unreviewed to train on them anyway",
        )


# --------------------------------------------------------------------------- sidecar + apply


def sidecar_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".review.jsonl")


def load_decisions(path: str | Path) -> dict[str, str]:
    """Decisions recorded so far for FILE (last one per id wins); a torn last line is ignored."""
    import orjson

    side = sidecar_path(path)
    out: dict[str, str] = {}
    if not side.exists():
        return out
    with open(side, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                break
            if isinstance(obj, dict) and obj.get("decision") in DECISIONS and "id" in obj:
                out[str(obj["id"])] = obj["decision"]
    return out


def read_ids_file(path: str | Path) -> list[str]:
    """Ids to approve: one per line (blank lines and # comments skipped), or a JSONL file of records with ids."""
    import orjson

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such file", hint="--approve-ids takes a file with one id per line")
    ids: list[str] = []
    from trajtune.config import read_text

    for lineno, line in enumerate(read_text(p, "--approve-ids file").splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("{"):
            try:
                obj = orjson.loads(s)
            except orjson.JSONDecodeError:
                raise DataError("not valid JSON", path=str(p), line=lineno) from None
            if not isinstance(obj, dict) or "id" not in obj:
                raise DataError("a JSON line must be an object with an \"id\"", path=str(p), line=lineno)
            ids.append(str(obj["id"]))
        else:
            ids.append(s)
    return ids


@dataclass
class ReviewSummary:
    file: str
    total: int = 0
    approved: int = 0
    rejected: int = 0
    pending: int = 0
    unmarked: int = 0  # records with no metadata.review (not subject to the gate)
    changed: int = 0
    dropped: int = 0
    unknown_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _load_records(path: str | Path) -> list[dict]:
    from trajtune.jsonl import read_jsonl

    if str(path) == "-":
        raise UsageError("review needs a file, not stdin", hint="decisions are written back into the file")
    return [row.obj for row in read_jsonl(path)]


def _with_state(rec: dict, state: str) -> dict:
    meta = dict(rec.get("metadata") or {})
    meta["review"] = state
    out = dict(rec)
    out["metadata"] = meta
    return out


def apply_decisions(path: str | Path, decisions: dict[str, str], *, drop_rejected: bool = False,
                    records: list[dict] | None = None) -> ReviewSummary:
    """Rewrite FILE atomically with each decided record's metadata.review set (skip = unchanged)."""
    from trajtune.jsonl import write_jsonl

    recs = records if records is not None else _load_records(path)
    summary = ReviewSummary(file=str(path))
    out: list[dict] = []
    for rec in recs:
        rid = str(rec.get("id"))
        dec = decisions.get(rid)
        if dec in (APPROVED, REJECTED) and review_state(rec) != dec:
            rec = _with_state(rec, dec)
            summary.changed += 1
        state = review_state(rec)
        if state == REJECTED and drop_rejected:
            summary.dropped += 1
            continue
        out.append(rec)
    for rec in out:
        state = review_state(rec)
        summary.total += 1
        if state == APPROVED:
            summary.approved += 1
        elif state == REJECTED:
            summary.rejected += 1
        elif state == PENDING:
            summary.pending += 1
        else:
            summary.unmarked += 1
    if summary.changed or summary.dropped:
        write_jsonl(path, out)
    return summary


class DecisionLog:
    """Append-with-fsync log of decisions (the sidecar), so an interrupted review resumes."""

    def __init__(self, path: str | Path):
        from trajtune.jsonl import Appender

        self._app = Appender(sidecar_path(path), id_key="_none")

    def record(self, rid: str, decision: str) -> None:
        if decision not in DECISIONS:
            raise ValueError(decision)
        self._app.write({"id": rid, "decision": decision})

    def close(self) -> None:
        self._app.close()


def iter_to_review(records: Iterable[dict], decisions: dict[str, str]) -> Iterator[tuple[int, dict]]:
    """Records still pending and not yet decided in this or an earlier session (skips come back last time only)."""
    for i, rec in enumerate(records):
        if review_state(rec) == PENDING and str(rec.get("id")) not in decisions:
            yield i, rec


def review_file(path: str | Path, *, approve_all: bool = False, approve_ids: str | Path | None = None,
                reject_ids: str | Path | None = None, drop_rejected: bool = False,
                ask=None, show=None) -> ReviewSummary:
    """The review stage.

    1) load FILE and the decisions recorded so far in FILE.review.jsonl;
    2) add decisions: --approve-all (every pending record), --approve-ids/--reject-ids FILE,
       or interactively via ``ask(record, index, remaining) -> "approved"|"rejected"|"skip"|"quit"``;
       each decision is appended to the sidecar (fsync) before the next record is shown;
    3) apply all decisions to FILE atomically (and drop rejected records with ``drop_rejected``).
    """
    # 1) load
    records = _load_records(path)
    decisions = load_decisions(path)
    known = {str(r.get("id")) for r in records}
    unknown: list[str] = []
    log = DecisionLog(path)
    try:
        # 2) decide
        def decide(rid: str, dec: str) -> None:
            if decisions.get(rid) != dec:
                log.record(rid, dec)
                decisions[rid] = dec

        for ids_file, dec in ((approve_ids, APPROVED), (reject_ids, REJECTED)):
            if ids_file is None:
                continue
            for rid in read_ids_file(ids_file):
                if rid in known:
                    decide(rid, dec)
                else:
                    unknown.append(rid)
        if approve_all:
            for rec in records:
                rid = str(rec.get("id"))
                if review_state(rec) == PENDING and decisions.get(rid) not in (APPROVED, REJECTED):
                    decide(rid, APPROVED)
        elif ask is not None and approve_ids is None and reject_ids is None:
            todo = list(iter_to_review(records, {k: v for k, v in decisions.items() if v != "skip"}))
            for n, (i, rec) in enumerate(todo):
                ans = ask(rec, i, len(todo) - n)
                if ans == "quit":
                    break
                decide(str(rec.get("id")), ans)
    finally:
        log.close()
    # 3) apply
    summary = apply_decisions(path, decisions, drop_rejected=drop_rejected, records=records)
    summary.unknown_ids = unknown
    return summary


# --------------------------------------------------------------------------- what a reviewer sees


def _call_text(msg: dict) -> str:
    import json

    parts = []
    if msg.get("content"):
        parts.append(str(msg["content"]))
    for c in msg.get("tool_calls") or []:
        fn = c.get("function") or {}
        parts.append(f"{fn.get('name')}({json.dumps(fn.get('arguments'), ensure_ascii=False)})")
    return "  ".join(parts) or "(empty)"


def _dialogue(msgs: list) -> list[tuple[str, str]]:
    out = []
    for m in msgs or []:
        role = m.get("role")
        if role == "system":
            continue
        if role == "assistant":
            out.append(("assistant", _call_text(m)))
        elif role == "tool":
            text = str(m.get("content") or "")
            out.append(("tool", text if len(text) < 160 else text[:157] + "..."))
        else:
            out.append((str(role), str(m.get("content") or "")))
    return out


def describe(rec: dict) -> list[tuple[str, str]]:
    """(label, text) lines summarising a record for a person: metadata, dialogue, tools offered."""
    import json

    meta = rec.get("metadata") or {}
    head = ", ".join(f"{k}={meta[k]}" for k in ("category", "difficulty", "template_id", "failure_type", "split_reason")
                     if k in meta)
    lines = [("metadata", head or "-")]
    tools = [t.get("function", {}).get("name") for t in rec.get("tools") or [] if isinstance(t, dict)]
    if tools:
        lines.append(("tools", ", ".join(map(str, tools))))
    if "messages" in rec:
        lines += _dialogue(rec["messages"])
    elif "chosen" in rec:
        lines += _dialogue(rec.get("prompt") or [])
        lines += [("CHOSEN", _call_text(m)) for m in rec.get("chosen") or []]
        lines += [("REJECTED", _call_text(m)) for m in rec.get("rejected") or []]
    elif "expected" in rec:
        lines += _dialogue(rec.get("prompt") or [])
        exp = rec["expected"]
        if "calls" in exp:
            text = "; ".join(f"{c['name']}({json.dumps(c['arguments'], ensure_ascii=False)})" for c in exp["calls"])
            lines.append(("EXPECTED", text or "no call (a plain reply)"))
        else:
            lines.append(("EXPECTED", f"{exp.get('match', 'exact')}: {exp.get('answer')}"))
    return lines
