"""Worker start-up as a newcomer meets it: the worker `make run` starts, and a first small upload.

    .venv/bin/python bench/worker_start.py [--runs 3] [--label default] [--demo]

Each run starts the Celery worker with the exact command of `devtools.runner` (plus its own queue,
via `GROUNDWORK_CELERY_QUEUE`) against the bench's own embedded PostgreSQL and Redis
(`.data/bench-ingest`, shared with bench/ingest.py), and measures:

- `ping_s`: start → the worker answers a ping (to ~0.2 s);
- `first_text_searchable_s`: a small text document uploaded the moment the worker answers → found
  by search (`searchable_at`: by its words while the embedding model still loads, kb.pipeline.warm);
- `first_text_ready_s`: the same document → READY (it waits for the embedding model);
- `warm_s`: start → the whole process tree idle (the pool has loaded everything);
- `warm_text_ready_s`: another small text uploaded once the pool is warm → READY (the newcomer of
  `make run`, who signs in and uploads after the worker has loaded everything).

With `--demo`, the demo's three documents (kb/demo_documents, what `make run` seeds) are uploaded
before the worker starts, as on a fresh `make run`, and the run also reports `demo_searchable_s`
and `demo_ready_s`: worker start → all three found by search / all three READY, and
`demo_first_searchable_s`: → the first found (the worker's two pool processes take two at once;
the third, and then the first text, queue behind them).

Figures are wall-clock on a shared machine; the load average before and after is saved. Results go
to bench/results/worker_start.json under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import (  # noqa: E402 - after the path set-up above
    DATA_DIR,
    ORG_NAME,
    clear_previous_runs,
    setup_django,
    stop_worker,
    tree_cpu_s,
)

RESULTS = REPO / "bench" / "results" / "worker_start.json"
TEXT = """Opening hours

The shop in Utrecht is open Monday to Saturday from 9:00 to 18:00. On Sundays it is closed.
Returns are accepted at the counter within 30 days with the receipt.
"""


def worker_command(extra: list[str]) -> list[str]:
    """The worker command of `make run` (devtools.runner), verbatim, plus `extra`."""
    from devtools.runner import default_commands

    (worker,) = [c for c in default_commands(data_dir=DATA_DIR, host="127.0.0.1", port="0") if c.name == "worker"]
    return [*worker.argv, *extra]


def one_run(command: list[str], number: int, *, demo: bool = False) -> dict[str, float | None]:
    from django.utils import timezone

    from accounts.services import organization_create
    from config.celery import app
    from kb.services import knowledge_base_create

    kb = knowledge_base_create(organization=organization_create(name=ORG_NAME), name=f"start {number}", created_by=None)
    demo_versions = _upload_demo_documents(kb) if demo else []
    started_at = timezone.now()
    started = time.monotonic()
    worker = subprocess.Popen(
        command, cwd=REPO, env=dict(os.environ), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not app.control.ping(timeout=0.2):
            if worker.poll() is not None:
                raise SystemExit(f"The worker exited with code {worker.returncode}")
            if time.monotonic() - started > 180:
                raise SystemExit("The worker did not answer a ping within 180 s")
        ping_s = time.monotonic() - started
        searchable_s, ready_s = _text_found_and_ready_s(kb, f"Opening hours {number}")
        idle_rounds, cpu = 0, tree_cpu_s(worker.pid)
        while idle_rounds < 2 and time.monotonic() - started < 180:
            time.sleep(0.5)
            now = tree_cpu_s(worker.pid)
            idle_rounds = idle_rounds + 1 if now - cpu < 0.05 else 0
            cpu = now
        warm_s = time.monotonic() - started - 1.0  # minus the idle second that proved it
        _, warm_ready_s = _text_found_and_ready_s(kb, f"Opening hours {number}, later")
    finally:
        stop_worker(worker)
    demo_figures = _demo_figures(demo_versions, started_at) if demo else {}
    return {
        **demo_figures,
        "ping_s": round(ping_s, 2),
        "first_text_searchable_s": _round(searchable_s),
        "first_text_ready_s": _round(ready_s),
        "warm_s": round(warm_s, 2),
        "warm_text_ready_s": _round(warm_ready_s),
    }


def _upload_demo_documents(kb: Any) -> list[int]:
    """The demo's documents, uploaded and queued as `make run` seeds them (before the worker runs)."""
    from kb.demo import DEMO_DOCUMENTS
    from kb.services import document_upload

    versions = []
    for path in sorted(DEMO_DOCUMENTS.iterdir()):
        with path.open("rb") as handle:
            uploaded = document_upload(knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=None)
        versions.append(uploaded.version.pk)
    return versions


def _demo_figures(version_ids: list[int], started_at: Any) -> dict[str, float | None]:
    """Worker start → the first and the last demo document found by search, and → the last one
    READY (from the rows' own timestamps: the run polled the first text meanwhile). None: one
    never got there."""
    from kb.models import DocumentStatus, DocumentVersion

    rows = [
        dict(row)
        for row in DocumentVersion.objects.filter(pk__in=version_ids).values("status", "searchable_at", "finished_at")
    ]

    if any(r["status"] != DocumentStatus.READY for r in rows):
        return {"demo_first_searchable_s": None, "demo_searchable_s": None, "demo_ready_s": None}
    searchable = [(r["searchable_at"] - started_at).total_seconds() for r in rows]
    ready = [(r["finished_at"] - started_at).total_seconds() for r in rows]
    return {
        "demo_first_searchable_s": round(min(searchable), 2),
        "demo_searchable_s": round(max(searchable), 2),
        "demo_ready_s": round(max(ready), 2),
    }


def _text_found_and_ready_s(kb: Any, title: str) -> tuple[float | None, float | None]:
    """Upload a small text now; seconds until search finds it and until it is READY (None: it
    failed or took over 180 s)."""
    from kb.models import DocumentStatus, DocumentVersion
    from kb.services import document_create_text

    uploaded = time.monotonic()
    created = document_create_text(knowledge_base=kb, title=title, text=TEXT, created_by=None)
    searchable_s = None
    while time.monotonic() - uploaded < 180:
        status, searchable_at = (
            DocumentVersion.objects.filter(pk=created.version.pk).values_list("status", "searchable_at").get()
        )
        if searchable_at is not None and searchable_s is None:
            searchable_s = time.monotonic() - uploaded
        if status in (DocumentStatus.READY, DocumentStatus.FAILED):
            return (searchable_s, time.monotonic() - uploaded) if status == DocumentStatus.READY else (None, None)
        time.sleep(0.05)
    return searchable_s, None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--label", default="default")
    parser.add_argument("--extra", default="", help="extra worker arguments, e.g. '--without-mingle'")
    parser.add_argument("--demo", action="store_true", help="queue the demo's documents before the worker starts")
    args = parser.parse_args()

    setup_django(DATA_DIR)
    clear_previous_runs()
    command = worker_command(args.extra.split())
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = []
    for number in range(args.runs):
        runs.append(one_run(command, number, demo=args.demo))
        print(f"run {number + 1}: {runs[-1]}", file=sys.stderr)
        time.sleep(2)
    clear_previous_runs()

    def median(key: str) -> float | None:
        values = [value for r in runs if (value := r[key]) is not None]
        return round(statistics.median(values), 2) if values else None

    report: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(Path(part).name if part == sys.executable else part for part in command),
        "cpus": os.cpu_count(),
        "demo_documents_queued_first": args.demo,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "runs": runs,
        "median": {key: median(key) for key in runs[0]},
    }
    print(json.dumps(report, indent=2))
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[args.label] = report
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
