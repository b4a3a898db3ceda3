"""Statements run on a second pooled connection, beside the current one, in the same snapshot.

Hybrid search sends its vector query here and runs the keyword query on the request's own
connection meanwhile, so a hybrid search takes about as long as the slower of the two rather than
their sum (bench/retrieval.py: hybrid / vector p95). The second connection imports the first
one's exported snapshot (`pg_export_snapshot`), so both retrievers see the same release.

The connection is in pipeline mode: `Beside.send` puts a statement on the wire and returns at
once, and the statement's rows are read later, when its cursor is fetched. No thread waits on
it: a thread handed the query began it up to ~4 ms (p95) after the request asked, on a busy
2-core machine, more than the vector query of a small knowledge base takes.

It never waits for a connection: with no pool, no idle slot or a full pool, `connect` returns None
and the caller runs its statements itself. Waiting could deadlock a full pool whose every holder
waits for a second connection.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.db import connection
from psycopg import sql

logger = logging.getLogger(__name__)

# At most this many searches hold a second connection at once per process; more run in turn.
_slots = threading.BoundedSemaphore(settings.GROUNDWORK_SEARCH_BESIDE_THREADS or 1)
_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
# How long to wait for the pool to open a new connection before running in turn instead.
CONNECT_TIMEOUT_S = 0.05


# A search's transaction: one snapshot for every statement, and generic plans for the statements
# it prepares (match ranking's, kb.match_ranking: planned anew each time, planning was a third of it).
_SEARCH_TRANSACTION = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET LOCAL plan_cache_mode = force_generic_plan"


def repeatable_read(*, export: bool) -> str | None:
    """Make the current transaction (just begun, nothing read yet) a search's: REPEATABLE READ,
    generic plans for prepared statements; with `export`, also return its snapshot id for
    `connect`. One round trip either way."""
    with connection.cursor() as cursor:
        if not export:
            cursor.execute(_SEARCH_TRANSACTION)
            return None
        # Statements without parameters: one round trip, one result each.
        cursor.execute(f"{_SEARCH_TRANSACTION}; SELECT pg_export_snapshot()")
        while cursor.cursor.nextset():
            pass
        return str(cursor.fetchone()[0])


def available() -> bool:
    """Whether statements could run beside this connection now (a pool, a slot and a connection free)."""
    pool = _pool()
    if pool is None or not settings.GROUNDWORK_SEARCH_BESIDE_THREADS:
        return False
    stats = pool.get_stats()
    if stats.get("requests_waiting", 0):  # requests queue for a connection: leave it to them
        return False
    return bool(stats.get("pool_available", 0) or stats.get("pool_size", 0) < pool.max_size)


class Beside:
    """A pooled connection reading `snapshot`, its statements sent without waiting for results.

    `send` may be called from another thread than the one reading the rows (hybrid search sends
    its vector query from the thread that embedded the question, the moment the vector exists),
    as long as each cursor is read after its `send` returned. `close` ends the transaction and
    gives the connection back; a connection that failed is discarded, not reused.
    """

    def __init__(self, pool: Any, conn: Any, snapshot: str) -> None:
        self._pool = pool
        self._conn = conn
        self._stack = ExitStack()
        self._failed = False
        self._stack.enter_context(conn.pipeline())
        # Sent now, run while the caller prepares its own query. The caller's transaction keeps the
        # snapshot until it ends, after `close`, or until a statement of its own fails first.
        self._conn.cursor().execute(_BEGIN)
        self._conn.cursor().execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))

    @property
    def backend_pid(self) -> int:
        return int(self._conn.info.backend_pid)

    def send(self, query: str, params: Any = None) -> Any:
        """Send one statement (no `;`-separated lists in pipeline mode); its rows: the returned
        cursor's fetch methods, which wait for them."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(query, params)
        except BaseException:
            self._failed = True
            raise
        return cursor

    def end(self) -> None:
        """Send the end of the transaction after the statements sent so far: its result arrives
        with theirs, so `close` then has nothing left to wait for."""
        self.send("ROLLBACK")

    def failed(self) -> None:
        """Mark the connection as not to be reused (a statement's rows could not be read)."""
        self._failed = True

    def close(self) -> None:
        try:
            self._stack.close()  # leaving pipeline mode reads every result still due
            self._conn.rollback()  # the transaction only read (nothing to send after `end`)
        except Exception as exc:
            # E.g. the search failed first and its snapshot ended before this connection read it.
            self._failed = True
            logger.warning("Ending the transaction beside a search failed: %s", exc)
        finally:
            if self._failed and not self._conn.closed:
                self._conn.close()  # the pool replaces a closed connection
            self._pool.putconn(self._conn)
            _slots.release()


def connect(snapshot: str) -> Beside | None:
    """A second connection reading `snapshot`, or None: run the statements yourself."""
    pool = _pool()
    if pool is None or not available() or not _slots.acquire(blocking=False):
        return None
    try:
        conn = pool.getconn(timeout=CONNECT_TIMEOUT_S)
    except Exception:  # PoolTimeout, or the server refused a new connection: run in turn.
        _slots.release()
        return None
    try:
        return Beside(pool, conn, snapshot)
    except Exception:
        logger.exception("Opening a connection beside a search failed")
        conn.close()
        pool.putconn(conn)
        _slots.release()
        return None


def _pool() -> Any:
    # Django's psycopg_pool.ConnectionPool for the default database (None without OPTIONS["pool"]).
    return getattr(connection, "pool", None)
