"""Memory of the whole product as `make run` starts it, idle and under load: does it fit 4 GB?

    .venv/bin/python bench/footprint.py [--memory 4GB] [--chats 50] [FILE ...]

1. Starts this bench's own embedded PostgreSQL and Redis (`.data/footprint`), PostgreSQL sized by
   `devtools.pg_tuning` and the worker's pool by `devtools.runner.worker_concurrency` as for a
   machine of `--memory` (passed as GROUNDWORK_PG_* and GROUNDWORK_WORKER_CONCURRENCY, since this
   box has more), then `python -m devtools.runner`: migrate, demo seed, web, worker and beat,
   the very processes of `make run` (chat rate limits raised for the load below).
2. Waits until the web server answers and the worker's process tree is idle (pool warm), then
   samples the idle footprint for 10 s.
3. Load, all at once: uploads the files (default: the 5 longest PDFs of ../shared/data/pdf_parsing
   and the 10-Q PDFs) into a fresh knowledge base through `kb.services.document_upload` from this
   process, and runs `bench/widget_load.py` with `--chats` visitors against the web server.
4. Samples each component every 0.5 s until every document is READY or FAILED and the chats ended.

Memory is PSS (proportional set size): a page shared by several processes (the worker's forked pool
and parse children, PostgreSQL's shared buffers) is divided among them, so the sum over all
processes is what the machine must hold (page cache excluded). Per component: runner, web, worker
(main, pool processes and their parse children), beat, postgres (postmaster and backends), redis.
Reported: the idle total, the peak total and the components at that moment, each component's own
peak, and the largest single process (RSS, what a per-process limit sees). This process (the
uploader and its Django) is not counted. Results: bench/results/footprint.json, under `--label`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ingest import expand, pdf_pages, tree_cpu_s  # noqa: E402 - after the path set-up above

RESULTS = REPO / "bench" / "results" / "footprint.json"
DATA_DIR = REPO / ".data" / "footprint"
PORT = "18566"
SHARED = REPO.parent / "shared" / "data"
DEFAULT_PDFS = [str(SHARED / "pdf_parsing" / "**" / "*.pdf")]
SEC_10Q = str(SHARED / "docugami_sec10q" / "pdfs" / "*.pdf")
COMPONENTS = ("runner", "web", "worker", "beat", "postgres", "redis")
MB = 2**20


def parse_memory(text: str) -> int:
    units = {"MB": MB, "GB": 2**30}
    number, unit = text[:-2], text[-2:].upper()
    if unit not in units or not number.isdigit():
        raise argparse.ArgumentTypeError("give the memory as e.g. 4GB or 4096MB")
    return int(number) * units[unit]


def postgres_overrides(memory: int) -> dict[str, str]:
    """GROUNDWORK_PG_* values pg_tuning would choose on a machine with `memory` bytes and 2 CPUs."""
    from devtools.pg_tuning import _OVERRIDABLE, tuned_settings

    tuned = tuned_settings(memory=memory, cpus=2, environ={})
    return {f"GROUNDWORK_PG_{name.upper()}": value for name, value in tuned.items() if name in _OVERRIDABLE}


def component_of(cmdline: list[str]) -> str | None:
    text = " ".join(cmdline)
    if "uvicorn" in text:
        return "web"
    if "celery" in text and " beat" in text:
        return "beat"
    if "celery" in text and " worker" in text:
        return "worker"
    if "devtools.runner" in text:
        return "runner"
    return None


def sample(runner_pid: int) -> dict[str, Any]:
    """PSS per component (MB) and the largest single process's RSS (MB, with its component)."""
    import psutil

    from devtools.embedded_services import postgres_pid, redis_pid

    processes: list[tuple[str, psutil.Process]] = []
    with contextlib.suppress(psutil.Error):
        runner = psutil.Process(runner_pid)
        processes.append(("runner", runner))
        for child in runner.children():
            with contextlib.suppress(psutil.Error):
                name = component_of(child.cmdline()) or "runner"
                processes.append((name, child))
                processes.extend((name, grandchild) for grandchild in child.children(recursive=True))
    for name, pid in (("postgres", postgres_pid(DATA_DIR)), ("redis", redis_pid(DATA_DIR))):
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            processes.append((name, root))
            processes.extend((name, child) for child in root.children(recursive=True))
    pss = dict.fromkeys(COMPONENTS, 0.0)
    largest = (0.0, "")
    for name, proc in processes:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            pss[name] += info.pss / MB
            largest = max(largest, (info.rss / MB, f"{name} pid {proc.pid}"))
    return {"pss_mb": pss, "total_mb": sum(pss.values()), "largest_rss_mb": largest[0], "largest": largest[1]}


def wait_until_ready(runner: subprocess.Popen[bytes], timeout: float = 300.0) -> float:
    """Seconds until the web server answers and the worker's tree has been idle for 2 s."""
    import httpx
    import psutil

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if runner.poll() is not None:
            raise SystemExit(f"make run's runner exited with {runner.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{PORT}/", timeout=2.0)
            break
        time.sleep(0.5)
    worker = next(
        (c for c in psutil.Process(runner.pid).children() if component_of(c.cmdline()) == "worker"),
        None,
    )
    if worker is None:
        raise SystemExit("no worker process under the runner")
    idle_rounds, cpu = 0, tree_cpu_s(worker.pid)
    while idle_rounds < 2 and time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = tree_cpu_s(worker.pid)
        idle_rounds = idle_rounds + 1 if now - cpu < 0.05 else 0
        cpu = now
    return time.monotonic() - started


def upload(files: list[Path]) -> list[int]:
    from accounts.services import organization_create
    from kb.services import document_upload, knowledge_base_create

    org = organization_create(name=f"Footprint bench {datetime.now(UTC):%H%M%S}")
    kb = knowledge_base_create(organization=org, name="Reports", created_by=None)
    ids = []
    for path in files:
        with path.open("rb") as handle:
            result = document_upload(knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=None)
        ids.append(result.version.pk)
    return ids


def pending(version_ids: list[int]) -> int:
    from kb.models import DocumentStatus, DocumentVersion

    terminal = [DocumentStatus.READY, DocumentStatus.FAILED]
    return DocumentVersion.objects.filter(pk__in=version_ids).exclude(status__in=terminal).count()


def outcome(version_ids: list[int]) -> dict[str, Any]:
    from kb.models import DocumentVersion

    rows = DocumentVersion.objects.filter(pk__in=version_ids).values_list("original_filename", "status", "pages_total")
    return {name: {"status": status, "pages": pages} for name, status, pages in rows}


def default_files() -> list[Path]:
    pdfs = sorted(expand(DEFAULT_PDFS), key=pdf_pages, reverse=True)[:5]
    return pdfs + expand([SEC_10Q])


def _rounded(values: tuple[float, ...]) -> list[float]:
    return [round(value, 2) for value in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("files", nargs="*", help="files to upload (default: 5 longest shared PDFs + the 10-Q PDFs)")
    parser.add_argument("--memory", type=parse_memory, default=parse_memory("4GB"), help="size PostgreSQL for this")
    parser.add_argument("--chats", type=int, default=50, help="concurrent widget visitors during the ingestion")
    parser.add_argument("--label", default="", help="key of this run in the results file")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on the ingestion after this, seconds")
    args = parser.parse_args()

    files = expand(args.files) if args.files else default_files()
    os.environ["GROUNDWORK_DATA_DIR"] = str(DATA_DIR)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.update(postgres_overrides(args.memory))
    from devtools.runner import worker_concurrency

    # The pool processes `make run` would start on a machine of --memory (an override wins).
    concurrency = worker_concurrency(memory=args.memory, cpus=2, environ=os.environ)
    os.environ["GROUNDWORK_WORKER_CONCURRENCY"] = str(concurrency)
    os.environ.update(GROUNDWORK_WIDGET_RATE_PER_MINUTE="100000", GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE="100000")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devtools.embedded_services import start_unless_configured

    services = start_unless_configured(os.environ)
    env = dict(os.environ, PORT=PORT, PYTHONUNBUFFERED="1")
    log = (DATA_DIR / "runner.log").open("wb")
    load_before = os.getloadavg()
    runner = subprocess.Popen(
        [sys.executable, "-m", "devtools.runner"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        ready_s = wait_until_ready(runner)
        import django

        django.setup()
        print(f"ready after {ready_s:.1f} s; sampling idle for 10 s", file=sys.stderr)
        idle = []
        for _ in range(20):
            idle.append(sample(runner.pid))
            time.sleep(0.5)
        idle_total = max(s["total_mb"] for s in idle)

        from bench.widget_load import setup as widget_setup

        widget_key = widget_setup("http://shop.bench.test")
        version_ids = upload(files)
        chats = subprocess.Popen(
            [
                *(sys.executable, str(REPO / "bench" / "widget_load.py"), "--base-url", f"http://127.0.0.1:{PORT}"),
                *("--widget-key", widget_key, "-n", str(args.chats), "--no-save"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        print(f"{len(files)} files uploaded, {args.chats} chats started", file=sys.stderr)
        started = time.monotonic()
        peak: dict[str, Any] = {"total_mb": 0.0}
        own_peaks = dict.fromkeys(COMPONENTS, 0.0)
        largest = (0.0, "")
        while pending(version_ids) or chats.poll() is None:
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"unfinished after {args.timeout:.0f} s")
            now = sample(runner.pid)
            if now["total_mb"] > peak["total_mb"]:
                peak = now
            for name, value in now["pss_mb"].items():
                own_peaks[name] = max(own_peaks[name], value)
            largest = max(largest, (now["largest_rss_mb"], now["largest"]))
            time.sleep(0.5)
        load_s = time.monotonic() - started
        report = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python bench/footprint.py", *sys.argv[1:]]),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average": {"before": _rounded(load_before), "after": _rounded(os.getloadavg())},
            "postgres_sized_for_mb": args.memory // MB,
            "postgres_settings": postgres_overrides(args.memory),
            "worker_concurrency": concurrency,
            "ready_s": round(ready_s, 1),
            "idle_total_pss_mb": round(idle_total),
            "idle_pss_mb": {k: round(v) for k, v in idle[-1]["pss_mb"].items()},
            "load": {
                "files": len(files),
                "chats": args.chats,
                "seconds": round(load_s),
                "documents": outcome(version_ids),
            },
            "peak_total_pss_mb": round(peak["total_mb"]),
            "at_peak_pss_mb": {k: round(v) for k, v in peak["pss_mb"].items()},
            "component_peak_pss_mb": {k: round(v) for k, v in own_peaks.items()},
            "largest_process_rss_mb": round(largest[0]),
            "largest_process": largest[1],
        }
        print(json.dumps(report, indent=2))
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        saved[args.label or f"sized for {args.memory // 2**30} GB"] = report
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
    finally:
        runner.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.wait(timeout=30)
        if runner.poll() is None:
            runner.kill()
        services.stop()


if __name__ == "__main__":
    main()
