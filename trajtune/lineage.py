"""Lineage manifests: what every stage's run leaves beside its output, written once, here.

A manifest says which run made an output and from what: the stage, the command line as typed and
the resolved config (secrets redacted), every input file with its sha256 and record count, the
parent runs (the adapter or model it started from; the run that produced each data file, when
that file's manifest is known and its sha256 still matches), package versions, wall time, peak
memory and the headline metrics. Where it goes:

* an output folder (split, merge-lora, evaluate, a training run): ``OUT_DIR/manifest.json``;
* an output file (convert, generate, validate's report, review's rewritten file):
  ``OUT.manifest.json`` beside it (``.jsonl`` dropped: ``train.jsonl`` -> ``train.manifest.json``).

It is written atomically by :meth:`trajtune.stage.Stage.execute` (the one place every command's
``run(cfg)`` is called from), then the run is registered in the SQLite index
(:mod:`trajtune.registry`); the manifests are the truth, the index can be rebuilt from them
(``trajtune runs reindex DIR``). A manifest replaced by a later run on the same output (a resumed
training, review rewriting a generated file) is kept inside the new one under ``earlier``, so no
run disappears from the lineage. Only rank 0 of a multi-process run writes. A manifest or
registry that cannot be written is a warning, never a failed stage: the work is done.

A stage adds what only it knows through ``Stage.lineage(cfg, summary) -> dict`` (``output``: the
folder or file the manifest describes, ``outputs``: the paths it lists, ``metrics``, ``model``
and any extra keys); everything else is derived from the config fields.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

SCHEMA = "trajtune.manifest/1"
MANIFEST_NAME = "manifest.json"
SUFFIX = ".manifest.json"
# files of an output folder larger than this are listed with their size, not hashed (model weights)
HASH_LIMIT = 256 << 20
KEEP_EARLIER = 20
PACKAGES = ("trajtune", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "vllm")
# config fields that name models, not data: parents, never hashed
MODEL_FIELDS = ("model", "adapter", "adapters", "baseline", "tokenizer")
_SECRET_FLAG = re.compile(r"^--?[\w-]*(api[-_]?key|token|secret|password)$", re.I)


def manifest_path(output: str | os.PathLike) -> Path:
    """Where the manifest of ``output`` goes: inside a folder, beside a file."""
    p = Path(output)
    if p.is_dir():
        return p / MANIFEST_NAME
    name = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(name + SUFFIX)


def is_manifest_name(name: str) -> bool:
    return name == MANIFEST_NAME or name.endswith(SUFFIX)


def new_run_id(stage: str) -> str:
    return f"{stage.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------------------------
# files


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def count_records(path: str | os.PathLike) -> Optional[int]:
    """Non-blank lines of a ``.jsonl`` file (one record each); None for other files."""
    p = Path(path)
    if not p.name.endswith(".jsonl"):
        return None
    n = 0
    with open(p, "rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def file_info(path: str | os.PathLike, *, limit: Optional[int] = None) -> dict:
    """path, bytes, sha256 (None over ``limit``) and records of one file."""
    p = Path(path)
    size = p.stat().st_size
    info: dict[str, Any] = {"path": str(p), "bytes": size}
    info["sha256"] = sha256_file(p) if limit is None or size <= limit else None
    info["records"] = count_records(p)
    return info


def _folder_files(folder: Path) -> list[Path]:
    """The files an output folder holds, one level deep (a run folder: its final/ too), no
    checkpoints, no temp or hidden files, no manifest."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or is_manifest_name(p.name):
            continue
        if p.is_file():
            out.append(p)
        elif p.is_dir() and p.name == "final":
            out += [q for q in sorted(p.iterdir()) if q.is_file() and not q.name.startswith(".")]
    return out


def describe_outputs(paths: Iterable[str | os.PathLike], base: Path) -> list[dict]:
    """Output files (folders expanded), paths relative to the manifest's folder ``base``."""
    out = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            continue
        for f in (_folder_files(p) if p.is_dir() else [p]):
            info = file_info(f, limit=HASH_LIMIT)
            info["path"] = os.path.relpath(f, base)
            out.append(info)
    return out


# ---------------------------------------------------------------------------------------------
# who produced a file or folder


def read_manifest(path: str | os.PathLike) -> Optional[dict]:
    import json

    try:
        obj = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and obj.get("schema") == SCHEMA and obj.get("run_id") else None


def _candidates(p: Path) -> list[Path]:
    if p.is_dir():
        return [p / MANIFEST_NAME, p.parent / MANIFEST_NAME]
    return [manifest_path(p), p.parent / MANIFEST_NAME]


def producer(path: str | os.PathLike, sha256: Optional[str] = None) -> Optional[dict]:
    """The run that wrote ``path`` (a file or folder), from the manifest beside or above it:
    ``{"run_id", "stage", "manifest", "matches"}``; ``matches`` is False when the file changed since
    (its sha256 differs from the one the manifest recorded). None when no manifest names it."""
    p = Path(path)
    real = Path(os.path.realpath(p))
    for cand in _candidates(p):
        m = read_manifest(cand) if cand.is_file() else None
        if m is None:
            continue
        base = cand.parent
        for out in m.get("outputs") or []:
            target = Path(os.path.realpath(base / out["path"]))
            if target == real or (p.is_dir() and real in target.parents):
                matches = True
                if sha256 and not p.is_dir() and out.get("sha256"):
                    matches = out["sha256"] == sha256
                return {"run_id": m["run_id"], "stage": m.get("stage"), "manifest": str(cand.resolve()),
                        "matches": matches}
    return None


# ---------------------------------------------------------------------------------------------
# redaction


def redact_text(text: str) -> str:
    from trajtune.generators.teacher import redact_url

    return redact_url(text) if "://" in text and "@" in text else text


def redact(obj: Any) -> Any:
    """Credentials in URLs redacted anywhere in a JSON-able value (secret-named keys: config.to_dict)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with URL credentials, secret-named flags' values and ``--set`` secrets hidden."""
    from trajtune.config import SECRET_KEY

    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        if arg.startswith("-") and _SECRET_FLAG.match(flag):
            out.append(f"{flag}=***" if eq else arg)
            hide_next = not eq
            continue
        if out and out[-1] == "--set" and SECRET_KEY.search(flag.strip().replace("-", "_")):
            out.append(f"{flag}=***")
            continue
        out.append(redact_text(arg))
    return out


def command_line() -> Optional[list[str]]:
    """The command as typed (``trajtune ...`` or ``python -m trajtune.scripts.<x> ...``), redacted;
    None when the stage was called from Python (no command line of ours)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or ""
    if name == "trajtune.cli.app" or (not name and Path(sys.argv[0]).name == "trajtune"):
        prog = ["trajtune"]
    elif name.startswith("trajtune.scripts."):
        prog = ["python", "-m", name]
    else:
        return None
    return prog + redact_argv(list(sys.argv[1:]))


# ---------------------------------------------------------------------------------------------
# environment


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def peak_memory_mb() -> dict:
    """Peak resident set of this process (and of its largest waited-for child), CUDA peak if used."""
    import resource

    out = {"rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if child:
        out["children_rss_mb"] = round(child, 1)
    torch = sys.modules.get("torch")  # never imported for this
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ---------------------------------------------------------------------------------------------
# inputs and parents from the config


def _path_values(cfg: Any) -> list[tuple[str, str]]:
    """(field, value) of every config value that names an existing path, outputs excluded."""
    out = []
    for f in dataclasses.fields(cfg):
        meta = f.metadata or {}
        if meta.get("output") or meta.get("choices"):
            continue
        value = getattr(cfg, f.name, None)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, str) and v and v != "-" and len(v) < 4096 and os.path.exists(v):
                out.append((f.name, v))
    return out


def scan_inputs(cfg: Any) -> tuple[list[dict], list[dict]]:
    """Inputs (files hashed and counted, folders named) and parents (models, and the runs that
    produced an input) of a run, read before it starts (review rewrites its input)."""
    inputs: list[dict] = []
    parents: list[dict] = []
    seen: set[str] = set()
    for name, value in _path_values(cfg):
        real = os.path.realpath(value)
        if (name, real) in seen:
            continue
        seen.add((name, real))  # type: ignore[arg-type]
        p = Path(value)
        if p.is_file():
            info = {"field": name, **file_info(p)}
            info["path"] = str(p.resolve())
            inputs.append(info)
            made = producer(p, info["sha256"])
        elif p.is_dir():
            inputs.append({"field": name, "path": str(p.resolve()), "folder": True})
            made = producer(p)
        else:
            continue
        if made is not None or name in MODEL_FIELDS:
            parents.append({"field": name, "path": str(p.resolve()), **(made or {"run_id": None})})
    for name in MODEL_FIELDS:  # a model named, not a path: 'default', org/name
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and not os.path.exists(value) and value not in ("base", "-"):
            parents.append({"field": name, "model": value, "run_id": None})
    return inputs, parents


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def headline(summary: dict) -> dict:
    """The numbers of a summary worth a column, for a stage without its own: its top-level numbers
    and those of its small all-number mappings (``counts.train``, ``totals.errors``); no seeds or exit codes."""
    out: dict[str, Any] = {}
    for k, v in (summary or {}).items():
        if k in ("exit_code", "seed"):
            continue
        if _number(v):
            out[k] = v
        elif isinstance(v, dict) and 0 < len(v) <= 12 and all(_number(x) for x in v.values()):
            out.update({f"{k}.{kk}": x for kk, x in v.items()})
    return dict(list(out.items())[:24])


# ---------------------------------------------------------------------------------------------
# one run


class Recorder:
    """Around one ``run(cfg)``: inputs read before it, the manifest written and registered after it."""

    def __init__(self, stage: Any, cfg: Any):
        self.stage, self.cfg = stage, cfg
        self.t0 = time.perf_counter()
        self.started = _now()
        self.run_id = new_run_id(stage.name)
        self.command = command_line()
        self.enabled = _main_process() and (stage.lineage is not None or _has_output(cfg))
        self.inputs: list[dict] = []
        self.parents: list[dict] = []
        if self.enabled:
            try:
                self.inputs, self.parents = scan_inputs(cfg)
            except Exception:  # noqa: BLE001 - a missing or unreadable input: the stage says so itself
                self.inputs, self.parents = [], []

    def finish(self, summary: dict) -> Optional[Path]:
        """Write the manifest (and register the run); returns its path, or None. Never raises."""
        if not self.enabled or not isinstance(summary, dict) or summary.get("skipped"):
            return None
        try:
            path, manifest = self.write(summary)
        except Exception as exc:  # noqa: BLE001 - the work is done; a manifest problem is a warning
            _warn(f"no manifest written for this {self.stage.name} run ({type(exc).__name__}: {exc})")
            return None
        if path is None:
            return None
        from trajtune import registry

        registry.register_quietly(manifest, path)
        return path

    def build(self, summary: dict) -> tuple[Optional[Path], dict]:
        from trajtune import config as cfglib

        extra = dict(self.stage.lineage(self.cfg, summary) or {}) if self.stage.lineage else {}
        output = extra.pop("output", None) or _default_output(self.cfg, summary)
        if not output or str(output) == "-" or not Path(output).exists():
            return None, {}
        where = manifest_path(output)
        outputs = extra.pop("outputs", None) or [output, *_side_outputs(self.cfg)]
        code = int(summary.get("exit_code", 0) or 0)
        manifest: dict[str, Any] = {
            "schema": SCHEMA, "run_id": self.run_id, "stage": self.stage.name,
            "status": "finished" if code == 0 else "interrupted" if code == 130 else "failed",
            "command": self.command, "config": redact(cfglib.to_dict(self.cfg)),
            "started_at": self.started, "finished_at": _now(),
            "wall_time_s": round(time.perf_counter() - self.t0, 3), "peak_memory": peak_memory_mb(),
            "output": str(Path(output).resolve()),
            "inputs": self.inputs, "parents": self.parents,
            "outputs": describe_outputs(outputs, where.parent),
            "metrics": extra.pop("metrics", None) or headline(summary),
            "packages": package_versions(), "host": os.uname().nodename if hasattr(os, "uname") else None,
        }
        manifest.update(redact(extra))
        earlier = read_manifest(where) if where.is_file() else None
        if earlier is not None and earlier.get("run_id") != self.run_id:
            older = earlier.pop("earlier", []) or []
            manifest["earlier"] = ([earlier] + older)[:KEEP_EARLIER]
        return where, manifest

    def write(self, summary: dict) -> tuple[Optional[Path], dict]:
        from trajtune.jsonl import write_json

        where, manifest = self.build(summary)
        if where is None:
            return None, {}
        real = os.path.realpath(where)
        if any(os.path.realpath(i["path"]) == real for i in self.inputs):
            raise OSError(f"{where} is an input of this run")
        write_json(where, manifest)
        return where, manifest


def _default_output(cfg: Any, summary: dict) -> Optional[str]:
    for key in ("run_dir", "output", "out_dir"):
        v = summary.get(key) if isinstance(summary, dict) else None
        if isinstance(v, str) and v and v != "-":
            return v
    v = getattr(cfg, "output", None)
    return v if isinstance(v, str) and v else None


def _side_outputs(cfg: Any) -> list[str]:
    out = []
    for f in dataclasses.fields(cfg):
        if f.name != "output" and (f.metadata or {}).get("output"):
            v = getattr(cfg, f.name, None)
            if isinstance(v, str) and v and v != "-":
                out.append(v)
    return out


def _has_output(cfg: Any) -> bool:
    return any((f.metadata or {}).get("output") for f in dataclasses.fields(cfg))


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _now() -> str:
    """Local time with microseconds: runs started within one second still list in order."""
    import datetime

    return datetime.datetime.now().astimezone().isoformat(timespec="microseconds")


def _warn(msg: str) -> None:
    from rich.markup import escape

    from trajtune.console import err_console

    err_console.print(f"[bold yellow]Warning:[/] {escape(msg)}", markup=True, highlight=False, soft_wrap=True)
