"""Fit and measure match ranking (kb.match_ranking) on the four public evaluation sets.

    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/eval_sets.py --ingest-only
    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/match_ranking.py --cache .data/cache

For every answerable question, the product's fused top 20 (bench/fusion_sweep.py's baseline:
MiniLM + BM25 over text, section path and title, equal weights) is re-ordered by a linear score
over kb.match_ranking's features, computed from the chunks' stored search vectors exactly as the
product computes them. The weights are fitted listwise (softmax over the pool, the gold chunks'
share maximised) and measured two ways: leave one set out (fitted on the other three: how it
does on a kind of document it never saw) and 5-fold by document within the pooled sets. Prints
the weights fitted on everything (those go into kb.match_ranking) and writes
bench/results/match_ranking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

SETS = ("clapnq", "covidqa", "squad2", "sec10q")


def dump_terms(corpus: Any) -> dict[str, Any]:
    """Each chunk's search vector (lexeme -> [(position, weight)]) and each question's lexemes in order."""
    path = corpus.cache / f"{corpus.name}-terms.json"
    if path.exists():
        return json.loads(path.read_text())
    from django.db import connection

    from kb.languages import text_search_config
    from kb.models import Chunk

    ids = [c["id"] for c in corpus.chunks]
    chunk = Chunk.objects.select_related("knowledge_base").get(pk=ids[0])
    config = text_search_config(chunk.knowledge_base)
    vectors: dict[str, dict[str, list[tuple[int, str]]]] = {str(i): {} for i in ids}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, u.lexeme, u.positions, u.weights FROM kb_chunk c"
            " CROSS JOIN LATERAL unnest(c.search_vector) AS u(lexeme, positions, weights) WHERE c.id = ANY(%s)",
            [ids],
        )
        for chunk_id, lexeme, positions, weights in cursor.fetchall():
            vectors[str(chunk_id)][lexeme] = list(zip(positions, weights, strict=True))
        questions = []
        for q in corpus.questions:
            cursor.execute(
                "SELECT u.lexeme, u.positions"
                " FROM unnest(to_tsvector(%s::regconfig, %s)) AS u(lexeme, positions, weights)",
                [config, q["question"]],
            )
            occurrences = sorted((p, lexeme) for lexeme, positions in cursor.fetchall() for p in positions)
            questions.append([lexeme for _, lexeme in occurrences])
    data = {"vectors": vectors, "questions": questions}
    path.write_text(json.dumps(data))
    return data


def pools(corpus: Any, terms: dict[str, Any], e5: bool = False) -> list[dict[str, Any]]:
    """Per question: the fused pool's feature matrix, which rows are gold, and the rest of the order."""
    import numpy as np
    from fusion_sweep import Variant, scaled_fusion

    from kb import match_ranking as mr

    documents: dict[str, int] = {}
    for vector in terms["vectors"].values():
        for lexeme in vector:
            documents[lexeme] = documents.get(lexeme, 0) + 1
    n = len(terms["vectors"])
    fields = Variant().fields
    if e5:  # each chunk as kb.pipeline.reembed.chunk_embedding_text embeds it (cached in --cache)
        corpus.embed_variant(
            "e5",
            [" > ".join([corpus.documents[c["doc"]]["title"], *c["path"]]) + "\n\n" + c["text"] for c in corpus.chunks],
            model="local/e5",
        )
        corpus.embed_queries("e5", "local/e5")
    out = []
    for q, question in enumerate(corpus.questions):
        vector = corpus.vector("minilm", q)
        keyword = corpus.keyword(fields, q)
        fused = scaled_fusion(vector, keyword, 0.5)
        order = sorted(fused, key=lambda c: fused[c], reverse=True)
        pool = order[: mr.MATCH_POOL]
        best = fused[pool[0]] or 1.0
        v_dict, k_dict = dict(vector), dict(keyword)
        v_scaled = mr.scaled_to_best([v_dict.get(c) for c in pool])
        k_scaled = mr.scaled_to_best([k_dict.get(c) for c in pool])
        lexemes = terms["questions"][q]
        query = mr.QueryTerms(lexemes=lexemes, idf={t: mr.idf(documents.get(t, 0), n) for t in set(lexemes)})
        local = mr.pool_terms(query, [terms["vectors"][str(corpus.chunks[c]["id"])] for c in pool])
        rows = []
        for rank, c in enumerate(pool):
            chunk_vector = terms["vectors"][str(corpus.chunks[c]["id"])]
            rows.append(
                mr.feature_vector(
                    query=query,
                    chunk=chunk_vector,
                    fused=fused[c] / best,
                    vector=v_scaled[rank],
                    keyword=k_scaled[rank],
                    rank=rank,
                    length=len(chunk_vector),
                    pool_query=local,
                )
            )
        gold = set(question["gold"])
        similarities = corpus.vectors["e5"][pool] @ corpus.query_vectors["e5"][q] if e5 else np.zeros(len(pool))
        spread = float(similarities.max() - similarities.min()) or 1.0
        out.append(
            {
                "e5": (similarities - similarities.min()) / spread,
                "x": np.array(rows, dtype=np.float64),
                "gold": np.array([c in gold for c in pool]),
                "rest_rank": next(
                    (i for i, c in enumerate(order[mr.MATCH_POOL :], start=mr.MATCH_POOL + 1) if c in gold), None
                ),
                "doc": int(corpus.chunks[pool[0]]["doc"]) if not gold else int(corpus.chunks[min(gold)]["doc"]),
            }
        )
    return out


def fit(train: list[dict[str, Any]], l2: float = 1e-3, steps: int = 600) -> Any:
    """Listwise weights: maximise the softmax share of the gold rows in each pool (Adam)."""
    import numpy as np

    usable = [p for p in train if p["gold"].any() and not p["gold"].all()]
    f = usable[0]["x"].shape[1]
    w = np.zeros(f)
    w[0] = 5.0  # start from the fused order
    m, v = np.zeros(f), np.zeros(f)
    for step in range(1, steps + 1):
        grad = l2 * w
        for p in usable:
            s = p["x"] @ w
            s -= s.max()
            e = np.exp(s)
            prob = e / e.sum()
            gold_share = prob[p["gold"]].sum()
            # d(-log gold_share)/dw = E_prob[x] - E_{prob restricted to gold}[x]
            grad += (prob @ p["x"] - (prob[p["gold"]] / gold_share) @ p["x"][p["gold"]]) / len(usable)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= 0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w


def measure(pools_: list[dict[str, Any]], w: Any | None) -> dict[str, float]:
    import numpy as np

    ranks = []
    for p in pools_:
        if p["gold"].any():
            order = np.arange(len(p["gold"])) if w is None else np.argsort(-(p["x"] @ w), kind="stable")
            ranks.append(1 + int(np.nonzero(p["gold"][order])[0][0]))
        else:
            ranks.append(p["rest_rank"])
    n = len(ranks) or 1
    out = {f"recall@{k}": round(sum(1 for r in ranks if r and r <= k) / n, 4) for k in (1, 5, 10)}
    out["mrr"] = round(sum(1 / r for r in ranks if r) / n, 4)
    return out


def through_the_product(names: list[str]) -> dict[str, Any]:
    """Hybrid retrieval through chat.evaluation (kb.selectors.chunk_search, the product's path),
    with match ranking off (the fused order) and on, on the sets ingested by eval_sets.py."""
    import tempfile
    from unittest import mock

    from eval_sets import SETS as LOADERS
    from eval_sets import _ingested_bot

    from chat.evaluation import evaluate, load_questions
    from kb import match_ranking as mr

    out: dict[str, Any] = {}
    for name in names:
        docs, raw = LOADERS[name]()
        bot = _ingested_bot(name, len(docs))
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
            handle.write("".join(json.dumps(q) + "\n" for q in raw if not q.get("is_impossible")))
        questions = load_questions(Path(handle.name))
        with mock.patch.object(mr, "rerank", return_value=None):
            fused = evaluate(chatbot=bot, questions=questions, answer=False, modes=("hybrid",))["retrieval"]
        matched = evaluate(chatbot=bot, questions=questions, answer=False, modes=("hybrid",))["retrieval"]
        out[name] = {"fused": fused["hybrid"], "match": matched["hybrid"]}
        for how, row in out[name].items():
            figures = " ".join(f"{row[m]:>6.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr"))
            print(f"{name:<9} {how:<6} {figures}  p50 {row['p50_ms']:.1f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--cache", type=Path, required=True, help="folder of bench/fusion_sweep.py's chunk dumps")
    parser.add_argument(
        "--precise", action="store_true", help="also fit precise ranking: the e5 similarity as one more feature"
    )
    parser.add_argument(
        "--product", action="store_true", help="also measure through the product's search, match ranking off and on"
    )
    args = parser.parse_args()
    import django

    django.setup()
    if args.product:
        product = through_the_product(args.sets.split(","))
    import numpy as np
    from fusion_sweep import Corpus

    from kb import match_ranking as mr

    args.cache.mkdir(parents=True, exist_ok=True)
    names = args.sets.split(",")
    data: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        corpus = Corpus(name, args.cache)
        data[name] = pools(corpus, dump_terms(corpus), e5=args.precise)
        print(f"{name}: {len(data[name])} questions, {corpus.n} chunks", flush=True)
    report = fitted(data, names, list(mr.FEATURES), "match ranking")
    if args.precise:
        # The e5 similarity (min-max over the pool) as one more feature: precise ranking's weights.
        for name in names:
            for p in data[name]:
                p["x"] = np.hstack([p["x"], p.pop("e5")[:, None]])
        shipped = np.zeros(len(mr.FEATURES) + 1)
        shipped[0], shipped[-1] = 0.8, 0.2
        report["precise"] = fitted(data, names, [*mr.FEATURES, "e5"], "precise ranking", {"e5 mix 0.2": shipped})
    if args.product:
        report["through_the_product"] = product
    out = REPO / "bench" / "results" / "match_ranking.json"
    out.write_text(json.dumps(report, indent=2) + "\n")


def fitted(
    data: dict[str, list[dict[str, Any]]],
    names: list[str],
    features: list[str],
    label: str,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fused order, fixed `rules`, left-out-set and by-document fits, and the weights fitted on all."""
    import numpy as np

    from kb import match_ranking as mr

    report: dict[str, Any] = {"features": features, "pool": mr.MATCH_POOL, "sets": {}}
    for name in names:
        others = [p for other in names if other != name for p in data[other]]
        report["sets"][name] = {"fused": measure(data[name], None)}
        for rule, weights in (rules or {}).items():
            report["sets"][name][rule] = measure(data[name], weights)
        if others:
            report["sets"][name]["leave_set_out"] = measure(data[name], fit(others))
    # 5-fold by document over everything pooled (a document's questions stay together).
    folds = 5

    def fold(name: str, pool: dict[str, Any]) -> int:
        return zlib.crc32(f"{name}/{pool['doc']}".encode()) % folds

    for k in range(folds):
        w = fit([p for name in names for p in data[name] if fold(name, p) != k])
        for name in names:
            for p in data[name]:
                if fold(name, p) == k:
                    p["cv_weights"] = w
    for name in names:
        scored = [measure([p], p["cv_weights"]) for p in data[name]]
        report["sets"][name]["cv_by_document"] = {
            key: round(float(np.mean([s[key] for s in scored])), 4) for key in scored[0]
        }
    final = fit([p for name in names for p in data[name]])
    report["weights"] = {f: round(float(x), 4) for f, x in zip(features, final, strict=True)}
    print(f"\n{label}\n{'set':<9} {'how':<16} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}")
    for name in names:
        for how, row in report["sets"][name].items():
            figures = " ".join(f"{row[m]:>6.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr"))
            print(f"{name:<9} {how:<16} {figures}")
    print(f"\n{label}: weights fitted on every set:", json.dumps(report["weights"]))
    return report


if __name__ == "__main__":
    main()
