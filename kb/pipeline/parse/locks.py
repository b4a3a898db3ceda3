"""The lock that keeps forks and in-process parsing apart in one process.

A worker with a thread pool (the test worker runs `--pool threads`) forks parse children from
several threads while other threads parse small text in process. Two things go wrong unless they
take turns:

- spaCy's matrix code (blis) holds a mutex while a thread multiplies; a fork at that moment copies
  the mutex locked, and the child hangs forever in its first spaCy call (seen: a parse child stuck
  in `futex_wait` under `thinc/layers/maxout.py`, its document never finishing);
- filelock (imported by unstructured's dependencies) refuses an `os.fork` while another thread is
  inside its own fork.

So every fork, every in-process parse and every warm-up that runs spaCy holds `PARSER_LOCK`.
Re-entrant: a parse forks its page-range children while holding it. A Celery prefork pool process
runs one task at a time, so in production the lock is never contended.
"""

from __future__ import annotations

import threading

PARSER_LOCK = threading.RLock()
