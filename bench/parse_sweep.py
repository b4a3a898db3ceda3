"""Robustness and speed sweep: `parse_document` + `chunk_document` on every file of a corpus.

Not a test: run it by hand after changing kb/pipeline/parse/ or kb/pipeline/chunk/, and read the summary.

    .venv/bin/python bench/parse_sweep.py                 # ../shared/data/pdf_parsing, 120 s limit
    .venv/bin/python bench/parse_sweep.py --fresh         # one new process per file (slower)
    .venv/bin/python bench/parse_sweep.py --corpus ../shared/data/formats

Every file is parsed in a worker subprocess under a wall-clock limit, so a hang or a crash (a
segfault, an exception that escapes `ParseError`) is recorded, the worker replaced, and the sweep
goes on. By default one warmed-up worker parses file after file (importing unstructured and loading
spaCy costs ~5-15 s, more than most parses); `--fresh` starts a new one per file. Peak RSS is
measured per file: the worker resets the kernel's high-water mark (`/proc/self/clear_refs`) before
each parse. Results go to bench/results/parse_sweep.json.

Outcomes: `ok`, `error:<code>` (a ParseError: the intended way to fail), `crash` (any other
exception or a dead worker: a bug), `hang` (over the time limit: a bug or a limit to document).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "pdf_parsing"
RESULTS = REPO / "bench" / "results" / "parse_sweep.json"


# --------------------------------------------------------------------------------------------
# Worker side.


def _rss_mb(field: str) -> float | None:
    """A VmRSS/VmHWM figure of this process, in MB (Linux only)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0), so each file gets its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _parse_one(path: Path, *, max_pages: int) -> dict[str, Any]:
    from kb.pipeline.chunk import chunk_document
    from kb.pipeline.parse import ParseError, parse_document

    _reset_peak_rss()
    started = time.perf_counter()
    result: dict[str, Any] = {}
    try:
        document = parse_document(path, filename=path.name, max_pages=max_pages)
    except ParseError as exc:
        result.update(outcome=f"error:{exc.code}", code=exc.code, message=exc.message, detail=exc.detail)
    except Exception as exc:
        result.update(outcome="crash", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    else:
        parse_seconds = time.perf_counter() - started
        chunk_started = time.perf_counter()
        try:
            chunking = chunk_document(document)
        except Exception as exc:
            result.update(
                outcome="crash",
                message=f"chunking: {type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
        else:
            result.update(
                outcome="ok",
                file_type=document.file_type,
                pages=document.page_count,
                elements=len(document.elements),
                chars=sum(len(element.text) for element in document.elements),
                titles=sum(1 for element in document.elements if element.category == "Title"),
                tables=sum(1 for element in document.elements if element.category == "Table"),
                sections=len(chunking.sections),
                chunks=len(chunking.chunks),
                chunk_seconds=round(time.perf_counter() - chunk_started, 3),
                warnings=document.warnings,
            )
        result["parse_seconds"] = round(parse_seconds, 3)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["rss_peak_mb"] = _rss_mb("VmHWM")
    return result


def worker_main(max_pages: int) -> None:
    """Read one path per line on stdin, answer one JSON line per path on the original stdout."""
    # Libraries print to stdout; keep the protocol channel private and send stray output to stderr.
    channel: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.path.insert(0, str(REPO))
    from kb.pipeline.parse import warm_up

    started = time.perf_counter()
    warm_up()
    channel.write(
        json.dumps(
            {"ready": True, "warm_up_seconds": round(time.perf_counter() - started, 2), "rss_mb": _rss_mb("VmRSS")}
        )
        + "\n"
    )
    for line in sys.stdin:
        path = Path(line.strip())
        channel.write(json.dumps(_parse_one(path, max_pages=max_pages)) + "\n")


# --------------------------------------------------------------------------------------------
# Driver side.


class Worker:
    """A warmed-up parsing subprocess; replaced after a crash or a hang."""

    def __init__(self, *, max_pages: int, memory_limit_mb: int | None) -> None:
        def limit_memory() -> None:
            if memory_limit_mb:
                limit = memory_limit_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--max-pages", str(max_pages)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            preexec_fn=limit_memory,
            start_new_session=True,  # own process group: a hang is killed with all it started
            cwd=REPO,
        )
        ready = self._read(timeout=300)
        if ready is None or not ready.get("ready"):
            self.kill()
            raise RuntimeError("parse worker did not start (is the spaCy model installed?)")
        self.warm_up_seconds = float(ready["warm_up_seconds"])
        self.base_rss_mb = ready.get("rss_mb")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else None

    def parse(self, path: Path, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        started = time.perf_counter()
        try:
            self.process.stdin.write(f"{path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "crash", "message": "worker died before the file was sent"}
        try:
            result = self._read(timeout)
        except (json.JSONDecodeError, ValueError) as exc:
            result = {"outcome": "crash", "message": f"unreadable worker answer: {exc}"}
        if result is not None:
            return result
        elapsed = round(time.perf_counter() - started, 1)
        if self.process.poll() is None:
            self.kill()
            return {"outcome": "hang", "message": f"no answer within {timeout:.0f} s", "seconds": elapsed}
        return {
            "outcome": "crash",
            "message": f"worker exited with status {self.process.returncode}",
            "seconds": elapsed,
        }

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _manifest(corpus: Path) -> dict[str, dict[str, Any]]:
    manifest = corpus / "manifest.jsonl"
    if not manifest.exists():
        return {}
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return {entry["file"]: entry for entry in entries}


def _files(corpus: Path, manifest: dict[str, dict[str, Any]]) -> list[str]:
    if manifest:
        return sorted(manifest)
    skip = {"README.txt", "MANIFEST.tsv", "manifest.jsonl"}
    return sorted(
        str(path.relative_to(corpus))
        for path in corpus.rglob("*")
        if path.is_file() and path.name not in skip and not path.name.startswith("LICENSE")
    )


def run(args: argparse.Namespace) -> int:
    corpus = Path(args.corpus).resolve()
    if not corpus.is_dir():
        print(f"corpus not found: {corpus}", file=sys.stderr)
        return 2
    manifest = _manifest(corpus)
    files = _files(corpus, manifest)
    if args.only:
        files = [name for name in files if args.only in name]
    rows: list[dict[str, Any]] = []
    worker: Worker | None = None
    warm_ups: list[float] = []
    base_rss: list[float] = []
    sweep_started = time.perf_counter()
    for index, name in enumerate(files, 1):
        if worker is None or not worker.alive():
            worker = Worker(max_pages=args.max_pages, memory_limit_mb=args.memory_limit_mb)
            warm_ups.append(worker.warm_up_seconds)
            if worker.base_rss_mb:
                base_rss.append(worker.base_rss_mb)
        path = corpus / name
        result = worker.parse(path, timeout=args.timeout)
        if args.fresh or result["outcome"] in ("hang", "crash"):
            worker.kill()
            worker = None
        expected = (manifest.get(name, {}).get("expected") or {}).get("pages")
        row: dict[str, Any] = {"file": name, "bytes": path.stat().st_size, "expected_pages": expected, **result}
        if row.get("outcome") == "ok" and row.get("parse_seconds"):
            row["chars_per_s"] = round(row["chars"] / max(row["parse_seconds"], 1e-3))
            if row.get("pages"):
                row["pages_per_s"] = round(row["pages"] / max(row["parse_seconds"], 1e-3), 2)
        if expected is not None and row.get("outcome") == "ok" and row.get("pages") != expected:
            row["page_mismatch"] = True
        rows.append(row)
        _print_row(index, len(files), row)
    if worker is not None:
        worker.kill()
    summary = _summary(rows, warm_ups, base_rss, time.perf_counter() - sweep_started, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    output = Path(args.output) if args.output else RESULTS
    output.write_text(json.dumps({"summary": summary, "files": rows}, indent=1, ensure_ascii=False) + "\n")
    _print_summary(summary)
    print(f"\nwritten: {output}")
    return 1 if summary["crash"] or summary["hang"] else 0


def _print_row(index: int, total: int, row: dict[str, Any]) -> None:
    outcome = row.get("outcome", "?")
    extra = ""
    if outcome == "ok":
        extra = f"pages={row.get('pages')} els={row.get('elements')} chunks={row.get('chunks')}"
        if row.get("page_mismatch"):
            extra += f" (EXPECTED {row['expected_pages']} pages)"
    else:
        extra = (row.get("message") or "")[:90]
    rss = row.get("rss_peak_mb")
    rss_text = f"{rss:6.0f}MB" if isinstance(rss, int | float) else "      -"
    print(
        f"[{index:3d}/{total}] {row['file'][:62]:62s} {outcome:22s} {row.get('seconds', 0):7.2f}s {rss_text}  {extra}",
        flush=True,
    )


def _summary(
    rows: list[dict[str, Any]], warm_ups: list[float], base_rss: list[float], wall: float, args: argparse.Namespace
) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    ok = [row for row in rows if row["outcome"] == "ok"]
    timed = [row for row in ok if row.get("pages") and row.get("parse_seconds")]
    rates = [row["pages_per_s"] for row in timed]
    pages = sum(row["pages"] for row in timed)
    seconds = sum(row["parse_seconds"] for row in timed)
    chars = sum(row["chars"] for row in ok)
    chars_seconds = sum(row.get("parse_seconds", 0) for row in ok)
    peaks = [row["rss_peak_mb"] for row in rows if isinstance(row.get("rss_peak_mb"), int | float)]
    slowest = sorted(ok, key=lambda row: row.get("parse_seconds", 0), reverse=True)[:5]
    return {
        "files": len(rows),
        "outcomes": dict(sorted(outcomes.items())),
        "ok": len(ok),
        "crash": outcomes.get("crash", 0),
        "hang": outcomes.get("hang", 0),
        "page_mismatches": [row["file"] for row in rows if row.get("page_mismatch")],
        "pages_parsed": pages,
        "parse_seconds_total": round(seconds, 1),
        "pages_per_s_overall": round(pages / seconds, 2) if seconds else None,
        "pages_per_s_median": round(statistics.median(rates), 2) if rates else None,
        "chars_per_s_overall": round(chars / chars_seconds) if chars_seconds else None,
        "slowest": [
            {"file": row["file"], "pages": row.get("pages"), "seconds": row.get("parse_seconds")} for row in slowest
        ],
        "worker_warm_up_seconds_median": round(statistics.median(warm_ups), 2) if warm_ups else None,
        "worker_rss_after_warm_up_mb": round(max(base_rss), 1) if base_rss else None,
        "rss_peak_mb_max": round(max(peaks), 1) if peaks else None,
        "rss_peak_mb_median": round(statistics.median(peaks), 1) if peaks else None,
        "wall_seconds": round(wall, 1),
        "timeout_s": args.timeout,
        "fresh_process_per_file": args.fresh,
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    print("\n=== summary ===")
    for key in (
        "files",
        "outcomes",
        "page_mismatches",
        "pages_parsed",
        "parse_seconds_total",
        "pages_per_s_overall",
        "pages_per_s_median",
        "chars_per_s_overall",
        "worker_warm_up_seconds_median",
        "worker_rss_after_warm_up_mb",
        "rss_peak_mb_median",
        "rss_peak_mb_max",
        "wall_seconds",
        "load_average_at_end",
    ):
        print(f"{key:32s} {summary[key]}")
    print("slowest:")
    for row in summary["slowest"]:
        print(f"  {row['file']:64s} {row['pages']!s:>5} pages {row['seconds']:7.2f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per file before it counts as a hang")
    parser.add_argument("--max-pages", type=int, default=2000)
    parser.add_argument("--memory-limit-mb", type=int, default=None, help="RLIMIT_AS for the worker")
    parser.add_argument("--fresh", action="store_true", help="a new worker process for every file")
    parser.add_argument("--only", help="only files whose path contains this string")
    parser.add_argument("--output", help=f"result file (default {RESULTS.relative_to(REPO)})")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.max_pages)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
