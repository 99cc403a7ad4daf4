"""Where a command may read and write: one guard for every output, checked before any work.

``guard(inputs, files=..., dirs=...)`` resolves the real path (symlinks and hard links included)
of every input and every output and refuses, with a usage error (exit 2), any output that is an
input, lies inside an input folder, or (for an output folder, which ``--force`` may replace)
holds an input; it also checks that each output's parent is a folder and that the output is of
the right type, so a bad path fails in a second, not after the work.

``check_input(path)`` refuses inputs that never end: character devices (``/dev/zero``), FIFOs and
sockets.

Temp files and folders are created beside their target with the process umask's mode (not
mkstemp's 0600), carry the creating process id in their name, and ``sweep`` removes those left
by a process that is gone (a kill) on the next run.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable, Mapping, Union

from trajtune.errors import UsageError

PathLike = Union[str, os.PathLike]
Paths = Mapping[str, Union[PathLike, Iterable[PathLike], None]]

# a temp file whose owner cannot be told (no pid in its name) is swept after this long
STALE_SECONDS = 6 * 3600


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


def _items(paths: Paths | None) -> list[tuple[str, Path]]:
    out = []
    for label, value in (paths or {}).items():
        if value is None:
            continue
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        for v in values:
            if v is None or str(v) in ("", "-"):
                continue
            out.append((label, Path(v).expanduser()))
    return out


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _inside(child: Path, parent: Path) -> bool:
    c, p = _real(child), _real(parent)
    return c != p and p in c.parents


def _check_parent(label: str, p: Path) -> None:
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise UsageError(f"{label} {p}: {anc} is a file, not a folder", hint="choose an output path inside a folder")
    if anc.exists() and anc == p.parent and not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"{label} {p}: cannot write into {anc} (permission denied)")


def guard(inputs: Paths, files: Paths | None = None, dirs: Paths | None = None,
          replaced: Paths | None = None) -> None:
    """Refuse (UsageError, exit 2) outputs that would overwrite, delete or lie inside an input.

    ``inputs``, ``files`` (output files), ``dirs`` (output folders written into) and ``replaced``
    (output folders a run may delete or replace as a whole, e.g. with ``--force``: no input may
    lie inside them) map a label used in the message (``"IN"``, ``"--rejects"``, ...) to a path
    or a list of paths; ``None`` and ``-`` entries are ignored.
    """
    ins = [(lab, p) for lab, p in _items(inputs) if p.exists()]
    outs = [(lab, p, 0) for lab, p in _items(files)] + [(lab, p, 1) for lab, p in _items(dirs)] \
        + [(lab, p, 2) for lab, p in _items(replaced)]
    for label, out, is_dir in outs:
        if is_dir:
            if out.exists() and not out.is_dir():
                raise UsageError(f"{label} {out} is a file, not a folder", hint="choose a folder path")
        elif out.is_dir():
            raise UsageError(f"{label} {out} is a folder, not a file", hint="name a file inside it")
        elif out.exists() and not out.is_file():
            raise UsageError(f"{label} {out} is not a regular file", hint="write to a regular file path")
        _check_parent(label, out)
        for in_label, inp in ins:
            if _same(out, inp):
                raise UsageError(f"{label} {out} is the input {in_label} {inp}: refusing to overwrite an input",
                                 hint="write to another path")
            if inp.is_dir() and _inside(out, inp):
                raise UsageError(f"{label} {out} lies inside the input {in_label} {inp}: refusing to write into an input",
                                 hint="write outside the input folder")
            if is_dir == 2 and _inside(inp, out):
                raise UsageError(f"the input {in_label} {inp} lies inside {label} {out}, which this command writes "
                                 "(and --force replaces)", hint="choose an output folder that holds no input")
    for i, (la, a, _) in enumerate(outs):
        for lb, b, _ in outs[i + 1:]:
            if _same(a, b):
                raise UsageError(f"{la} and {lb} are the same path ({a})", hint="give each output its own path")


def check_input(path: PathLike) -> None:
    """Refuse an input that never ends or cannot be read as a file ('-' is stdin and allowed)."""
    if str(path) == "-":
        return
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read ({exc.strerror})") from None
    mode = st.st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        what = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a socket")
        raise UsageError(f"{p} is {what}, not a file", hint="pass a regular file, or '-' to read stdin")


# --------------------------------------------------------------------------- temp files

def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _tmp_pattern(name: str) -> re.Pattern:
    n = re.escape(name)  # ours: .NAME.PID.RANDOM.tmp[-d]; older releases: .NAME.RANDOM.tmp, .NAME.tmp-RANDOM
    return re.compile(rf"^\.{n}\.(?:(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{{6,}}\.tmp(?:-d)?|tmp-[A-Za-z0-9_]+)$")


def alive(pid: int) -> bool:
    """Is process ``pid`` running (ours or another user's)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(target: PathLike) -> int:
    """Remove temp files/folders of ``target`` left by a dead process (or older than a few hours)."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return 0
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    pattern = _tmp_pattern(target.name)
    for e in entries:
        m = pattern.match(e.name)
        if not m:
            continue
        pid = m.group("pid")
        try:
            old = time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_SECONDS
        except OSError:
            continue
        if (pid is not None and int(pid) != os.getpid() and not alive(int(pid))) or (pid is None and old):
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path, ignore_errors=True)
                else:
                    os.unlink(e.path)
                removed += 1
            except OSError:
                pass
    return removed


def temp_file(target: PathLike) -> tuple[int, str]:
    """A new temp file beside ``target`` (umask mode): (fd, path). Stale ones are swept first."""
    target = Path(target)
    sweep(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, file_mode())
    except OSError:
        pass
    return fd, tmp


def temp_dir(target: PathLike) -> Path:
    """A new temp folder beside ``target`` (umask mode). Stale ones are swept first."""
    target = Path(target)
    sweep(target)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp-d", dir=target.parent))
    try:
        os.chmod(tmp, dir_mode())
    except OSError:
        pass
    return tmp
