"""A throwaway PostgreSQL cluster for the test suite.

The machine has the server binaries (``pg_config --bindir``) but no running server. We initdb
a cluster in a temporary folder, start it on a free loopback port with a private socket
directory, hand out one fresh database per test, and stop it at the end. initdb refuses to run
as root (CI runs as root), so the server then runs as the ``postgres`` system user.

Set ``OMOPFED_TEST_PG_URL`` (a URL whose user may CREATE DATABASE) to use an existing server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb) found: install postgresql (Debian) "
        "or set OMOPFED_TEST_PG_URL to a server the tests may create databases on"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A started cluster (ours or the one in OMOPFED_TEST_PG_URL) that creates databases."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._run_as: list[str] = []
        external = os.environ.get("OMOPFED_TEST_PG_URL")
        if external:
            self.admin_url = make_url(external).set(drivername="postgresql+psycopg")
            return
        self._start()

    def _start(self) -> None:
        bindir = _bindir()
        self._dir = Path(tempfile.mkdtemp(prefix="omopfed-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
            self._run_as = ["runuser", "-u", "postgres", "--"]
        data, sock, log = self._dir / "data", self._dir, self._dir / "server.log"
        port = _free_port()
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        self.admin_url = make_url(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres")

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(self._run_as + command, capture_output=True, text=True)
        if result.returncode != 0:
            log = self._dir / "server.log" if self._dir else None
            detail = log.read_text() if log and log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(command[:1])} failed: {result.stderr.strip()} {detail[-2000:]}"
            )

    def _admin(self) -> psycopg.Connection:
        url = self.admin_url
        return psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=url.database,
            autocommit=True,
        )

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"omopfed_test_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self._dir is None:
            return
        subprocess.run(self._run_as + self._pg_ctl, capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
