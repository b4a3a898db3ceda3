"""A query run on a second pooled connection, beside the current one, in the same snapshot.

Hybrid search runs its vector query here while the keyword query runs on the request's own
connection, so a hybrid search takes about as long as the slower of the two rather than their
sum (bench/retrieval.py: hybrid / vector p95). The second connection imports the first one's
exported snapshot (`pg_export_snapshot`), so both retrievers see the same release.

The second connection's transaction begins in the same round trip as the query (`start` hands
`run` the statements to send first), and it is rolled back after the result has been handed over.

It never waits for a connection: with no pool, no idle slot or a full pool, `start` returns
None and the caller runs the query itself. Waiting could deadlock a full pool whose every holder
waits for a second connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection
from psycopg import sql

T = TypeVar("T")
logger = logging.getLogger(__name__)

# At most this many queries run beside their requests at once per process; more run in turn.
_slots = threading.BoundedSemaphore(settings.GROUNDWORK_SEARCH_BESIDE_THREADS or 1)
_executor = ThreadPoolExecutor(
    max_workers=settings.GROUNDWORK_SEARCH_BESIDE_THREADS or 1, thread_name_prefix="search-beside"
)
_BEGIN_IN_SNAPSHOT = sql.SQL("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {};")
# How long to wait for the pool to open a new connection before running in turn instead.
CONNECT_TIMEOUT_S = 0.05


def repeatable_read(*, export: bool) -> str | None:
    """Make the current transaction (just begun, nothing read yet) REPEATABLE READ; with `export`,
    also return its snapshot id for `start`, in the same round trip."""
    with connection.cursor() as cursor:
        if not export:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return None
        # Two statements, no parameters: one round trip, one result each.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot()")
        cursor.cursor.nextset()
        return str(cursor.fetchone()[0])


def available() -> bool:
    """Whether a query could run beside this connection now (a pool, a slot and a connection free)."""
    pool = _pool()
    if pool is None or not settings.GROUNDWORK_SEARCH_BESIDE_THREADS:
        return False
    stats = pool.get_stats()
    if stats.get("requests_waiting", 0):  # requests queue for a connection: leave it to them
        return False
    return bool(stats.get("pool_available", 0) or stats.get("pool_size", 0) < pool.max_size)


def start(snapshot: str, run: Callable[[Any, str], T]) -> Future[T] | None:
    """Run `run(cursor, begin)` on a second connection in `snapshot`; None: run it yourself.

    `run` must send `begin` (the statements that open the transaction in the snapshot) ahead of
    its first query, in the same execute: one round trip instead of two.
    """
    pool = _pool()
    if pool is None or not available() or not _slots.acquire(blocking=False):
        return None
    try:
        conn = pool.getconn(timeout=CONNECT_TIMEOUT_S)
    except Exception:  # PoolTimeout, or the server refused a new connection: run in turn.
        _slots.release()
        return None
    result: Future[T] = Future()

    def beside() -> None:
        failure: BaseException | None = None
        try:
            with conn.cursor() as cursor:
                value = run(cursor, _BEGIN_IN_SNAPSHOT.format(sql.Literal(snapshot)).as_string(conn))
        except BaseException as exc:
            failure = exc
        else:
            result.set_result(value)  # before the rollback, which the caller need not wait for
        try:
            # The pool's connections are in autocommit: `begin` opened a transaction; it only read.
            conn.rollback()
        except Exception:
            logger.exception("Ending the transaction beside a search failed")
        finally:
            pool.putconn(conn)
            _slots.release()
        if failure is not None:  # after the connection and the slot are free again
            result.set_exception(failure)

    _executor.submit(beside)
    return result


def _pool() -> Any:
    # Django's psycopg_pool.ConnectionPool for the default database (None without OPTIONS["pool"]).
    return getattr(connection, "pool", None)
