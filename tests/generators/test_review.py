"""The review gate training relies on, and the review decisions file."""
import json

import pytest

from trajtune.errors import DataError
from trajtune.generators.review import load_decisions, require_reviewed, review_file, sidecar_path


def _rec(i, state):
    meta = {"source": "generate"} | ({"review": state} if state else {})
    return {"id": f"r{i}", "metadata": meta, "messages": [{"role": "user", "content": f"hi {i}"},
                                                         {"role": "assistant", "content": "hello"}]}


def test_pending_records_are_refused_with_the_file_count_and_fix():
    recs = [_rec(1, "approved"), _rec(2, "pending"), _rec(3, "pending")]
    with pytest.raises(DataError) as exc:
        require_reviewed(recs, "data/train.jsonl", allow_unreviewed=False)
    msg = exc.value.render()
    assert msg.startswith("data/train.jsonl: 2 of 3 records are not reviewed")
    assert "first: r2" in msg
    assert "trajtune review data/train.jsonl --approve-all" in msg and "--allow-unreviewed" in msg
    assert exc.value.exit_code == 1


def test_allow_unreviewed_lets_pending_through_but_never_rejected():
    require_reviewed([_rec(1, "pending"), _rec(2, "approved")], "x.jsonl", allow_unreviewed=True)
    with pytest.raises(DataError) as exc:
        require_reviewed([_rec(1, "pending"), _rec(2, "rejected")], "x.jsonl", allow_unreviewed=True)
    assert "1 of 2 records were rejected in review" in exc.value.render()
    assert "trajtune review x.jsonl --drop-rejected" in exc.value.render()


def test_records_without_a_review_field_are_not_gated():
    require_reviewed([_rec(1, None), _rec(2, "approved")], "real.jsonl", allow_unreviewed=False)


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _states(path):
    return {r["id"]: r["metadata"].get("review") for r in map(json.loads, path.read_text().splitlines())}


def test_decisions_are_logged_then_applied_and_a_quit_resumes(tmp_path):
    p = tmp_path / "gen.jsonl"
    _write(p, [_rec(i, "pending") for i in range(4)])
    answers = iter(["approved", "skip", "rejected", "quit"])
    s = review_file(p, ask=lambda rec, i, left: next(answers))
    assert (s.approved, s.rejected, s.pending) == (1, 1, 2)
    assert _states(p) == {"r0": "approved", "r1": "pending", "r2": "rejected", "r3": "pending"}
    assert load_decisions(p) == {"r0": "approved", "r1": "skip", "r2": "rejected"}
    # the next session shows only what is still undecided: the skipped record and the one not reached
    shown = []
    s = review_file(p, ask=lambda rec, i, left: shown.append(rec["id"]) or "approved")
    assert shown == ["r1", "r3"] and s.pending == 0


def test_applying_a_torn_sidecar_keeps_the_whole_decisions(tmp_path):
    p = tmp_path / "gen.jsonl"
    _write(p, [_rec(i, "pending") for i in range(2)])
    sidecar_path(p).write_text('{"id": "r0", "decision": "approved"}\n{"id": "r1", "deci')
    s = review_file(p)
    assert _states(p) == {"r0": "approved", "r1": "pending"} and s.pending == 1


def test_approve_ids_file_and_drop_rejected(tmp_path):
    p = tmp_path / "gen.jsonl"
    _write(p, [_rec(i, "pending") for i in range(3)] + [_rec(9, None)])
    ids = tmp_path / "ok.txt"
    ids.write_text("# approved by Ana\nr0\nr2\nnope\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("r1\n")
    s = review_file(p, approve_ids=ids, reject_ids=bad)
    assert (s.approved, s.rejected, s.pending, s.unmarked, s.unknown_ids) == (2, 1, 0, 1, ["nope"])
    s = review_file(p, drop_rejected=True)
    assert s.dropped == 1 and "r1" not in _states(p)
    require_reviewed([json.loads(x) for x in p.read_text().splitlines()], str(p), allow_unreviewed=False)
