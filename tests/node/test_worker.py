"""The site's warm worker: ClientApp processes hand it messages over an authenticated socket."""

from __future__ import annotations

import logging
import os
import socket
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from node import client_app, worker
from omopfed.protocol import ReplyError
from tests.federation.harness import instruction


def _start(address: Path, handler: worker.Handler) -> None:
    ready = threading.Event()
    threading.Thread(
        target=worker.serve, args=(address, handler), kwargs={"ready": ready.set}, daemon=True
    ).start()
    assert ready.wait(60)


def _context(settings: str, address: Path) -> Context:
    return Context(1, 7, {"settings": settings, "worker": str(address)}, RecordDict(), {})


def _message() -> Message:
    return instruction(RecordDict({"config": ConfigRecord({"protocol-version": 1})}))


def test_the_worker_is_private_and_survives_broken_requests(tmp_path: Path) -> None:
    address = tmp_path / "run" / "worker.sock"
    calls: list[str] = []

    def handler(message: Message, context: Context) -> Message:
        calls.append(message.metadata.message_type)
        if len(calls) == 1:
            raise RuntimeError("a handler that fails")
        return Message(RecordDict(), reply_to=message)

    _start(address, handler)
    modes = [p.stat().st_mode & 0o777 for p in (address.parent, address, worker.key_file(address))]
    assert modes == [0o700, 0o600, 0o600]
    with pytest.raises(EOFError):  # the handler failed: the connection is closed, not answered
        worker.call(address, _message(), _context("", address))
    key = worker.key_file(address).read_bytes()
    with Client(str(address), family="AF_UNIX", authkey=key) as connection:
        connection.send("not a message and a context")
    with (
        pytest.raises(AuthenticationError),
        Client(str(address), family="AF_UNIX", authkey=b"wrong") as connection,
    ):
        connection.send("hello")
    reply = worker.call(address, _message(), _context("", address))  # still serving
    assert reply.metadata.reply_to_message_id == "m-1" and calls == ["train", "train"]


def test_a_key_file_others_can_read_is_not_used(tmp_path: Path) -> None:
    address = tmp_path / "run" / "worker.sock"
    _start(address, lambda message, _: Message(RecordDict(), reply_to=message))
    os.chmod(worker.key_file(address), 0o644)
    with pytest.raises(PermissionError):
        worker.call(address, _message(), _context("", address))


def test_clientapps_use_the_worker_and_answer_themselves_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    address = tmp_path / "run" / "worker.sock"
    answered: list[Message] = []

    def handler(message: Message, context: Context) -> Message:
        answered.append(reply := client_app.handle_message(message, context))
        return reply

    _start(address, handler)
    missing = str(tmp_path / "no" / "site.toml")  # the same refusal from either process
    caplog.set_level(logging.WARNING, logger="node.client_app")
    reply = client_app.dispatch(_message(), _context(missing, address))
    assert reply.error.code == ReplyError.CONFIG and len(answered) == 1
    assert "worker unavailable" not in caplog.text
    reply = client_app.dispatch(_message(), _context(missing, tmp_path / "gone.sock"))
    assert reply.error.code == ReplyError.CONFIG and len(answered) == 1
    assert "worker unavailable" in caplog.text


def test_a_second_node_finds_the_running_worker_and_a_dead_one_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`node start` shares a live worker rather than replacing its socket and key under the
    running node (two nodes of one site); a socket left by a dead worker is not live."""
    address = tmp_path / "run" / "worker.sock"
    assert not worker.is_serving(address)
    caplog.set_level(logging.DEBUG, logger="node.worker")
    _start(address, lambda message, _: Message(RecordDict(), reply_to=message))
    key = worker.key_file(address).read_bytes()
    assert worker.is_serving(address) and worker.is_serving(address)
    reply = worker.call(address, _message(), _context("", address))  # probes changed nothing
    assert reply.metadata.reply_to_message_id == "m-1"
    assert worker.key_file(address).read_bytes() == key
    assert "worker request failed" not in caplog.text  # a probe is not a failed request
    stale = tmp_path / "stale" / "worker.sock"
    stale.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # bound, never listening: what a killed worker leaves
    assert not worker.is_serving(stale)
