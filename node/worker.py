"""The site's warm worker: one long-lived process that answers the ClientApp's messages.

Flower 1.42 starts a fresh ``flwr-clientapp`` process for every message, and importing torch and
the networks costs each of them seconds of CPU, more than a round's training on small data.
``omopfed node start`` therefore also starts a worker that imports that stack once; each
ClientApp process hands it the message and its context over a Unix socket and passes on the
reply it gets back. The worker runs the same handler (settings, gate, Trainer, egress, audit), so
which process answered changes nothing a site sends; without a worker the ClientApp process
answers itself. The context's ``state`` is not sent back: the ClientApp keeps nothing in it.

Both sides exchange pickles (multiprocessing's ``Connection``), so nothing is unpickled before
both have proved they hold a random key: it lives in a file beside the socket, 0600 in a 0700
folder, and a key file that another user owns or others can read is refused (whoever could
write it could stand in for the worker and write the site's replies). The worker answers one
message at a time (training already uses the site's cores); a request that fails is logged and
dropped, and the worker goes on to the next.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

from flwr.app import Context, Message

log = logging.getLogger(__name__)

Handler = Callable[[Message, Context], Message]

#: What a ClientApp process sees when the worker is absent, stale or broken: it answers itself.
UNAVAILABLE = (OSError, EOFError, AuthenticationError)


def key_file(address: Path) -> Path:
    """The worker's key, beside its socket."""
    return address.with_name(address.name + ".key")


def call(address: Path, message: Message, context: Context) -> Message:
    """One request to the worker at ``address``: the message and context in, the reply out."""
    authkey = _read_private(key_file(address))
    with Client(str(address), family="AF_UNIX", authkey=authkey) as connection:
        connection.send((message, context))
        reply = connection.recv()
    if not isinstance(reply, Message):
        raise EOFError("the worker answered with something other than a message")
    return reply


def is_serving(address: Path) -> bool:
    """Whether a worker accepts connections at ``address``: a second ``node start`` of the same
    site shares it instead of replacing its socket and key under the running node's feet. A
    socket file left by a worker that died refuses the connection, and is replaced."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(address))
        except OSError:
            return False
    return True


def serve(address: Path, handler: Handler, *, ready: Callable[[], None] | None = None) -> None:
    """Answer requests at ``address`` with ``handler``, one at a time, until stopped.

    A fresh key is written for every start, so a ClientApp holding an old key is refused and
    answers itself. ``ready`` is called once the socket accepts connections.
    """
    _private_folder(address.parent)
    authkey = secrets.token_bytes(32)
    key = key_file(address)
    key.unlink(missing_ok=True)
    with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(authkey)
    address.unlink(missing_ok=True)
    try:
        with Listener(str(address), family="AF_UNIX", authkey=authkey) as listener:
            os.chmod(address, 0o600)
            if ready is not None:
                ready()
            while True:
                _answer(listener, handler)
    finally:
        if key.is_file() and key.read_bytes() == authkey:  # ours, not a successor's
            key.unlink()


def _answer(listener: Listener, handler: Handler) -> None:
    """Accept one connection and answer it; any failure is logged, never raised."""
    try:
        connection = listener.accept()
    except (EOFError, ConnectionError):  # closed before the handshake: a probe (is_serving)
        log.debug("a connection closed before its request")
        return
    except Exception:  # a wrong key: serve the next
        log.exception("worker request failed")
        return
    try:
        with connection:
            message, context = connection.recv()
            connection.send(handler(message, context))
    except Exception:  # a malformed request, a failing handler, a ClientApp gone: serve the next
        log.exception("worker request failed")


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (0700), or make sure this user owns it and close it to others."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to another user")
    folder.chmod(0o700)


def _read_private(path: Path) -> bytes:
    """The content of a regular file that this user owns and nobody else can read or write."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"{path} is not private to this user")
        return file.read()
