"""bench/ingest.py's totals: the CPU ratio compares the worker with the raw work on the same documents."""

from __future__ import annotations

import pytest

from bench.ingest import DocRun, _depth, _peak_by_role, cpu_by_role, totals_of


def _run(name: str, status: str, *, partition_cpu: float, embed_cpu: float | None) -> DocRun:
    return DocRun(
        file=f"/data/{name}",
        size_bytes=1,
        status=status,
        error_code="" if status == "ready" else "garbled_text",
        pages=10,
        chunks=20 if status == "ready" else 0,
        uploaded_at=0.0,
        started_at=1.0,
        finished_at=5.0,
        raw_partition_s=partition_cpu,
        raw_partition_cpu_s=partition_cpu,
        raw_embed_s=embed_cpu,
        raw_embed_cpu_s=embed_cpu,
    )


def test_a_failed_documents_parse_counts_on_both_sides_of_the_cpu_ratio() -> None:
    # The worker parsed the garbled PDF for 8 s before failing it; its CPU figure includes that,
    # so the raw side must include the raw parse of the same file (it left it out).
    runs = [
        _run("report.pdf", "ready", partition_cpu=20.0, embed_cpu=70.0),
        _run("garbled.pdf", "failed", partition_cpu=10.0, embed_cpu=None),
    ]
    pipeline = {
        "upload_s": 0.1,
        "wall_s": 60.0,
        "worker_cpu_s": 110.0,
        "worker_peak_pss_mb": 900.0,
        "pool_processes_seen": 2,
        "pool_process_peak_rss_mb": [800.0],
        "pool_process_peak_pss_mb": [600.0],
    }
    totals = totals_of(runs, pipeline, concurrency=1)
    assert totals["raw_cpu_s"] == pytest.approx(100.0)
    assert totals["ratio_cpu"] == pytest.approx(1.1)
    # Throughput and wall-time ratios stay over the READY documents only.
    assert totals["raw_s"] == pytest.approx(90.0)
    assert totals["failed"] == ["garbled.pdf: garbled_text"]


def test_memory_and_cpu_are_attributed_to_the_role_of_each_process() -> None:
    # worker 1 -> pool process 2 -> parse child 3 -> page-range reader 4; pool process 5 idle.
    parent_of = {1: 0, 2: 1, 3: 2, 4: 3, 5: 1}
    depth = {pid: _depth(pid, 1, parent_of) for pid in (2, 3, 4, 5)}
    assert depth == {2: 1, 3: 2, 4: 3, 5: 1}

    peaks = _peak_by_role({2: 850.4, 3: 920.0, 4: 480.0, 5: 600.0}, depth)
    assert peaks == {
        "page_range_reader": {"processes": 1, "max_mb": 480},
        "parse_child": {"processes": 1, "max_mb": 920},
        "pool_process": {"processes": 2, "max_mb": 850},
    }

    # The pool processes had warmed up before the first upload: only what they used since counts;
    # the parse child and the reader started later and count in full.
    before = {1: (0, 1.0, 0.5), 2: (1, 20.0, 1.0), 5: (1, 18.0, 1.0)}
    last = {1: (0, 1.5, 0.5), 2: (1, 50.0, 2.0), 3: (2, 30.0, 1.5), 4: (3, 12.0, 0.5), 5: (1, 18.0, 1.0)}
    assert cpu_by_role(before, last) == {
        "page_range_reader": {"user": 12.0, "system": 0.5},
        "parse_child": {"user": 30.0, "system": 1.5},
        "pool_process": {"user": 30.0, "system": 1.0},
        "worker_main": {"user": 0.5, "system": 0.0},
    }
