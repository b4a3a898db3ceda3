"""Settings of the embedded PostgreSQL, sized to the machine it runs on.

PostgreSQL's defaults (shared_buffers 128MB, work_mem 4MB, maintenance_work_mem 64MB,
max_connections 100) fit a 1990s workstation. The embedded server gets values from the machine's
memory (the cgroup limit inside a container) and CPU count, written to `PGDATA/groundwork.conf`
(included from postgresql.conf) before each start; `ALTER SYSTEM` still overrides them. Any one
can be set with `GROUNDWORK_PG_<NAME>` (e.g. `GROUNDWORK_PG_SHARED_BUFFERS=2GB`,
`GROUNDWORK_PG_MAX_CONNECTIONS=300`), checked here so a typo fails at start, not in the server log.

The rules (RAM = memory available to this machine or container), meant for a server that shares
the machine with the web process, the Celery worker and Redis:

    shared_buffers        RAM / 8, 128MB .. 4GB     (a dedicated database server would use RAM / 4)
    effective_cache_size  RAM / 2                   (a planner hint: what the OS page cache holds)
    work_mem              RAM / 4 / max_connections, 4MB .. 64MB  (per sort or hash, per query)
    maintenance_work_mem  RAM / 16, 64MB .. 2GB     (index builds: an HNSW graph that fits in it is
                                                     built several times faster)
    max_parallel_maintenance_workers   CPUs / 2, 1 .. 4   (parallel HNSW and btree builds)
    max_connections       200  (web pools + worker + beat + admin sessions; see README)

The production equivalents for compose are in compose.yaml and README ("PostgreSQL settings").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

MB = 1024 * 1024
GB = 1024 * MB
CONFIG_FILE = "groundwork.conf"
INCLUDE_LINE = f"include_if_exists = '{CONFIG_FILE}'"
MAX_CONNECTIONS = 200

_MEMORY = re.compile(r"^\d+(kB|MB|GB|TB)?$")
_INTEGER = re.compile(r"^\d+$")
# Setting -> pattern of an accepted override. Only these can be set from the environment.
_OVERRIDABLE = {
    "max_connections": _INTEGER,
    "shared_buffers": _MEMORY,
    "effective_cache_size": _MEMORY,
    "work_mem": _MEMORY,
    "maintenance_work_mem": _MEMORY,
    "max_parallel_maintenance_workers": _INTEGER,
}


class TuningError(ValueError):
    """An override in the environment is not a value PostgreSQL accepts for that setting."""


def machine_memory() -> int:
    """Bytes of memory for this machine, or the container's cgroup limit when that is lower."""
    import psutil

    total = int(psutil.virtual_memory().total)
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and 0 < int(raw) < total:
            return int(raw)
    return total


def _mb(value: float, low: int, high: int) -> str:
    return f"{int(max(low, min(high, value)) // MB)}MB"


def tuned_settings(*, memory: int, cpus: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings for a machine with `memory` bytes and `cpus` CPUs, after environment overrides."""
    env = os.environ if environ is None else environ
    max_connections = MAX_CONNECTIONS
    raw_connections = env.get("GROUNDWORK_PG_MAX_CONNECTIONS", "").strip()
    if raw_connections:
        max_connections = int(_checked("max_connections", raw_connections))
    values = {
        "max_connections": str(max_connections),
        "shared_buffers": _mb(memory / 8, 128 * MB, 4 * GB),
        "effective_cache_size": _mb(memory / 2, 256 * MB, 1024 * GB),
        "work_mem": _mb(memory / 4 / max_connections, 4 * MB, 64 * MB),
        "maintenance_work_mem": _mb(memory / 16, 64 * MB, 2 * GB),
        "max_parallel_maintenance_workers": str(max(1, min(4, cpus // 2))),
    }
    for name in _OVERRIDABLE:
        raw = env.get(f"GROUNDWORK_PG_{name.upper()}", "").strip()
        if raw:
            values[name] = _checked(name, raw)
    return values


def _checked(name: str, raw: str) -> str:
    if not _OVERRIDABLE[name].match(raw) or (raw.startswith("0") and raw != "0"):
        unit = " (a number of bytes with kB, MB, GB or TB, e.g. 512MB)" if _OVERRIDABLE[name] is _MEMORY else ""
        raise TuningError(f"GROUNDWORK_PG_{name.upper()}={raw!r} is not a valid {name}{unit}.")
    return raw


def machine_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`tuned_settings` for this machine; raises `TuningError` for a bad override."""
    return tuned_settings(memory=machine_memory(), cpus=os.cpu_count() or 1, environ=environ)


def write_config(pgdata: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write `groundwork.conf` for this machine and include it from postgresql.conf; return the values.

    Takes effect at the next server start (shared_buffers and max_connections need a restart).
    """
    values = machine_settings(environ)
    lines = [
        "# Written by Groundwork (devtools/pg_tuning.py) at every start of the embedded server;",
        "# set GROUNDWORK_PG_<NAME> to change a value, or ALTER SYSTEM (postgresql.auto.conf wins).",
        *(f"{name} = '{value}'" for name, value in values.items()),
    ]
    (pgdata / CONFIG_FILE).write_text("\n".join(lines) + "\n")
    main_config = pgdata / "postgresql.conf"
    text = main_config.read_text()
    if INCLUDE_LINE not in text:
        main_config.write_text(text.rstrip("\n") + f"\n\n# Machine-sized settings (Groundwork)\n{INCLUDE_LINE}\n")
    return values
