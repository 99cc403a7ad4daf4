"""Which training method the data supports: the design's method selector, in one place.

DPO needs at least :data:`MIN_PAIRS` approved preference pairs (on top of SFT when there is
enough sft data too); SFT needs at least :data:`MIN_SFT` approved sft records; below both, the
answer is more (synthetic) data, and how much. "Approved" means usable for training: records a
person approved in review, and records without a review state (converted real data is not
gated); pending and rejected records do not count. ``trajtune advise`` reports it, and
``train-sft`` / ``train-dpo`` print the same :func:`shortfall` warning when started below it.
"""
from __future__ import annotations

from typing import Optional

MIN_PAIRS = 20
MIN_SFT = 50
UNIT = {"sft": "approved sft records", "preference": "approved preference pairs"}
NEED = {"sft": MIN_SFT, "preference": MIN_PAIRS}
METHOD = {"sft": "SFT", "preference": "DPO"}


def generate_command(kind: str, count: int, output: str | None = None) -> str:
    """The command that makes ``count`` more records of ``kind`` (then review them)."""
    sub, out = ("trajectories", output or "data/more_sft.jsonl") if kind == "sft" else \
        ("preferences", output or "data/more_pairs.jsonl")
    return f"trajtune generate {sub} --count {count} -o {out} && trajtune review {out}"


def shortfall(kind: str, approved: int) -> Optional[str]:
    """The warning for ``approved`` records of ``kind`` below the method's threshold; None when enough."""
    need = NEED.get(kind)
    if need is None or approved >= need:
        return None
    more = need - approved
    return (f"{approved} {UNIT[kind]}: {METHOD[kind]} needs at least {need} (the design's threshold), "
            f"{more} more; make them with `{generate_command(kind, more)}` (see `trajtune advise`)")


def advise(sft: int, pairs: int, sft_files: list[str] | None = None, pair_files: list[str] | None = None) -> dict:
    """The method for ``sft`` approved sft records and ``pairs`` approved pairs, why, and what to run
    (the commands name ``sft_files`` / ``pair_files`` when given)."""
    import shlex

    sft_arg = " ".join(map(shlex.quote, sft_files or ["SFT.jsonl"]))
    pair_arg = " ".join(map(shlex.quote, pair_files or ["PAIRS.jsonl"]))
    notes = [n for n in (shortfall("sft", sft), shortfall("preference", pairs)) if n]
    if pairs >= MIN_PAIRS and sft >= MIN_SFT:
        return {"method": "sft+dpo", "reason": f"{pairs} approved pairs (>= {MIN_PAIRS}) and {sft} approved sft "
                                                f"records (>= {MIN_SFT}): SFT, then DPO on top of the SFT adapter",
                "commands": [f"trajtune train-sft {sft_arg} -o runs/sft",
                             f"trajtune train-dpo {pair_arg} --adapter runs/sft/final -o runs/dpo"], "notes": notes}
    if pairs >= MIN_PAIRS:
        return {"method": "dpo", "reason": f"{pairs} approved pairs (>= {MIN_PAIRS}) but only {sft} approved sft "
                                            f"records (< {MIN_SFT}): DPO from the base model (or on an SFT adapter "
                                            "you already have)",
                "commands": [f"trajtune train-dpo {pair_arg} -o runs/dpo"], "notes": notes}
    if sft >= MIN_SFT:
        return {"method": "sft", "reason": f"{sft} approved sft records (>= {MIN_SFT}); {pairs} approved pairs "
                                            f"(< {MIN_PAIRS}) are too few for DPO",
                "commands": [f"trajtune train-sft {sft_arg} -o runs/sft"], "notes": notes}
    return {"method": "generate", "reason": f"{sft} approved sft records (< {MIN_SFT}) and {pairs} approved pairs "
                                             f"(< {MIN_PAIRS}): too few to train on; make more data first",
            "commands": [generate_command("sft", MIN_SFT - sft)], "notes": notes[1:]}  # the sft one is the command
