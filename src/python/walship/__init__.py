"""walship inside a Python service: the replication engine as a SQLite loadable extension.

Three lines in a service that already uses ``sqlite3``::

    import walship
    handle = walship.replicate(conn, replica="s3://bucket/app")   # or config="litestream.yml"
    ...; conn.commit(); handle.wait_durable()                     # the commit is off the machine

The engine runs on its own threads inside this process (started once per process and
database) and ships the WAL in Litestream v0.3.13's format. ``walship.load(conn)`` only
loads the extension, for services that call its SQL functions themselves
(``walship_start``, ``walship_replicate``, ``walship_wait_durable``, ``walship_status``,
``walship_stop``).

Forking: the engine's threads do not survive ``fork()``. A process forked from one that
runs the engine (a gunicorn worker, a multiprocessing child) gets :class:`WalshipError`
from every call; start walship in one process after forking, or run the ``walship``
command beside the application.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sqlite3
import sys
import threading
from typing import Any, Optional

__all__ = ["WalshipError", "Handle", "extension_path", "load", "replicate"]

_LIB_NAMES = {"linux": "libwalship.so", "darwin": "libwalship.dylib", "win32": "walship.dll"}


class WalshipError(Exception):
    """What walship refused or what failed (the message says what to do)."""


def extension_path() -> str:
    """The extension's file: ``$WALSHIP_EXTENSION``, else the one inside this package."""
    env = os.environ.get("WALSHIP_EXTENSION")
    if env:
        return env
    name = _LIB_NAMES.get(sys.platform, "libwalship.so")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    if not os.path.exists(path):
        raise WalshipError(
            f"the walship extension is not in this package ({path}); this wheel has no "
            "extension for this platform: set WALSHIP_EXTENSION to a libwalship file"
        )
    return path


def load(conn: Any) -> None:
    """Loads the extension into ``conn`` (a ``sqlite3.Connection`` or a compatible one,
    e.g. ``pysqlite3``'s), the way ``sqlite_vec.load`` does."""
    if not hasattr(conn, "enable_load_extension"):
        raise WalshipError(
            "this Python's sqlite3 cannot load extensions (built without "
            "--enable-loadable-sqlite-extensions, as pyenv builds are by default); use a "
            "Python that can (Debian's python3, python.org builds) or pysqlite3-binary"
        )
    conn.enable_load_extension(True)
    try:
        conn.load_extension(extension_path())
    except Exception as e:  # the host's error type differs between sqlite3 modules
        raise WalshipError(str(e)) from e
    finally:
        conn.enable_load_extension(False)


def _main_db(conn: Any) -> str:
    for _, name, path in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            if not path:
                raise WalshipError("the connection's database is in memory; walship replicates files")
            return path
    raise WalshipError("the connection has no main database")


def _call(conn: Any, sql: str, *args: Any) -> Any:
    try:
        return conn.execute(sql, args).fetchone()[0]
    except Exception as e:
        msg = str(e)
        raise WalshipError(msg[len("walship: "):] if msg.startswith("walship: ") else msg) from e


class Handle:
    """walship replicating one database in this process (see :func:`replicate`)."""

    def __init__(self, conn: Any, db_path: str, dbs: list) -> None:
        self.db_path = db_path
        self.databases = dbs
        self._module = type(conn).__module__.split(".")[0]  # sqlite3 or pysqlite3
        self._connect = sys.modules[self._module].connect if self._module in sys.modules else sqlite3.connect
        self._local = threading.local()
        self._pid = os.getpid()
        self._stopped = False
        # A service that exits without stop() still gets the final sync, as the walship
        # command does on SIGTERM (not on SIGKILL or os._exit: what was acknowledged by
        # wait_durable is on the replica anyway; the rest ships at the next start).
        atexit.register(self._stop_at_exit)

    def _control(self) -> Any:
        """A connection of this thread to the database, with the extension loaded: the
        calls below do not wait on (or block) the application's connection."""
        if os.getpid() != self._pid:
            raise WalshipError(
                f"this process (pid {os.getpid()}) was forked from pid {self._pid}, which "
                "runs the walship engine; a forked worker cannot use it"
            )
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._connect(self.db_path, isolation_level=None)
            load(c)
            self._local.conn = c
        return c

    def wait_durable(self, timeout: float = 5.0) -> str:
        """Returns once every commit made before the call is on every replica (the
        position reached, ``generation/index:offset``); raises :class:`WalshipError` otherwise
        (a timeout: :meth:`status` then shows each replica's last error)."""
        return _call(self._control(), "SELECT walship_wait_durable(?)", int(timeout * 1000))

    async def wait_durable_async(self, timeout: float = 5.0) -> str:
        """:meth:`wait_durable` for asyncio services: waits on a worker thread, so the
        event loop goes on; concurrent waiters share one upload (group commit)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.wait_durable, timeout)

    def status(self) -> dict:
        """Positions, lag and last error of every database and replica of this process."""
        return json.loads(_call(self._control(), "SELECT walship_status()"))

    def stop(self) -> None:
        """Final sync, then stops walship for this database (and every database started
        with it). Raises :class:`WalshipError` if the final sync failed."""
        c = self._control()
        _call(c, "SELECT walship_stop()")
        self._stopped = True

    def _stop_at_exit(self) -> None:
        if self._stopped or os.getpid() != self._pid:
            return
        try:
            self.stop()
        except WalshipError as e:
            if "is not replicated by this process" not in str(e):  # stopped through SQL
                print(f"walship: final sync at exit failed: {e}", file=sys.stderr)


def replicate(conn: Any, config: Optional[str] = None, replica: Optional[str] = None) -> Handle:
    """Starts walship for ``conn``'s database: every database of ``config`` (a
    ``litestream.yml``), or this database to the one ``replica`` URL. Commits on ``conn``
    then wake walship at once, and walship runs the checkpoints."""
    if (config is None) == (replica is None):
        raise WalshipError("give either config= (a litestream.yml) or replica= (a replica URL)")
    load(conn)
    db = _main_db(conn)
    if config is not None:
        dbs = json.loads(_call(conn, "SELECT walship_start(?)", os.fspath(config)))
    else:
        dbs = json.loads(_call(conn, "SELECT walship_replicate(?)", replica))
    return Handle(conn, db, dbs)
