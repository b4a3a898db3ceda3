"""How hybrid retrieval fuses its two rankings: a sweep of fusion rules on the evaluation sets.

    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/eval_sets.py --ingest-only
    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/fusion_sweep.py [--sets clapnq,squad2] [--limit N]

For every answerable question of each set (ingested earlier by eval_sets.py), the vector and the
BM25 candidate lists are fetched once through kb.selectors (50 each, with their scores); every
fusion rule then re-ranks the same lists, so rules are compared on identical inputs. Reported:
recall@1/5/10 and MRR per rule and set, as a table and in bench/results/fusion_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# One candidate list: (chunk id, score) best first.
Ranked = list[tuple[int, float]]
Fusion = Callable[[Ranked, Ranked], list[int]]


def rrf(k: float, vector_weight: float = 1.0, keyword_weight: float = 1.0) -> Fusion:
    def fuse(vector: Ranked, keyword: Ranked) -> list[int]:
        scores: dict[int, float] = {}
        for weight, ranked in ((vector_weight, vector), (keyword_weight, keyword)):
            for rank, (chunk_id, _) in enumerate(ranked, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
        return sorted(scores, key=lambda c: scores[c], reverse=True)

    return fuse


def _normalised(ranked: Ranked, how: str) -> dict[int, float]:
    if not ranked:
        return {}
    values = [s for _, s in ranked]
    if how == "tmm":
        # Theoretical minimum (0 for BM25 and, in practice, for cosine similarity), observed maximum.
        high = max(values) or 1.0
        return {c: max(s, 0.0) / high for c, s in ranked}
    if how == "minmax":
        low, high = min(values), max(values)
        span = (high - low) or 1.0
        return {c: (s - low) / span for c, s in ranked}
    mean = statistics.fmean(values)
    spread = statistics.pstdev(values) or 1.0
    return {c: (s - mean) / spread for c, s in ranked}


def convex(alpha: float, how: str = "minmax") -> Fusion:
    """alpha * normalised vector score + (1 - alpha) * normalised BM25; absent from a list: its floor."""

    def fuse(vector: Ranked, keyword: Ranked) -> list[int]:
        v, k = _normalised(vector, how), _normalised(keyword, how)
        v_floor = min(v.values(), default=0.0)
        k_floor = min(k.values(), default=0.0)
        ids = set(v) | set(k)
        scores = {c: alpha * v.get(c, v_floor) + (1 - alpha) * k.get(c, k_floor) for c in ids}
        return sorted(scores, key=lambda c: scores[c], reverse=True)

    return fuse


def single(which: str) -> Fusion:
    def fuse(vector: Ranked, keyword: Ranked) -> list[int]:
        return [c for c, _ in (vector if which == "vector" else keyword)]

    return fuse


def shipped(vector: Ranked, keyword: Ranked) -> list[int]:
    """What kb.selectors.chunk_search does in hybrid mode."""
    from kb.selectors import SearchHit, _fuse

    hits: dict[int, SearchHit] = {}
    for chunk_id, similarity in vector:
        hits.setdefault(chunk_id, SearchHit(chunk_id=chunk_id)).vector_score = similarity
    for chunk_id, bm25 in keyword:
        hits.setdefault(chunk_id, SearchHit(chunk_id=chunk_id)).keyword_score = bm25
    _fuse(hits.values())
    return [h.chunk_id for h in sorted(hits.values(), key=lambda h: h.score, reverse=True)]


RULES: dict[str, Fusion] = {
    "shipped (kb.selectors)": shipped,
    "vector only": single("vector"),
    "keyword only": single("keyword"),
    "rrf k=60": rrf(60),
    "rrf k=20": rrf(20),
    "rrf k=10": rrf(10),
    "rrf k=60 vector x1.5": rrf(60, 1.5),
    "rrf k=60 vector x2": rrf(60, 2.0),
    "rrf k=20 vector x1.5": rrf(20, 1.5),
    "convex minmax a=0.3": convex(0.3),
    "convex minmax a=0.5": convex(0.5),
    "convex minmax a=0.7": convex(0.7),
    "convex tmm a=0.3": convex(0.3, "tmm"),
    "convex tmm a=0.5": convex(0.5, "tmm"),
    "convex tmm a=0.6": convex(0.6, "tmm"),
    "convex tmm a=0.7": convex(0.7, "tmm"),
    "convex tmm a=0.8": convex(0.8, "tmm"),
    "convex minmax a=0.6": convex(0.6),
    "convex z a=0.6": convex(0.6, "z"),
    "convex z a=0.3": convex(0.3, "z"),
    "convex z a=0.5": convex(0.5, "z"),
    "convex z a=0.7": convex(0.7, "z"),
}


def collect(
    name: str, limit: int | None, depth: int, cache: Path | None = None
) -> list[tuple[Ranked, Ranked, set[int]]]:
    """Per answerable question: vector list, keyword list, ids of the chunks that match gold."""
    if cache is not None and cache.exists():
        return [(v, k, set(g)) for v, k, g in json.loads(cache.read_text())]
    from eval_sets import SETS, _ingested_bot

    from chat.evaluation import _GoldMatcher, load_questions
    from kb.models import Chunk
    from kb.selectors import _keyword_candidates, _vector_candidates

    docs, raw = SETS[name]()
    bot = _ingested_bot(name, len(docs))
    if bot is None:
        raise SystemExit(f"{name}: not ingested yet; run bench/eval_sets.py --ingest-only first")
    kbs = list(bot.knowledge_bases.all())
    path = Path(f"/tmp/fusion-{name}.jsonl")
    path.write_text("".join(json.dumps(q) + "\n" for q in raw))
    rows = []
    for q in load_questions(path, limit):
        matcher = _GoldMatcher(q)
        if q.is_impossible or not matcher.has_gold:
            continue
        vector = _vector_candidates(kbs, q.question, depth)
        keyword = _keyword_candidates(kbs, q.question, depth)
        ids = {c for c, _ in vector} | {c for c, _ in keyword}
        chunks = Chunk.objects.select_related("document").in_bulk(list(ids))
        gold = {c for c, chunk in chunks.items() if matcher.matches(chunk)}
        rows.append((vector, keyword, gold))
    if cache is not None:
        cache.write_text(json.dumps([(v, k, sorted(g)) for v, k, g in rows]))
    return rows


def score(rows: list[tuple[Ranked, Ranked, set[int]]], fuse: Fusion) -> dict[str, float]:
    ranks = []
    for vector, keyword, gold in rows:
        order = fuse(vector, keyword)
        ranks.append(next((i for i, c in enumerate(order, start=1) if c in gold), None))
    n = len(ranks) or 1
    out = {f"recall@{k}": round(sum(1 for r in ranks if r and r <= k) / n, 4) for k in (1, 5, 10)}
    out["mrr"] = round(sum(1 / r for r in ranks if r) / n, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", default="squad2,clapnq,covidqa,sec10q")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--depth", type=int, default=50, help="candidates per retriever")
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder keeping each set's candidate lists between runs"
    )
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    results: dict[str, Any] = {}
    for name in args.sets.split(","):
        cache = args.cache / f"{name}-{args.limit}-{args.depth}.json" if args.cache else None
        rows = collect(name, args.limit, args.depth, cache)
        results[name] = {"questions": len(rows), "rules": {rule: score(rows, fuse) for rule, fuse in RULES.items()}}
        print(f"\n=== {name}: {len(rows)} answerable questions with gold ===")
        print(f"{'rule':<24} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'MRR':>7}")
        for rule, row in results[name]["rules"].items():
            print(f"{rule:<24} " + " ".join(f"{row[m]:>7.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr")))
    out = REPO / "bench" / "results" / "fusion_sweep.json"
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.update(results)
    out.write_text(json.dumps(existing, indent=2))


if __name__ == "__main__":
    main()
