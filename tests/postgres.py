"""A real PostgreSQL server for the tests (a pytest plugin loaded by tests/conftest.py).

`postgres_server` (session) starts one with Debian's `initdb` and `pg_ctl` in a temporary
folder on a free loopback port, and stops it at the end; as root it runs them as the
`postgres` user, since both refuse root. `postgres_url` (per test) is a new empty database on
it, dropped after the test.

Set TEST_POSTGRESQL_URL to an administrator's URL (`postgresql://user:pass@host:port/postgres`)
to use a server you run instead. With neither, the tests fail and say how to install one:
the storage tests never skip PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.processes import alive, free_port

HOW_TO_INSTALL = (
    "PostgreSQL's server programs (initdb, pg_ctl) were not found. Install them with "
    "`apt-get install postgresql` (as root; scripts/bootstrap.sh does this), put their folder "
    "on PATH or in PG_BIN, or set TEST_POSTGRESQL_URL to an administrator's URL of a server."
)
START_SECONDS = 60
FOLDER_PREFIX = "bot-postgres-"
OWNER_FILE = "owner.pid"  # the test run that started the server


def _bin_dir() -> Path | None:
    candidates = [os.environ.get("PG_BIN", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    # Debian keeps them out of PATH, one folder per major version: newest first.
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [str(p) for p in debian]
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _stop_orphans(bin_dir: Path) -> None:
    """Stop and remove the servers of test runs that were killed before their teardown."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not alive(owner):
            PostgresServer("", folder, bin_dir).stop()


def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to the end from synchronous code, even inside a running loop."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class PostgresServer:
    """One PostgreSQL server: ours (started in a temp folder) or the one TEST_POSTGRESQL_URL
    names."""

    def __init__(self, admin_url: str, folder: Path | None = None, bin_dir: Path | None = None):
        self.admin_url = admin_url
        self.folder = folder
        self.bin_dir = bin_dir

    @classmethod
    def start(cls) -> PostgresServer:
        bin_dir = _bin_dir()
        if bin_dir is None:
            pytest.fail(HOW_TO_INSTALL, pytrace=False)
        _stop_orphans(bin_dir)
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        (folder / OWNER_FILE).write_text(str(os.getpid()))
        as_root = os.geteuid() == 0
        if as_root:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(folder)
                pytest.fail(
                    "Running as root, the tests start PostgreSQL as the `postgres` user, "
                    "which does not exist: `apt-get install postgresql` creates it.",
                    pytrace=False,
                )
            os.chown(folder, user.pw_uid, user.pw_gid)
        server = cls("", folder, bin_dir)
        try:
            server._run("initdb", "-D", server.data, "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
            for _attempt in range(3):
                port = free_port()
                if server._try_start(port):
                    server.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                    return server
            log = (folder / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"PostgreSQL did not start; its log ends with:\n{log}")
        except BaseException:
            server.stop()
            raise

    @property
    def data(self) -> str:
        assert self.folder is not None
        return str(self.folder / "data")

    def _command(self, program: str, *args: str) -> list[str]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, program: str, *args: str, check: bool = True) -> bool:
        proc = subprocess.run(
            self._command(program, *args), capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{program} failed: {proc.stdout}\n{proc.stderr}")
        return proc.returncode == 0

    def _try_start(self, port: int) -> bool:
        assert self.folder is not None
        options = f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "server.log")
        return self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w",
                         "-t", str(START_SECONDS), "start", check=False)  # fmt: skip

    def stop(self) -> None:
        if self.folder is None:
            return
        if Path(self.data, "postmaster.pid").exists():
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def url(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{database}"

    async def _admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        run_coroutine(self._admin(f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rpartition("/")[2]
        run_coroutine(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("TEST_POSTGRESQL_URL")
    if external:
        yield PostgresServer(external)
        return
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_postgres_database(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Makes new empty databases (returns their URLs); all are dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(postgres_server.create_database())
        return made[-1]

    try:
        yield make
    finally:
        for url in made:
            postgres_server.drop_database(url)


@pytest.fixture
def postgres_url(new_postgres_database: Callable[[], str]) -> str:
    """The URL of a new empty database, dropped after the test."""
    return new_postgres_database()
