"""Loaded by every Python process the hostile tests start (PYTHONPATH): any connection outside
127.0.0.1 / ::1 / a Unix socket fails loudly and is logged to $TRAJTUNE_NETLOG, so a test can
assert that a command opened no network connection it was not asked to open."""
import os
import socket

_LOG = os.environ.get("TRAJTUNE_NETLOG")
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _allowed(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    return host in ("127.0.0.1", "::1", "localhost")


def _note(address) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {address!r}\n")


def connect(self, address):
    if not _allowed(address):
        _note(address)
        raise OSError(f"netguard: connection to {address!r} refused by the test")
    return _connect(self, address)


def connect_ex(self, address):
    if not _allowed(address):
        _note(address)
        return 111
    return _connect_ex(self, address)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
