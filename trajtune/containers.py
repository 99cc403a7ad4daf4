"""Parquet files and ``datasets`` folders as containers of rows, read and written in record batches.

Records are JSON objects; Arrow wants one type per column. The Arrow side follows one rule:

* **Free-form JSON is stored as JSON text**: the values of ``metadata``, ``tools``, ``arguments``
  (a tool call's, at any depth) and ``expected`` are written as JSON strings (``JSON_FIELDS``), so
  tool arguments of different shapes and types never meet in one inferred struct (Arrow would
  merge them, adding nulls or failing on an int beside a string). A string value stays as it is
  (an openai export's arguments are already JSON text). Reading, a string in one of those places
  that holds a JSON object or array is parsed back.
* **Everything else is typed**: strings, booleans, numbers, and lists of structs (messages,
  tool calls). The schema is the union over every record written (two passes over a spool file,
  one batch in memory at a time), so a field that only some records have is a nullable column.
* **Arrow cannot tell an absent key from a null**: reading, struct members and columns that are
  null are dropped (``{"role": "user", "content": "hi", "tool_calls": null}`` reads as
  ``{"role": "user", "content": "hi"}``); nulls inside JSON text are kept.

``open_rows(path)`` reads either container, ``write(container, jsonl, target)`` writes one from a
JSONL file, atomically (a temp file or folder beside the target, then a rename). Values Arrow has
and JSON has not are made JSON: bytes as UTF-8 text (base64 when not UTF-8), decimals as numbers,
dates as ISO text.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import orjson

from trajtune.errors import DataError, UsageError

JSON_FIELDS = frozenset({"metadata", "tools", "arguments", "expected"})
CONTAINERS = ("jsonl", "parquet", "dataset")
PARQUET_MAGIC = b"PAR1"
BATCH_ROWS = 1000          # rows per Arrow record batch, read or written
BATCH_BYTES = 32 << 20     # and at most this much JSON text per written batch


def sniff(path: str) -> str:
    """The container of an input: 'dataset' (a ``save_to_disk`` folder), 'parquet' (by its magic
    bytes, whatever its name) or 'jsonl' (JSON or JSONL text, the default)."""
    p = Path(path)
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            return "dataset"
        return "jsonl"  # a plain folder: open_input refuses it with its own message
    try:
        with open(p, "rb") as fh:
            return "parquet" if fh.read(4) == PARQUET_MAGIC else "jsonl"
    except OSError:
        return "jsonl"  # missing or unreadable: open_input says so


def output_container(container: str, out: str) -> str:
    """What ``-o OUT`` is written as: ``container`` unless 'auto', then parquet for ``*.parquet``,
    else jsonl. A dataset folder cannot go to stdout."""
    if container == "auto":
        container = "parquet" if out.endswith(".parquet") else "jsonl"
    if container == "dataset" and out == "-":
        raise UsageError("--container dataset writes a folder; it cannot go to stdout",
                         hint="name a folder with -o, or use --container parquet with -o -")
    return container


# --------------------------------------------------------------------------- reading

def _plain(v: Any) -> Any:
    """One Arrow value as JSON: nulls in structs dropped, JSON text in JSON_FIELDS parsed."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if x is None:
                continue
            if k in JSON_FIELDS and isinstance(x, str) and x[:1] in ("{", "["):
                try:
                    out[k] = orjson.loads(x)
                    continue
                except orjson.JSONDecodeError:
                    pass
            out[k] = _plain(x)
        return out
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)) and not isinstance(v, datetime.datetime):
        return str(v) if isinstance(v, datetime.timedelta) else v.isoformat()
    return v


def _batches(path: str, container: str, name: str) -> Iterator[Any]:
    import pyarrow as pa

    if container == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({_short(exc)})", path=name) from None
        yield from pf.iter_batches(batch_size=BATCH_ROWS)
        return
    import datasets

    datasets.disable_progress_bars()
    try:
        ds = datasets.load_from_disk(path, keep_in_memory=False)
    except (FileNotFoundError, ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"not a readable datasets folder ({_short(exc)})", path=name,
                        hint="it should hold what Dataset.save_to_disk wrote") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = ", ".join(ds)
        raise UsageError(f"{name} holds several splits ({splits}), not one dataset",
                         hint=f"pass one of them, e.g. {Path(path) / next(iter(ds), 'train')}")
    yield from ds.data.table.to_batches(max_chunksize=BATCH_ROWS)


def open_rows(path: str, container: str, name: str | None = None) -> Iterator[dict]:
    """Every row of a Parquet file or datasets folder as a JSON object, one batch in memory."""
    import pyarrow as pa

    name = name or path
    it = _batches(path, container, name)
    row = 0
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read the rows from here on ({_short(exc)})", path=name, line=row + 1) from None
        for r in batch.to_pylist():
            row += 1
            yield _plain(r)


def to_jsonl(path: str, container: str, out, name: str | None = None) -> int:
    """Write every row of a Parquet file or datasets folder to ``out`` as JSONL; the row count."""
    n = 0
    for r in open_rows(path, container, name):
        n += 1
        try:
            out.write(orjson.dumps(r) + b"\n")
        except orjson.JSONEncodeError as exc:
            raise DataError(f"row {n} has a value JSON cannot hold ({_short(exc)})", path=name or path) from None
    return n


# --------------------------------------------------------------------------- writing

def _arrow_value(v: Any, key: str | None = None) -> Any:
    if key in JSON_FIELDS and isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    if isinstance(v, dict):
        return {k: _arrow_value(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_arrow_value(x) for x in v]
    return v


def _chunks(jsonl: str) -> Iterator[list[dict]]:
    from trajtune.jsonl import iter_lines

    rows: list[dict] = []
    size = 0
    for _, _, raw, _ in iter_lines(jsonl):
        rows.append(_arrow_value(orjson.loads(raw)))
        size += len(raw)
        if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield rows
            rows, size = [], 0
    if rows:
        yield rows


def _table(rows: list[dict], schema: Any = None):
    """One batch as a table: the columns are every key of every row, in order of appearance
    (``Table.from_pylist`` would take the first row's keys only)."""
    import pyarrow as pa

    names = list(schema.names) if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in names}, schema=schema)


def _schema(jsonl: str):
    """The union of the inferred schemas of every batch (pass 1)."""
    import pyarrow as pa

    schema = None
    for i, rows in enumerate(_chunks(jsonl)):
        try:
            s = _table(rows).schema
            schema = s if schema is None else pa.unify_schemas([schema, s], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"records {i * BATCH_ROWS + 1}-{i * BATCH_ROWS + len(rows)} cannot share one Arrow "
                            f"schema with those before ({_short(exc)})", path=jsonl,
                            hint="write JSONL instead (-o OUT.jsonl)") from None
    return schema if schema is not None else pa.schema([])


def _write_parquet(jsonl: str, where: Any) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(jsonl)
    n = 0
    with pq.ParquetWriter(where, schema) as writer:
        for rows in _chunks(jsonl):
            try:
                writer.write_table(_table(rows, schema))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(f"records from {n + 1} do not fit the Arrow schema ({_short(exc)})", path=jsonl,
                                hint="write JSONL instead (-o OUT.jsonl)") from None
            n += len(rows)
    return n


def write(container: str, jsonl: str, target: str) -> int:
    """Write the records of file ``jsonl`` to ``target`` as a Parquet file ('-' = stdout) or a
    datasets ``save_to_disk`` folder, atomically; the record count."""
    import pyarrow as pa

    from trajtune.paths import temp_dir, temp_file

    if container == "parquet" and target == "-":
        out = pa.PythonFile(sys.stdout.buffer, mode="w")
        n = _write_parquet(jsonl, out)
        sys.stdout.buffer.flush()
        return n
    dest = Path(target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if container == "parquet":
        fd, tmp = temp_file(dest)
        os.close(fd)
        try:
            n = _write_parquet(jsonl, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return n
    import datasets

    datasets.disable_progress_bars()
    work = temp_dir(dest)  # parquet, the datasets cache and the new folder, all beside the target
    try:
        n = _write_parquet(jsonl, str(work / "rows.parquet"))
        ds = datasets.Dataset.from_parquet(str(work / "rows.parquet"), cache_dir=str(work / "cache"),
                                           keep_in_memory=False)
        ds.save_to_disk(str(work / "dataset"))
        del ds
        old = None
        if dest.exists():  # replace a previous output folder: move it aside, then remove it
            old = temp_dir(dest)
            os.replace(dest, old / "previous")
        os.replace(work / "dataset", dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return n


def _short(exc: BaseException, n: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= n else text[: n - 3] + "..."
