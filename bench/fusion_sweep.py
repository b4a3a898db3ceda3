"""How hybrid retrieval fuses its two rankings: a sweep of fusion rules on the evaluation sets.

    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/eval_sets.py --ingest-only
    GROUNDWORK_DATA_DIR=.data/eval .venv/bin/python bench/fusion_sweep.py [--sets clapnq,squad2] [--limit N]

For every answerable question of each set (ingested earlier by eval_sets.py), the vector and the
BM25 candidate lists are fetched once through kb.selectors (50 each, with their scores); every
fusion rule then re-ranks the same lists, so rules are compared on identical inputs. Reported:
recall@1/5/10 and MRR per rule and set, as a table and in bench/results/fusion_sweep.json.

    ... bench/fusion_sweep.py --variants --cache .data/cache [--ideas fusion,context,e5]

Ranking ideas (issue 12) over a dump of each set's chunks, stored under "variants" per set:
contextual chunk text, the query-shape fusion rule, neighbour and document smoothing, e5 as a
second scorer (see `variants`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
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
    from kb.keyword_search import keyword_candidates
    from kb.models import Chunk
    from kb.selectors import _vector_candidates

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
        keyword = keyword_candidates(kbs, q.question, depth)
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


# --------------------------------------------------------------------------------------------
# Ranking variants (Groundwork issue 12): ideas that need more than the two candidate lists.
#
# Each set's live chunks are dumped once (`--variants --cache DIR`): their text, heading path,
# document, neighbours, the lexemes Postgres' text search makes of each field, the stored MiniLM
# vectors, and re-embedded vectors for the context variants and for e5. BM25 (the product's
# k1/b, document length = distinct lexemes, as in kb.pipeline.index.term_stats) and cosine
# similarity are then computed here, exhaustively, so every variant sees identical inputs and no
# model runs twice. The "baseline" variant reproduces the product's rule on the product's texts;
# its figures are within noise of the "shipped" rule above (which reads the database).
# --------------------------------------------------------------------------------------------

BM25_K1, BM25_B = 1.2, 0.75
POOL = 50  # candidates per retriever, as chunk_search


def _lexemes_sql(config: str) -> str:
    return f"""
        SELECT u.lexeme, coalesce(array_length(u.positions, 1), 1)
        FROM unnest(to_tsvector('{config}'::regconfig, %s)) AS u(lexeme, positions, weights)
    """  # noqa: S608 (config is a regconfig name from kb.languages)


def _first_line(text: str) -> str:
    """A document's own title: its first non-empty line when that reads like one (short)."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= 200 else ""
    return ""


def dump_corpus(name: str, cache: Path) -> Path:
    """Write DIR/<set>-corpus.json and -vectors.npz once; later runs read them."""
    import numpy as np

    path = cache / f"{name}-corpus.json"
    if path.exists():
        return path
    from django.db import connection
    from eval_sets import SETS, _ingested_bot

    from chat.evaluation import _shingles, load_questions, normalize
    from kb import embedding as embedding_api
    from kb.languages import text_search_config
    from kb.models import Chunk
    from kb.pipeline.index import title_words

    docs, raw = SETS[name]()
    bot = _ingested_bot(name, len(docs))
    if bot is None:
        raise SystemExit(f"{name}: not ingested yet; run bench/eval_sets.py --ingest-only first")
    kbs = list(bot.knowledge_bases.all())
    config = text_search_config(kbs[0])
    chunks = list(
        Chunk.objects.filter(knowledge_base__in=kbs, is_live=True)
        .select_related("document")
        .order_by("document_id", "ordinal")
    )
    sql = _lexemes_sql(config)

    def lexemes(text: str) -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute(sql, [text])
            return {lexeme: int(tf) for lexeme, tf in cursor.fetchall()}

    first_chunk: dict[int, str] = {}
    for c in chunks:
        first_chunk.setdefault(c.document_id, c.text)
    doc_ids = sorted({c.document_id for c in chunks})
    titles = {c.document_id: c.document.title for c in chunks}
    heads = {d: _first_line(first_chunk[d]) for d in doc_ids}
    rows = []
    for c in chunks:
        rows.append(
            {
                "id": c.pk,
                "doc": doc_ids.index(c.document_id),
                "ordinal": c.ordinal,
                "path": list(c.section_path or []),
                "text": c.text,
                "lex_text": lexemes(c.text),
                "lex_path": lexemes(json.dumps(c.section_path)) if c.section_path else {},
            }
        )
    documents = [
        {
            "title": titles[d],
            "head": heads[d],
            "lex_title": lexemes(title_words(titles[d])),
            "lex_head": lexemes(heads[d]),
        }
        for d in doc_ids
    ]
    # Gold chunks over the whole set, by chat.evaluation._GoldMatcher's rules (computed once per chunk).
    normalized = [normalize(c.text) for c in chunks]
    shingles = [_shingles(c.text) for c in chunks]
    qpath = Path(f"/tmp/fusion-{name}.jsonl")
    qpath.write_text("".join(json.dumps(q) + "\n" for q in raw))
    questions: list[dict[str, Any]] = []
    for q in load_questions(qpath):
        if q.is_impossible:
            continue
        if q.gold_passages:
            golds = [_shingles(p) for p in q.gold_passages]
            gold = [i for i, s in enumerate(shingles) if any(len(s & g) >= 0.5 * min(len(s), len(g)) for g in golds)]
        elif q.gold_documents:
            wanted = {normalize(d) for d in q.gold_documents}
            gold = [i for i, c in enumerate(chunks) if normalize(c.document.title) in wanted]
        else:
            answers = [normalize(a) for a in q.answers if normalize(a)]
            gold = [i for i, t in enumerate(normalized) if any(a in t for a in answers)]
        if gold or q.answers or q.gold_documents:  # no gold chunk at all counts as a miss, as in `collect`
            questions.append({"question": q.question, "gold": gold, "lex": lexemes(q.question)})
    model = embedding_api.LOCAL_EMBEDDING_MODEL
    stored = np.array([c.embedding for c in chunks], dtype=np.float32)
    queries = np.array([embedding_api.embed_query(q["question"], model=model) for q in questions], dtype=np.float32)
    path.write_text(json.dumps({"chunks": rows, "documents": documents, "questions": questions}))
    np.savez(cache / f"{name}-vectors.npz", minilm_stored=stored, minilm_query=queries)
    return path


def embedded(name: str, cache: Path, key: str, texts: list[str], model: str, query: bool = False) -> Any:
    """Vectors of `texts` under `key`, computed once and kept in DIR/<set>-<key>.npy."""
    import numpy as np

    from kb import embedding as embedding_api

    path = cache / f"{name}-{key}.npy"
    if path.exists():
        return np.load(path)
    if query:
        out = [embedding_api.embed_query(t, model=model) for t in texts]
    else:
        out = embedding_api.embed_passages(texts, model=model, batch_size=16)
    array = np.array(out, dtype=np.float32)
    np.save(path, array)
    return array


class Corpus:
    """One set's dumped chunks and questions, with exhaustive BM25 and cosine scoring."""

    def __init__(self, name: str, cache: Path) -> None:
        import numpy as np

        data = json.loads(dump_corpus(name, cache).read_text())
        self.name, self.cache = name, cache
        self.chunks: list[dict[str, Any]] = data["chunks"]
        self.documents: list[dict[str, Any]] = data["documents"]
        self.questions: list[dict[str, Any]] = data["questions"]
        self.n = len(self.chunks)
        self.unfound = int(data.get("unfound", 0))  # (older dumps) questions left out for want of a gold chunk
        self.doc = np.array([c["doc"] for c in self.chunks])
        same_prev = np.r_[False, self.doc[1:] == self.doc[:-1]]
        same_next = np.r_[self.doc[:-1] == self.doc[1:], False]
        self.prev = np.where(same_prev, np.arange(self.n) - 1, -1)
        self.next = np.where(same_next, np.arange(self.n) + 1, -1)
        stored = np.load(cache / f"{name}-vectors.npz")
        self.vectors: dict[str, Any] = {"minilm": stored["minilm_stored"]}
        self.query_vectors: dict[str, Any] = {"minilm": stored["minilm_query"]}
        self._indexes: dict[tuple[str, ...], dict[str, tuple[Any, Any]]] = {}

    def context_title(self, doc: int) -> str:
        """The variant's document title: the file name's words, then the document's first line."""
        from kb.pipeline.index import title_words

        d = self.documents[doc]
        words = title_words(d["title"])
        return f"{words}: {d['head']}" if d["head"] and d["head"] != words else words

    def embed_variant(self, key: str, texts: list[str], model: str = "local/minilm") -> None:
        if key not in self.vectors:
            self.vectors[key] = embedded(self.name, self.cache, f"{key}-passages", texts, model)

    def embed_queries(self, key: str, model: str) -> None:
        if key not in self.query_vectors:
            texts = [q["question"] for q in self.questions]
            self.query_vectors[key] = embedded(self.name, self.cache, f"{key}-queries", texts, model, query=True)

    def index(self, fields: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
        """lexeme -> (chunk positions, BM25 contribution) over the chunks' `fields` concatenated."""
        import numpy as np

        if fields in self._indexes:
            return self._indexes[fields]
        tfs: list[dict[str, int]] = []
        for c in self.chunks:
            tf: dict[str, int] = {}
            for f in fields:
                source = c.get(f"lex_{f}") if f in ("text", "path") else self.documents[c["doc"]][f"lex_{f}"]
                for lexeme, count in (source or {}).items():
                    tf[lexeme] = tf.get(lexeme, 0) + count
            tfs.append(tf)
        dl = np.array([len(t) for t in tfs], dtype=np.float64)
        avgdl = max(dl.mean(), 1.0)
        postings: dict[str, list[tuple[int, int]]] = {}
        for i, tf in enumerate(tfs):
            for lexeme, count in tf.items():
                postings.setdefault(lexeme, []).append((i, count))
        out = {}
        for lexeme, rows in postings.items():
            idx = np.array([r[0] for r in rows])
            tf_arr = np.array([r[1] for r in rows], dtype=np.float64)
            df = len(rows)
            idf = np.log(1 + (self.n - df + 0.5) / (df + 0.5))
            out[lexeme] = (
                idx,
                idf * tf_arr * (BM25_K1 + 1) / (tf_arr + BM25_K1 * (1 - BM25_B + BM25_B * dl[idx] / avgdl)),
            )
        self._indexes[fields] = out
        return out

    def keyword(self, fields: tuple[str, ...], q: int) -> list[tuple[int, float]]:
        import numpy as np

        index = self.index(fields)
        scores = np.zeros(self.n)
        for lexeme in self.questions[q]["lex"]:
            if lexeme in index:
                idx, contribution = index[lexeme]
                scores[idx] += contribution
        top = np.argsort(-scores)[:POOL]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def vector(self, key: str, q: int, query_key: str = "minilm") -> list[tuple[int, float]]:
        import numpy as np

        sims = self.vectors[key] @ self.query_vectors[query_key][q]
        top = np.argsort(-sims)[:POOL]
        return [(int(i), float(sims[i])) for i in top]


def scaled_fusion(vector: Ranked, keyword: Ranked, alpha: float) -> dict[int, float]:
    """kb.selectors._fuse: each list scaled to its best (floor 0), absent: that list's lowest."""
    v, k = _normalised(vector, "tmm"), _normalised(keyword, "tmm")
    v_floor, k_floor = min(v.values(), default=0.0), min(k.values(), default=0.0)
    return {c: alpha * v.get(c, v_floor) + (1 - alpha) * k.get(c, k_floor) for c in set(v) | set(k)}


@dataclass
class Variant:
    fields: tuple[str, ...] = ("text", "path", "title")  # what BM25 indexes per chunk
    vectors: str = "minilm"  # which passage vectors
    query_vectors: str = "minilm"  # which query vectors
    alpha: Callable[[str], float] = field(default=lambda q: 0.5)  # vector weight per question
    neighbours: float = 0.0  # share of the better neighbour's fused score added
    document: float = 0.0  # share of the document's best other chunk's fused score added
    e5: float = 0.0  # weight of e5 similarity when re-ranking the top `e5_pool`
    e5_pool: int = 20
    single: str | None = None


def rank_variant(corpus: Corpus, v: Variant, q: int) -> list[int]:
    import numpy as np

    question = corpus.questions[q]["question"]
    vector = corpus.vector(v.vectors, q, v.query_vectors)
    keyword = corpus.keyword(v.fields, q)
    if v.single:
        return [c for c, _ in (vector if v.single == "vector" else keyword)]
    s = scaled_fusion(vector, keyword, v.alpha(question))
    if v.neighbours:
        s = {
            c: x + v.neighbours * max(s.get(int(corpus.prev[c]), 0.0), s.get(int(corpus.next[c]), 0.0))
            for c, x in s.items()
        }
    if v.document:
        best: dict[int, list[float]] = {}
        for c, x in s.items():
            best.setdefault(int(corpus.doc[c]), []).append(x)
        for scores in best.values():
            scores.sort(reverse=True)
        s = {
            c: x + v.document * next(iter([y for y in best[int(corpus.doc[c])] if y != x] or [0.0]))
            for c, x in s.items()
        }
    order = sorted(s, key=lambda c: s[c], reverse=True)
    if v.e5:
        top = order[: v.e5_pool]
        e = corpus.vectors["e5"][top] @ corpus.query_vectors["e5"][q]
        low, high = float(e.min()), float(e.max())
        e = (e - low) / ((high - low) or 1.0)
        best_s = s[top[0]] or 1.0
        mixed = {c: (1 - v.e5) * s[c] / best_s + v.e5 * float(e[i]) for i, c in enumerate(top)}
        order = sorted(top, key=lambda c: mixed[c], reverse=True) + order[v.e5_pool :]
    del np
    return order


def score_variant(corpus: Corpus, v: Variant, questions: list[int] | None = None) -> dict[str, float]:
    ranks = []
    for q in questions if questions is not None else range(len(corpus.questions)):
        gold = set(corpus.questions[q]["gold"])
        order = rank_variant(corpus, v, q)
        ranks.append(next((i for i, c in enumerate(order, start=1) if c in gold), None))
    n = (len(ranks) + (corpus.unfound if questions is None else 0)) or 1
    out = {f"recall@{k}": round(sum(1 for r in ranks if r and r <= k) / n, 4) for k in (1, 5, 10)}
    out["mrr"] = round(sum(1 / r for r in ranks if r) / n, 4)
    return out


# The query-shape rule tried (not shipped): a question holding a number, an acronym or an
# identifier (IFITM3, HIV-1, 10-Q, mRNA) leans on keyword search; chosen on the even-numbered
# COVID-QA questions.
_EXACT_TERMS = re.compile(r"\d|\b[A-Z]{2,}|\b[a-z]+[A-Z]\w*")


def shape_rule(question: str) -> float:
    """Vector weight: 0.3 for "exact terms" questions, else the product's 0.5."""
    return 0.3 if _EXACT_TERMS.search(question) else 0.5


def variants(corpus: Corpus, ideas: set[str]) -> dict[str, Variant]:
    """The named ideas; "context" and "e5" embed the set's chunks once (cached in --cache)."""
    out = {
        "baseline (product texts, equal weights)": Variant(),
        "baseline vector only": Variant(single="vector"),
        "baseline keyword only": Variant(single="keyword"),
        "query shape rule (exact terms: vector 0.3)": Variant(alpha=shape_rule),
        "vector 0.3 for every question": Variant(alpha=lambda q: 0.3),
        "neighbours +0.1": Variant(neighbours=0.1),
        "neighbours +0.2": Variant(neighbours=0.2),
        "document +0.1": Variant(document=0.1),
        "document +0.2": Variant(document=0.2),
        "document +0.3": Variant(document=0.3),
    }
    if "context" in ideas:
        corpus.embed_variant("minilm_plain", [c["text"] for c in corpus.chunks])
        corpus.embed_variant(
            "minilm_context",
            [" > ".join([corpus.context_title(c["doc"]), *c["path"]]) + "\n\n" + c["text"] for c in corpus.chunks],
        )
        full = ("text", "path", "title", "head")
        out |= {
            "context: none (text only, both retrievers)": Variant(fields=("text",), vectors="minilm_plain"),
            "context: + own title (first line), both": Variant(fields=full, vectors="minilm_context"),
            "context: + own title, keyword only": Variant(fields=full),
            "context: + own title, vector only": Variant(vectors="minilm_context"),
        }
    if "e5" in ideas:
        corpus.embed_variant(
            "e5",
            [" > ".join([corpus.documents[c["doc"]]["title"], *c["path"]]) + "\n\n" + c["text"] for c in corpus.chunks],
            model="local/e5",
        )
        corpus.embed_queries("e5", "local/e5")
        out |= {
            "e5 vector only": Variant(single="vector", vectors="e5", query_vectors="e5"),
            "e5 instead of MiniLM (hybrid)": Variant(vectors="e5", query_vectors="e5"),
            "e5 instead of MiniLM + shape rule": Variant(vectors="e5", query_vectors="e5", alpha=shape_rule),
        }
        for w in (0.2, 0.3, 0.5):
            out[f"e5 re-ranks top 20, weight {w}"] = Variant(e5=w)
    return out


def run_variants(names: list[str], cache: Path, ideas: set[str]) -> None:
    out = REPO / "bench" / "results" / "fusion_sweep.json"
    existing = json.loads(out.read_text()) if out.exists() else {}
    for name in names:
        corpus = Corpus(name, cache)
        rows = {label: score_variant(corpus, v) for label, v in variants(corpus, ideas).items()}
        # The shape rule was chosen on the even-numbered COVID-QA questions: both halves, every set.
        halves = {
            half: {
                label: score_variant(corpus, v, list(range(start, len(corpus.questions), 2)))
                for label, v in (("baseline", Variant()), ("query shape rule", Variant(alpha=shape_rule)))
            }
            for half, start in (("even (tuning half)", 0), ("odd", 1))
        }
        rows["halves"] = halves  # type: ignore[assignment]
        existing = json.loads(out.read_text()) if out.exists() else {}  # re-read: another run may have written
        existing.setdefault(name, {})["variants"] = {
            "questions": len(corpus.questions) + corpus.unfound,
            "questions_without_a_gold_chunk": corpus.unfound,
            "chunks": corpus.n,
            "rows": rows,
        }
        print(f"\n=== {name}: {len(corpus.questions)} questions, {corpus.n} chunks ===")
        print(f"{'variant':<44} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'MRR':>7}")
        for label, row in rows.items():
            if label == "halves":
                continue
            print(f"{label:<44} " + " ".join(f"{row[m]:>7.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr")))
        out.write_text(json.dumps(existing, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", default="squad2,clapnq,covidqa,sec10q")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--depth", type=int, default=50, help="candidates per retriever")
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder keeping each set's candidate lists between runs"
    )
    parser.add_argument("--variants", action="store_true", help="measure the ranking ideas (needs --cache)")
    parser.add_argument(
        "--ideas", default="fusion", help="with --variants: fusion[,context][,e5] (context and e5 embed every chunk)"
    )
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    results: dict[str, Any] = {}
    if args.variants:
        if args.cache is None:
            raise SystemExit("--variants needs --cache DIR (chunk dumps and embeddings are kept there)")
        args.cache.mkdir(parents=True, exist_ok=True)
        run_variants(args.sets.split(","), args.cache, set(args.ideas.split(",")))
        return
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
