"""Ingestion throughput through the real worker, beside the raw speed of the parser and the embedder.

Not a test: run it by hand after changing the pipeline, and read the table.

    .venv/bin/python bench/ingest.py --label sec10q '/work/shared/data/docugami_sec10q/pdfs/*.pdf'
    .venv/bin/python bench/ingest.py --label pdf_top5 --top-pages 5 '/work/shared/data/pdf_parsing/**/*.pdf'

What it does, in order:

1. Starts its own embedded PostgreSQL and Redis under `.data/bench-ingest` (never the app's or the
   tests'), migrates, and removes what an earlier run left there.
2. Starts a real Celery worker subprocess (`celery -A config worker -P prefork -c N`) on its own
   queue, waits until it answers a ping and its pool is warm (start-up is reported apart). One
   setting differs from production unless `--proc-alive-timeout 0`: replacement pool processes get
   120 s, not Celery's 4 s, to start (a bug; see `start_worker`).
3. Uploads every file through `kb.services.document_upload` (the same call as the API, enqueueing
   on commit) into a fresh knowledge base, so no vector is re-used from an earlier document, and
   polls the rows until each is READY or FAILED. Per document: queue wait, parse (claim → the row
   turns EMBEDDING: parsing, chunking and storing chunks), embed (→ READY: embedding, keyword
   vectors, publish), upload → READY, and upload → found by search (`searchable_at`: before READY
   when a long new document went live by its words first). Pages and chunks are read from the rows.
4. Stops the worker, then in this process times the raw work on the same files:
   `unstructured.partition.auto.partition(filename=..., strategy="fast")` and embedding the very
   texts the pipeline embedded (read back from the chunk rows) with
   `inference.embedder.get_local_embedder().embed(...)` in batches of 32. Nothing else: no file-type
   checks, cleaning, chunking, database, broker or LiteLLM.
5. Reports the ratio pipeline seconds / raw seconds (per document: claim → READY against raw
   partition + embed; in total: first upload → last READY against the sum of raw times, so with
   concurrency > 1 the total ratio also shows what parallel documents gain), CPU seconds of both,
   and writes bench/results/ingest_<label>.json. Stops the worker and both services at the end.

Timings are wall-clock on a shared machine: the load average at start and end is recorded, and CPU
seconds are given as the load-independent figure.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere, importing the project's modules

DATA_DIR = REPO / ".data" / "bench-ingest"
RESULTS_DIR = REPO / "bench" / "results"
QUEUE = "groundwork-bench-ingest"
ORG_NAME = "Ingest benchmark"
EMBED_BATCH = 32
POLL_S = 0.25


@dataclass
class DocRun:
    """One file's trip through the worker, and the raw work on the same file."""

    file: str
    size_bytes: int
    version_id: int = 0
    status: str = ""
    error_code: str = ""
    error: str = ""
    file_type: str = ""
    pages: int | None = None  # as stored on the row
    pages_from_chunks: int | None = None  # highest page a chunk cites, where the row has none
    chunks: int = 0
    uploaded_at: float = 0.0  # epoch seconds
    started_at: float | None = None
    embedding_seen_at: float | None = None  # first poll that saw EMBEDDING (±POLL_S)
    finished_at: float | None = None
    searchable_at: float | None = None  # search first found it (by its words, for a long new document)
    raw_partition_s: float | None = None
    raw_partition_cpu_s: float | None = None
    raw_elements: int | None = None
    raw_partition_error: str = ""
    raw_embed_s: float | None = None
    raw_embed_cpu_s: float | None = None
    embedding_texts: list[str] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return Path(self.file).name

    @property
    def page_figure(self) -> int | None:
        return self.pages if self.pages is not None else self.pages_from_chunks

    @property
    def queue_s(self) -> float | None:
        return None if self.started_at is None else self.started_at - self.uploaded_at

    @property
    def parse_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.embedding_seen_at or self.finished_at
        return None if end is None else end - self.started_at

    @property
    def embed_s(self) -> float | None:
        if self.embedding_seen_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.embedding_seen_at

    @property
    def pipeline_s(self) -> float | None:
        """Claim → terminal: the worker's own time on this document."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def upload_to_ready_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.uploaded_at

    @property
    def upload_to_searchable_s(self) -> float | None:
        """Upload → search finds it: before READY when it went live by its words first."""
        return None if self.searchable_at is None else self.searchable_at - self.uploaded_at

    @property
    def raw_s(self) -> float | None:
        if self.raw_partition_s is None:
            return None
        return self.raw_partition_s + (self.raw_embed_s or 0.0)

    @property
    def ratio(self) -> float | None:
        if self.status != "ready" or self.pipeline_s is None or not self.raw_s:
            return None
        return self.pipeline_s / self.raw_s


# --------------------------------------------------------------------------------------------
# Files.


def expand(patterns: list[str]) -> list[Path]:
    files: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise SystemExit(f"No file matches {pattern!r}")
        for match in matches:
            path = Path(match).resolve()
            if not path.is_file():
                raise SystemExit(f"Not a file: {match}")
            files[path] = None
    return list(files)


def pdf_pages(path: Path) -> int:
    """Page count by pypdf (0 when it cannot tell): used only to pick the longest files."""
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return 0
        return len(reader.pages)
    except Exception:
        return 0


# --------------------------------------------------------------------------------------------
# Services, worker and process accounting.


def setup_django(data_dir: Path) -> None:
    # The bench's own embedded services: never a DATABASE_URL/REDIS_URL inherited from the shell.
    os.environ["GROUNDWORK_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["GROUNDWORK_CELERY_QUEUE"] = QUEUE
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers (stopped at the end of main)
    import django

    import kb.pipeline.parse  # noqa: F401  (configures unstructured's environment before anything imports it)

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def clear_previous_runs() -> None:
    from accounts.models import Organization
    from config.celery import app
    from kb.models import Document
    from kb.services import document_delete

    app.control.purge()
    for org in Organization.objects.filter(name=ORG_NAME):
        for document in Document.objects.filter(organization=org):
            document_delete(document=document)
        org.delete()


# Started through `app.worker_main` rather than the `celery` command so that one setting can be
# overridden without touching the project: `worker_proc_alive_timeout` (see `start_worker`).
WORKER_BOOT: Final = """
import sys
from config.celery import app
if float(sys.argv[1]) > 0:
    app.conf.worker_proc_alive_timeout = float(sys.argv[1])
app.worker_main(sys.argv[2:])
"""


def start_worker(
    concurrency: int, log_path: Path, *, embed_threads: int | None, proc_alive_timeout: float
) -> subprocess.Popen[bytes]:
    """`celery -A config worker -P prefork -c N` on the bench's queue, in its own session.

    `proc_alive_timeout` > 0 overrides Celery's 4 s limit for a *replacement* pool process to report
    UP: `kb.tasks._warm_up_child` imports LiteLLM and loads the ONNX model in `worker_process_init`,
    which takes 5-6 CPU seconds, so on two cores every process started to replace a recycled one
    (`CELERY_WORKER_MAX_MEMORY_PER_CHILD`) is SIGKILLed, again and again, and the queue stalls.
    0 keeps Celery's default, to reproduce that.
    """
    log_path.unlink(missing_ok=True)  # one run per log, so its errors are this run's
    env = dict(os.environ)  # DATABASE_URL and REDIS_URL now point at the bench's services
    if embed_threads is not None:
        env["GROUNDWORK_EMBED_THREADS"] = str(embed_threads)
    command = [
        sys.executable, "-c", WORKER_BOOT, str(proc_alive_timeout),
        "worker", "-P", "prefork", "-c", str(concurrency), "-Q", QUEUE, "-n", f"bench-ingest@{socket.gethostname()}",
        "--without-mingle", "--without-gossip", "-l", "warning", "--logfile", str(log_path),
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_worker_ready(process: subprocess.Popen[bytes], timeout: float = 180.0) -> tuple[float, float]:
    """Seconds until the worker answers a ping, and until its pool is warm as well.

    The parent answers pings before its pool processes have finished `worker_process_init` (they
    load LiteLLM and the ONNX model: several seconds each on two cores) and tasks wait for them;
    the pool counts as warm once the whole process tree has been idle for a second.
    """
    from config.celery import app

    started = time.monotonic()
    ping_s: float | None = None
    while ping_s is None:
        if process.poll() is not None:
            raise SystemExit(f"The worker exited with code {process.returncode}; see {DATA_DIR / 'worker.log'}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"The worker did not answer a ping within {timeout:.0f}s")
        # A short reply window and no pause between tries: the figure is accurate to ~0.2 s (a
        # 1 s window plus a 0.5 s pause made it up to 1.5 s late).
        if app.control.ping(timeout=0.2):
            ping_s = time.monotonic() - started
    idle_rounds = 0
    cpu = tree_cpu_s(process.pid)
    while idle_rounds < 2 and time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = tree_cpu_s(process.pid)
        idle_rounds = idle_rounds + 1 if now - cpu < 0.05 else 0
        cpu = now
    return ping_s, time.monotonic() - started


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)  # warm shutdown: it is idle by now
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live children, and the children it has already reaped."""
    import psutil

    try:
        parent = psutil.Process(pid)
        times = parent.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                # children_*: what a pool process's own children used (the parse child per document).
                total += child_times.user + child_times.system
                total += child_times.children_user + child_times.children_system
    except psutil.Error:
        return 0.0
    return total


#: A process's role from its generation under the worker's main process.
_ROLES = {0: "worker_main", 1: "pool_process", 2: "parse_child", 3: "page_range_reader"}


def _role(depth: int) -> str:
    return _ROLES.get(depth, "other")


def _process_tree(pid: int) -> list[tuple[Any, int]]:
    """The worker's main process and its live descendants, each with its generation under it
    (1 a pool process, 2 the parse child it forked for a document, 3 a page-range reader)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []
    parent_of: dict[int, int] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            parent_of[proc.pid] = proc.ppid()
    return [(proc, _depth(proc.pid, pid, parent_of)) for proc in procs]


def _depth(pid: int, root: int, parent_of: dict[int, int]) -> int:
    depth = 0
    while pid != root and pid in parent_of and depth < 10:
        pid, depth = parent_of[pid], depth + 1
    return depth


def cpu_by_process(pid: int) -> dict[int, tuple[int, float, float]]:
    """pid -> (generation under the worker, user s, system s) of every live process of the tree."""
    import psutil

    cpu: dict[int, tuple[int, float, float]] = {}
    for proc, depth in _process_tree(pid):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            cpu[proc.pid] = (depth, times.user, times.system)
    return cpu


def cpu_by_role(
    before: dict[int, tuple[int, float, float]], last: dict[int, tuple[int, float, float]]
) -> dict[str, dict[str, float]]:
    """User and system CPU seconds per role from the last sample of each process (a process that
    ended between two samples loses at most one poll interval of its time)."""
    roles: dict[str, dict[str, float]] = {}
    for pid, (depth, user, system) in last.items():
        _, user0, system0 = before.get(pid, (depth, 0.0, 0.0))
        role = roles.setdefault(_role(depth), {"user": 0.0, "system": 0.0})
        role["user"] = round(role["user"] + user - user0, 1)
        role["system"] = round(role["system"] + system - system0, 1)
    return dict(sorted(roles.items()))


@dataclass
class MemorySample:
    pss_mb: float  # the whole tree, proportional: shared pages counted once
    child_rss_mb: dict[int, float]  # pool process pid -> RSS (what Celery's max-memory check reads)
    # pid -> PSS: RSS counts every page a forked parse child shares with its warm parent (~0.8 GB)
    # in full; PSS splits shared pages between the processes that map them, so it sums to what
    # the machine holds.
    child_pss_mb: dict[int, float] = field(default_factory=dict)
    # pid -> generation under the worker: 1 a pool process, 2 the parse child it forked for a
    # document, 3 a page-range reader that child forked; tells which role holds the memory.
    child_depth: dict[int, int] = field(default_factory=dict)


def sample_memory(pid: int) -> MemorySample:
    import psutil

    pss = 0
    rss: dict[int, float] = {}
    child_pss: dict[int, float] = {}
    child_depth: dict[int, int] = {}
    for proc, depth in _process_tree(pid):
        with contextlib.suppress(psutil.Error, AttributeError):
            info = proc.memory_full_info()
            pss += info.pss
            if proc.pid != pid:
                rss[proc.pid] = info.rss / 2**20
                child_pss[proc.pid] = info.pss / 2**20
                child_depth[proc.pid] = depth
    return MemorySample(pss / 2**20, rss, child_pss, child_depth)


# --------------------------------------------------------------------------------------------
# The pipeline run.


def run_pipeline(files: list[Path], worker: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    from django.utils import timezone

    from accounts.services import organization_create
    from kb.models import Chunk, DocumentStatus, DocumentVersion
    from kb.services import document_upload, knowledge_base_create

    org = organization_create(name=ORG_NAME)
    kb = knowledge_base_create(organization=org, name=f"bench {datetime.now(UTC):%Y%m%d-%H%M%S}", created_by=None)
    runs: list[DocRun] = []
    cpu_before = tree_cpu_s(worker.pid)
    cpu_seen_before = cpu_by_process(worker.pid)
    cpu_seen = dict(cpu_seen_before)
    first_upload = time.time()
    for path in files:
        run = DocRun(file=str(path), size_bytes=path.stat().st_size, uploaded_at=time.time())
        with path.open("rb") as handle:
            result = document_upload(knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=None)
        if not result.created:
            print(f"  {path.name}: same bytes as an earlier file of this run, skipped", file=sys.stderr)
            continue
        run.version_id = result.version.pk
        runs.append(run)
    upload_s = time.time() - first_upload

    terminal = {DocumentStatus.READY, DocumentStatus.FAILED}
    by_id = {run.version_id: run for run in runs}
    peak_pss = 0.0
    child_peak_rss: dict[int, float] = {}
    child_peak_pss: dict[int, float] = {}
    child_depth: dict[int, int] = {}
    next_memory_sample = 0.0
    deadline = time.monotonic() + timeout
    while True:
        rows = DocumentVersion.objects.filter(pk__in=list(by_id)).values("pk", "status")
        now = time.time()
        pending = 0
        for row in rows:
            run = by_id[row["pk"]]
            if row["status"] == DocumentStatus.EMBEDDING and run.embedding_seen_at is None:
                run.embedding_seen_at = now
            if row["status"] not in terminal:
                pending += 1
        cpu_seen.update(cpu_by_process(worker.pid))
        if time.monotonic() >= next_memory_sample:  # reading smaps costs a few ms per process
            memory = sample_memory(worker.pid)
            peak_pss = max(peak_pss, memory.pss_mb)
            for child, rss in memory.child_rss_mb.items():
                child_peak_rss[child] = max(rss, child_peak_rss.get(child, 0.0))
            for child, child_pss in memory.child_pss_mb.items():
                child_peak_pss[child] = max(child_pss, child_peak_pss.get(child, 0.0))
            child_depth.update(memory.child_depth)
            next_memory_sample = time.monotonic() + 1.0
        if not pending:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{pending} document(s) unfinished after {timeout:.0f}s")
        if worker.poll() is not None:
            raise SystemExit(f"The worker died (exit code {worker.returncode}) with {pending} document(s) pending")
        time.sleep(POLL_S)
    cpu_s = tree_cpu_s(worker.pid) - cpu_before

    for version in DocumentVersion.objects.filter(pk__in=list(by_id)).select_related("document"):
        run = by_id[version.pk]
        run.status, run.error_code, run.error = version.status, version.error_code, version.error_message
        run.file_type, run.pages, run.chunks = version.file_type, version.pages_total, version.chunks_total
        run.started_at = version.started_at.timestamp() if version.started_at else None
        run.finished_at = version.finished_at.timestamp() if version.finished_at else None
        run.searchable_at = version.searchable_at.timestamp() if version.searchable_at else None
        if run.embedding_seen_at is not None and run.finished_at is not None:
            run.embedding_seen_at = min(run.embedding_seen_at, run.finished_at)
        chunks = list(Chunk.objects.filter(version=version).order_by("ordinal"))
        run.pages_from_chunks = max((c.page_end or c.page_start or 0 for c in chunks), default=0) or None
        run.embedding_texts = [_embedding_text(c.text, c.section_path, version.document.title) for c in chunks]
    last_finished = max((run.finished_at or 0.0) for run in runs) if runs else first_upload
    return {
        "runs": runs,
        "knowledge_base": {"chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap, "model": kb.embedding_model},
        "upload_s": upload_s,
        "wall_s": last_finished - first_upload,
        "worker_cpu_s": cpu_s,
        "worker_peak_pss_mb": peak_pss,
        # Pool processes seen while documents ran: more than the concurrency means some were
        # replaced (memory limit, crash, or killed for not starting in time).
        "pool_processes_seen": len(child_peak_rss),
        "pool_process_peak_rss_mb": sorted((round(v) for v in child_peak_rss.values()), reverse=True),
        "pool_process_peak_pss_mb": sorted((round(v) for v in child_peak_pss.values()), reverse=True),
        "peak_pss_mb_by_role": _peak_by_role(child_peak_pss, child_depth),
        "peak_rss_mb_by_role": _peak_by_role(child_peak_rss, child_depth),
        "cpu_s_by_role": cpu_by_role(cpu_seen_before, cpu_seen),
        "finished": timezone.now().isoformat(),
    }


def _peak_by_role(peaks: dict[int, float], depth: dict[int, int]) -> dict[str, dict[str, float | int]]:
    """Per role (pool process, its parse child, a page-range reader): how many and the highest peak."""
    by_role: dict[str, list[float]] = {}
    for pid, peak in peaks.items():
        by_role.setdefault(_role(depth.get(pid, -1)), []).append(peak)
    return {role: {"processes": len(values), "max_mb": round(max(values))} for role, values in sorted(by_role.items())}


def _embedding_text(text: str, section_path: list[str], title: str) -> str:
    """Exactly what the pipeline embedded for a chunk (see `ChunkDraft.embedding_text`)."""
    from kb.pipeline.chunk import ChunkDraft

    return ChunkDraft(ordinal=0, text=text, section_ordinal=0, section_path=list(section_path)).embedding_text(title)


# --------------------------------------------------------------------------------------------
# The raw run, in this process.


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """Yields a list that holds [wall seconds, CPU seconds of this process (all threads)] afterwards."""
    out: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out.extend([time.perf_counter() - wall, time.process_time() - cpu])


def run_raw(runs: list[DocRun]) -> None:
    from inference.embedder import get_local_embedder
    from kb.pipeline import parse as parsing

    # Untimed warm-up, as a worker does before its first task: the parsers, spaCy, the ONNX model.
    parsing.warm_up()
    from unstructured.partition.auto import partition

    embedder = get_local_embedder()
    embedder.embed(["warm up"])
    for run in runs:
        with timer() as part:
            try:
                elements = partition(filename=run.file, strategy="fast")
            except Exception as exc:  # the raw parser failing is a result, not a crash of the bench
                elements = []
                run.raw_partition_error = f"{type(exc).__name__}: {exc}"[:300]
        run.raw_partition_s, run.raw_partition_cpu_s = part
        run.raw_elements = len(elements)
        if not run.embedding_texts:
            continue
        with timer() as emb:
            for start in range(0, len(run.embedding_texts), EMBED_BATCH):
                embedder.embed(run.embedding_texts[start : start + EMBED_BATCH])
        run.raw_embed_s, run.raw_embed_cpu_s = emb


# --------------------------------------------------------------------------------------------
# Report.


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _rate(amount: float | None, seconds: float | None) -> float | None:
    return amount / seconds if amount and seconds else None


def print_table(runs: list[DocRun], totals: dict[str, Any]) -> None:
    header = (
        f"{'file':<34} {'status':<13} {'pages':>6} {'chunks':>6} {'queue':>6} {'parse':>6} {'embed':>6} "
        f"{'claim→':>7} {'upl→':>7} {'upl→':>7} "
        f"{'pg/s':>6} {'ch/s':>6} {'rawPart':>7} {'rawEmb':>6} {'raw':>6} {'ratio':>6}"
    )
    print(header)
    print(f"{'':<34} {'':<13} {'':>6} {'':>6} {'s':>6} {'s':>6} {'s':>6} {'ready s':>7} {'ready s':>7} {'found s':>7}")
    print("-" * len(header))
    for run in runs:
        pages = run.page_figure
        page_label = _fmt(pages) + ("*" if run.pages is None and pages else "")
        status = run.status if run.status == "ready" else f"{run.status}:{run.error_code}"
        print(
            f"{run.name[:34]:<34} {status[:13]:<13} {page_label:>6} {run.chunks:>6} {_fmt(run.queue_s):>6} "
            f"{_fmt(run.parse_s):>6} {_fmt(run.embed_s):>6} {_fmt(run.pipeline_s):>7} {_fmt(run.upload_to_ready_s):>7} "
            f"{_fmt(run.upload_to_searchable_s):>7} "
            f"{_fmt(_rate(pages, run.pipeline_s)):>6} {_fmt(_rate(run.chunks, run.pipeline_s)):>6} "
            f"{_fmt(run.raw_partition_s):>7} {_fmt(run.raw_embed_s):>6} {_fmt(run.raw_s):>6} {_fmt(run.ratio, 2):>6}"
        )
    print("-" * len(header))
    t = totals
    print(
        f"ready {t['ready']}/{t['documents']}: {t['pages']} pages, {t['chunks']} chunks; first upload → last READY "
        f"{t['wall_s']:.1f} s = {_fmt(t['pages_per_s'], 2)} pages/s, {_fmt(t['chunks_per_s'], 2)} chunks/s "
        f"(concurrency {t['concurrency']})"
    )
    print(
        f"raw, one process: partition {t['raw_partition_s']:.1f} s + embed {t['raw_embed_s']:.1f} s = "
        f"{t['raw_s']:.1f} s = {_fmt(t['raw_pages_per_s'], 2)} pages/s, {_fmt(t['raw_chunks_per_s'], 2)} chunks/s"
    )
    print(
        f"ratio pipeline/raw: wall {_fmt(t['ratio_wall'], 2)} (total), {_fmt(t['ratio_busy'], 2)} "
        f"(sum of per-document claim→READY); CPU {t['worker_cpu_s']:.1f} s worker vs {t['raw_cpu_s']:.1f} s raw "
        f"= {_fmt(t['ratio_cpu'], 2)}; by role {t['cpu_s_by_role']}"
    )
    print(
        f"worker start-up {t['worker_ping_s']:.1f} s to ping, {t['worker_warm_s']:.1f} s to a warm pool; "
        f"peak worker memory {t['worker_peak_pss_mb']:.0f} MB (PSS, all processes); "
        f"{t['pool_processes_seen']} pool process(es) seen, peak RSS each {t['pool_process_peak_rss_mb']} MB, "
        f"PSS each {t['pool_process_peak_pss_mb']} MB; peak PSS by role {t['peak_pss_mb_by_role']}; "
        f"load average {t['load_start']} → {t['load_end']}"
    )
    if any(run.pages is None and run.pages_from_chunks for run in runs):
        print("* the row has no page count; the figure is the highest page a chunk cites")


def totals_of(runs: list[DocRun], pipeline: dict[str, Any], concurrency: int) -> dict[str, Any]:
    ready = [run for run in runs if run.status == "ready"]
    pages = sum(run.page_figure or 0 for run in ready)
    chunks = sum(run.chunks for run in ready)
    # Raw figures over the same (READY) documents, so the ratios compare like with like.
    raw_partition = sum(run.raw_partition_s or 0.0 for run in ready)
    raw_embed = sum(run.raw_embed_s or 0.0 for run in ready)
    # Except CPU: the worker's figure covers every document, the failed ones too (it parsed them
    # before it could tell), so the raw CPU it is compared with does too.
    raw_cpu = sum((run.raw_partition_cpu_s or 0.0) + (run.raw_embed_cpu_s or 0.0) for run in runs)
    raw = raw_partition + raw_embed
    busy = sum(run.pipeline_s or 0.0 for run in ready)
    wall = pipeline["wall_s"]
    return {
        "documents": len(runs),
        "ready": len(ready),
        "failed": [f"{run.name}: {run.error_code}" for run in runs if run.status != "ready"],
        "pages": pages,
        "chunks": chunks,
        "concurrency": concurrency,
        "upload_s": round(pipeline["upload_s"], 3),
        "wall_s": round(wall, 3),
        "pages_per_s": _round(_rate(pages, wall)),
        "chunks_per_s": _round(_rate(chunks, wall)),
        "busy_s": round(busy, 3),
        "raw_partition_s": round(raw_partition, 3),
        "raw_embed_s": round(raw_embed, 3),
        "raw_s": round(raw, 3),
        "raw_pages_per_s": _round(_rate(pages, raw)),
        "raw_chunks_per_s": _round(_rate(chunks, raw)),
        "raw_partition_pages_per_s": _round(_rate(pages, raw_partition)),
        "raw_embed_chunks_per_s": _round(_rate(chunks, raw_embed)),
        "ratio_wall": _round(wall / raw if raw else None),
        "ratio_busy": _round(busy / raw if raw else None),
        "worker_cpu_s": round(pipeline["worker_cpu_s"], 3),
        "raw_cpu_s": round(raw_cpu, 3),
        "ratio_cpu": _round(pipeline["worker_cpu_s"] / raw_cpu if raw_cpu else None),
        "worker_peak_pss_mb": round(pipeline["worker_peak_pss_mb"], 1),
        "pool_processes_seen": pipeline["pool_processes_seen"],
        "pool_process_peak_rss_mb": pipeline["pool_process_peak_rss_mb"],
        "pool_process_peak_pss_mb": pipeline["pool_process_peak_pss_mb"],
        # Diagnostics by role (pool process, parse child, range reader); absent from older results.
        "peak_pss_mb_by_role": pipeline.get("peak_pss_mb_by_role", {}),
        "peak_rss_mb_by_role": pipeline.get("peak_rss_mb_by_role", {}),
        "cpu_s_by_role": pipeline.get("cpu_s_by_role", {}),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def run_record(run: DocRun) -> dict[str, Any]:
    record = {k: v for k, v in asdict(run).items() if k != "embedding_texts"}
    for key in (
        "queue_s",
        "parse_s",
        "embed_s",
        "pipeline_s",
        "upload_to_ready_s",
        "upload_to_searchable_s",
        "raw_s",
        "ratio",
    ):
        record[key] = _round(getattr(run, key))
    record["pages_per_s"] = _round(_rate(run.page_figure, run.pipeline_s))
    record["chunks_per_s"] = _round(_rate(run.chunks, run.pipeline_s))
    for key in ("uploaded_at", "started_at", "embedding_seen_at", "finished_at", "searchable_at"):
        record[key] = _round(record[key])
    for key in ("raw_partition_s", "raw_partition_cpu_s", "raw_embed_s", "raw_embed_cpu_s"):
        record[key] = _round(record[key])
    return record


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for package in ("unstructured", "pdfminer.six", "pypdf", "onnxruntime", "celery", "spacy"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="file paths or globs (quote globs; ** recurses)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork), default 2")
    parser.add_argument("--label", default="run", help="results go to bench/results/ingest_<label>.json")
    parser.add_argument("--top-pages", type=int, default=0, help="keep only the N PDFs with the most pages (pypdf)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    parser.add_argument(
        "--embed-threads", type=int, default=None, help="GROUNDWORK_EMBED_THREADS for the worker (default: unset)"
    )
    parser.add_argument(
        "--proc-alive-timeout",
        type=float,
        default=120.0,
        help="seconds a replacement pool process may take to start (0: Celery's default 4 s; see start_worker)",
    )
    parser.add_argument("--keep-services", action="store_true", help="leave PostgreSQL and Redis running")
    args = parser.parse_args()

    files = expand(args.files)
    if args.top_pages:
        counted = sorted(((pdf_pages(path), path) for path in files), key=lambda pair: (-pair[0], str(pair[1])))
        files = [path for _, path in counted[: args.top_pages]]
    load_start = [round(x, 2) for x in os.getloadavg()]
    print(f"{len(files)} file(s), concurrency {args.concurrency}, load average {load_start}", file=sys.stderr)

    worker: subprocess.Popen[bytes] | None = None
    try:
        setup_django(DATA_DIR)
        clear_previous_runs()
        worker = start_worker(
            args.concurrency,
            DATA_DIR / "worker.log",
            embed_threads=args.embed_threads,
            proc_alive_timeout=args.proc_alive_timeout,
        )
        worker_ping_s, worker_warm_s = wait_worker_ready(worker)
        print(f"worker warm after {worker_warm_s:.1f} s; uploading", file=sys.stderr)
        pipeline = run_pipeline(files, worker, args.timeout)
        stop_worker(worker)  # idle now; stopped so the raw run has the machine to itself
        runs: list[DocRun] = pipeline["runs"]
        print("pipeline done; timing raw partition + embedding in this process", file=sys.stderr)
        run_raw(runs)
    finally:
        if worker is not None:
            stop_worker(worker)
        if "django" in sys.modules:
            with contextlib.suppress(Exception):
                from django.db import connections

                connections.close_all()
        if not args.keep_services:
            from devtools import embedded_services

            embedded_services.stop_postgres(DATA_DIR)
            embedded_services.stop_redis(DATA_DIR)

    load_end = [round(x, 2) for x in os.getloadavg()]
    totals = totals_of(runs, pipeline, args.concurrency)
    log = (DATA_DIR / "worker.log").read_text(errors="replace") if (DATA_DIR / "worker.log").exists() else ""
    totals["pool_processes_killed_at_start"] = log.count("Timed out waiting for UP message")
    totals.update(
        worker_ping_s=round(worker_ping_s, 2),
        worker_warm_s=round(worker_warm_s, 2),
        load_start=load_start,
        load_end=load_end,
    )
    print()
    print_table(runs, totals)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"ingest_{args.label}.json"
    record = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "processor": platform.machine(),
            "python": platform.python_version(),
            "load_average_start": load_start,
            "load_average_end": load_end,
            "packages": _versions(),
        },
        "settings": {
            "concurrency": args.concurrency,
            "embed_threads": args.embed_threads,
            "proc_alive_timeout": args.proc_alive_timeout or "celery default (4 s)",
            "embed_batch": EMBED_BATCH,
            "poll_s": POLL_S,
            **pipeline["knowledge_base"],
        },
        "totals": totals,
        "documents": [run_record(run) for run in runs],
    }
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
