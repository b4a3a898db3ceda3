"""Benchmark the offline default embedder (all-MiniLM-L6-v2 int8 ONNX): load time, passages/s, query latency.

Run from the repository root:

    .venv/bin/python bench/embed_speed.py

Passages are real SQuAD-2 dev paragraphs cut to their first 100 words; queries are real SQuAD
questions. The data is read in place (never copied into the repository). Figures are printed and
written to bench/results/embed_speed.json. Timings are best-of-N (throughput) or medians (latency),
because the machines we run on are shared and the slow outliers measure the neighbours, not us.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere, importing the project's modules

DEFAULT_DATA = Path("/work/shared/data/squad2_dev_half")
RESULTS = REPO / "bench" / "results" / "embed_speed.json"
PASSAGE_WORDS = 100


def load_passages(data_dir: Path, count: int) -> list[str]:
    """The first `PASSAGE_WORDS` words of paragraphs that have at least that many."""
    passages: list[str] = []
    with (data_dir / "passages.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            words = json.loads(line)["text"].split()
            if len(words) >= PASSAGE_WORDS:
                passages.append(" ".join(words[:PASSAGE_WORDS]))
    if not passages:
        raise SystemExit(f"No passage of {PASSAGE_WORDS}+ words in {data_dir}")
    # Repeat the set if asked for more than it holds; text content does not change the cost.
    return [passages[i % len(passages)] for i in range(count)]


def load_questions(data_dir: Path, count: int) -> list[str]:
    questions: list[str] = []
    with (data_dir / "questions.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            questions.append(json.loads(line)["question"])
            if len(questions) == count:
                break
    return questions


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of one call.

    CPU time is the load-independent figure on a shared machine: with 1 thread, passages per
    CPU-second is what one idle core delivers.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_threads(threads: int, passages: list[str], questions: list[str], repeats: int) -> dict[str, Any]:
    """Load, throughput and latency for one intra-op thread count."""
    from inference.embedder import BATCH_SIZE, LocalEmbedder

    load_times = []
    embedder = None
    for _ in range(repeats):
        start = time.perf_counter()
        embedder = LocalEmbedder(threads=threads)
        load_times.append(time.perf_counter() - start)
    assert embedder is not None

    embedder.embed(passages[:BATCH_SIZE])  # warm-up: first runs allocate and pick kernels
    tokens = embedder.count_tokens(passages) / len(passages)
    runs = [timed_cpu(lambda: embedder.embed(passages)) for _ in range(repeats)]
    best = min(wall for wall, _ in runs)
    best_cpu = min(cpu for _, cpu in runs)

    for q in questions[:5]:
        embedder.embed([q])
    query_runs = [timed_cpu(partial(embedder.embed, [q])) for q in questions]
    query_ms = [1000 * wall for wall, _ in query_runs]
    query_cpu_ms = [1000 * cpu for _, cpu in query_runs]

    return {
        "threads": threads,
        "load_s_best": round(min(load_times), 3),
        "load_s_runs": [round(t, 3) for t in load_times],
        "passages": len(passages),
        "batch_size": embedder.batch_size,
        "mean_tokens_per_passage": round(tokens, 1),
        "passages_per_s_best": round(len(passages) / best, 1),
        "passages_per_s_runs": [round(len(passages) / wall, 1) for wall, _ in runs],
        "passages_per_cpu_s_best": round(len(passages) / best_cpu, 1),
        "query_ms_median": round(statistics.median(query_ms), 2),
        "query_ms_p95": round(percentile(query_ms, 0.95), 2),
        "query_cpu_ms_median": round(statistics.median(query_cpu_ms), 2),
        "queries": len(query_ms),
    }


def bench_batch_sizes(threads: int, passages: list[str], sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """Throughput per batch size. Rounds are interleaved so load drift hits every size alike."""
    from inference.embedder import LocalEmbedder

    embedders = {size: LocalEmbedder(threads=threads, batch_size=size) for size in sizes}
    walls: dict[int, list[float]] = {size: [] for size in sizes}
    cpus: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(repeats):
        for size, embedder in embedders.items():
            embedder.embed(passages[:size])
            wall, cpu = timed_cpu(partial(embedder.embed, passages))
            walls[size].append(wall)
            cpus[size].append(cpu)
    return [
        {
            "batch_size": size,
            "threads": threads,
            "passages_per_s_best": round(len(passages) / min(walls[size]), 1),
            "passages_per_cpu_s_best": round(len(passages) / min(cpus[size]), 1),
        }
        for size in sizes
    ]


def bench_litellm_path(questions: list[str]) -> dict[str, Any]:
    """What the app pays on top: the LiteLLM import and the per-call overhead of `kb.embedding`."""
    from inference.embedder import get_local_embedder
    from inference.gateway import get_litellm
    from kb import embedding

    import_s, import_cpu_s = timed_cpu(get_litellm)
    direct = get_local_embedder()
    embedding.embed_query(questions[0], model=embedding.LOCAL_EMBEDDING_MODEL)  # warm-up
    # Interleaved, so drifting load on a shared machine hits both series alike.
    via_litellm: list[float] = []
    direct_ms: list[float] = []
    for q in questions:
        via_litellm.append(1000 * timed(partial(embedding.embed_query, q, model=embedding.LOCAL_EMBEDDING_MODEL)))
        direct_ms.append(1000 * timed(partial(direct.embed, [q])))
    return {
        "litellm_import_s": round(import_s, 2),
        "litellm_import_cpu_s": round(import_cpu_s, 2),
        "query_ms_median_via_kb_embedding": round(statistics.median(via_litellm), 2),
        "query_ms_median_direct": round(statistics.median(direct_ms), 2),
        "litellm_overhead_ms_median": round(statistics.median(via_litellm) - statistics.median(direct_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SQuAD folder (passages/questions.jsonl)")
    parser.add_argument("--passages", type=int, default=320, help="passages per throughput run (10 batches)")
    parser.add_argument("--queries", type=int, default=100, help="single-query timings")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the best is reported")
    parser.add_argument(
        "--threads", type=int, nargs="*", help="intra-op thread counts to try (default: 1 and the default)"
    )
    parser.add_argument(
        "--sweep", type=int, nargs="*", default=[1, 4, 8, 16, 32, 64], help="batch sizes to compare (160 passages)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import onnxruntime

    from inference.embedder import MODEL_SHA256, default_threads, packaged_model_path

    passages = load_passages(args.data, args.passages)
    questions = load_questions(args.data, args.queries)
    model_path = packaged_model_path()
    sha_s = timed(lambda: hashlib.sha256(model_path.read_bytes()).hexdigest())
    thread_counts = args.threads or sorted({1, default_threads()})

    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__,
        },
        "model": {
            "sha256": MODEL_SHA256,
            "size_mb": round(model_path.stat().st_size / 1e6, 1),
            "sha256_check_s": round(sha_s, 3),
        },
        "data": {
            "source": str(args.data / "passages.jsonl"),
            "passage_words": PASSAGE_WORDS,
            "passages_sha256": hashlib.sha256((args.data / "passages.jsonl").read_bytes()).hexdigest(),
        },
        "by_threads": [bench_threads(t, passages, questions, args.repeats) for t in thread_counts],
        "batch_size_sweep": bench_batch_sizes(max(thread_counts), passages[:160], args.sweep, args.repeats),
        "app_path": bench_litellm_path(questions),
    }

    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")  # bench/results/*.tmp is git-ignored
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.output)

    print(json.dumps(results, indent=2))
    print(f"\nwritten to {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")


if __name__ == "__main__":
    main()
