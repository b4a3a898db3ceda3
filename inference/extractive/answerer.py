"""The extractive answerer: rank candidate sentences, decide whether any answers, cite them.

Stage 1 ranks the sentences (which one answers?); stage 2 re-scores the best few, adding the
stage-1 logit and its margin over the runner-up (does it answer at all?). The best sentence's
stage-2 probability must reach the threshold, else the answer is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.embedder import Embedder
from inference.extractive.e5_feature import SentenceScorer, calibrate
from inference.extractive.features import analyse_question, coverage, prepare_source, sentence_feature_values
from inference.extractive.prompt_format import Source
from inference.extractive.weights import (
    RANK_WEIGHTS_DENSE,
    RANK_WEIGHTS_E5,
    RANK_WEIGHTS_LEXICAL,
    SUPPORT_WEIGHTS_DENSE,
    SUPPORT_WEIGHTS_E5,
    SUPPORT_WEIGHTS_LEXICAL,
)
from inference.text import WHITESPACE_RE, content_terms, detect_language

#: Support probability the best sentence must reach. Chosen on the SQuAD-2 / ClapNQ development
#: halves for >= 0.8 refusal accuracy on the unanswerable questions of both, cross-validated,
#: with a margin for the held-out halves (the same value suits both weight sets, with and
#: without the dense feature). See bench/results/extractive_eval.json for the trade-off curves
#: before changing it.
DEFAULT_THRESHOLD = 0.5

DEFAULT_MAX_SENTENCES = 3

# Extra sentences are added only when they are nearly as well supported as the best one:
# a second sentence that merely shares the topic dilutes the answer and the citation.
_EXTRA_SENTENCE_MARGIN = 0.15


# Sentences shorter than this (in word tokens) are headings or fragments: context, not answers.
_MIN_ANSWER_TOKENS = 4

# Very long "sentences" (tables flattened to text, run-on lists) are trimmed at a clause boundary.
_MAX_ANSWER_CHARS = 600


@dataclass
class ScoredSentence:
    """A candidate sentence with its support probability and the features that produced it."""

    source_number: int
    text: str
    score: float  # support probability (stage 2): compared with the refusal threshold
    features: dict[str, float]
    rank_score: float = 0.0  # stage-1 probability that this is the answering sentence

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the message trace."""
        return {
            "source": self.source_number,
            "text": self.text,
            "score": round(self.score, 4),
            "rank_score": round(self.rank_score, 4),
            "features": {k: round(v, 4) for k, v in self.features.items()},
        }


@dataclass
class ExtractiveAnswer:
    """Result of :func:`answer_extractively`.

    ``text`` is empty when ``refused``. ``sentences`` are the chosen ones in answer order;
    ``candidates`` are the best-scoring sentences overall (chosen or not) so a trace can show why
    the answerer refused or what it passed over.
    """

    text: str
    refused: bool
    sentences: list[ScoredSentence]
    candidates: list[ScoredSentence]
    question_features: dict[str, Any]
    threshold: float
    cited_sources: list[int] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def best_score(self) -> float:
        """Support probability of the best candidate (0.0 when there was none)."""
        return self.candidates[0].score if self.candidates else 0.0

    def trace(self) -> dict[str, Any]:
        """JSON-ready trace to store on the assistant message."""
        return {
            "answerer": "local/extractive",
            "refused": self.refused,
            "threshold": self.threshold,
            "best_score": round(self.best_score, 4),
            "question": self.question_features,
            "chosen": [s.as_dict() for s in self.sentences],
            "candidates": [s.as_dict() for s in self.candidates],
            "elapsed_ms": round(self.elapsed_ms, 2),
        }


# Sentences embedded for the dense feature (the lexical ranker's best): bounds the embedder's
# time to one batch whatever the number and length of the sources.
_DENSE_CANDIDATES = 12

# Sentences scored by e5 (the best by the ranker before e5): e5 is ~4.5x slower than MiniLM.
_E5_CANDIDATES = 6

# Stage 2 is evaluated on the best few stage-1 sentences only: the answer is drawn from them.
_SUPPORT_CANDIDATES = 5


def _logit(features: Mapping[str, float], weights: Mapping[str, float]) -> float:
    z = weights.get("bias", 0.0)
    for name, value in features.items():
        z += weights.get(name, 0.0) * value
    return max(-30.0, min(30.0, z))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def rank_and_support(
    candidates: list[ScoredSentence],
    rank_weights: Mapping[str, float],
    support_weights: Mapping[str, float],
) -> list[ScoredSentence]:
    """Apply both stages to candidates carrying their features; returns them best-ranked first.

    Sets ``rank_score`` (stage 1) on all of them and ``score`` (stage 2, the support probability
    compared with the refusal threshold) on the best ``_SUPPORT_CANDIDATES``; the rest get 0.
    Exposed so the evaluation script can refit weights on exactly the answerer's computation.
    """
    logits = [_logit(c.features, rank_weights) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: -logits[i])
    ranked = [candidates[i] for i in order]
    ranked_logits = [logits[i] for i in order]
    for pos, cand in enumerate(ranked):
        cand.rank_score = _sigmoid(ranked_logits[pos])
        cand.score = 0.0
        if pos >= _SUPPORT_CANDIDATES:
            continue
        # Margin to the best other sentence: a clear winner is more trustworthy than a tie.
        other = ranked_logits[1] if pos == 0 and len(ranked) > 1 else ranked_logits[0]
        if len(ranked) == 1:
            other = -10.0
        cand.features["rank_logit"] = ranked_logits[pos] / 10.0
        cand.features["rank_margin"] = max(-1.0, min(1.0, (ranked_logits[pos] - other) / 10.0))
        cand.score = _sigmoid(_logit(cand.features, support_weights))
    return ranked


def choose_sentences(ranked: Sequence[ScoredSentence], threshold: float, max_sentences: int) -> list[ScoredSentence]:
    """The sentences to answer with (empty = refuse), from ``rank_and_support`` output."""
    if not ranked or max_sentences <= 0:
        return []
    best = ranked[0]
    if best.score < threshold:
        return []
    chosen = [best]
    seen = {best.text.lower()}
    for cand in ranked[1:_SUPPORT_CANDIDATES]:
        if len(chosen) >= max_sentences:
            break
        # Extra sentences must be supported on their own and nearly as well as the best one:
        # a sentence that merely shares the topic dilutes the answer and its citations.
        if cand.score < max(threshold, best.score - _EXTRA_SENTENCE_MARGIN):
            continue
        if cand.text.lower() in seen:
            continue  # the same sentence in two sources: cite it once
        seen.add(cand.text.lower())
        chosen.append(cand)
    return chosen


def _trim(text: str) -> str:
    """Light trimming: collapse whitespace and cut over-long units at a clause boundary."""
    text = WHITESPACE_RE.sub(" ", text).strip()
    if len(text) <= _MAX_ANSWER_CHARS:
        return text
    cut = max(text.rfind(sep, 0, _MAX_ANSWER_CHARS) for sep in ("; ", ", ", " "))
    return text[: cut if cut > 0 else _MAX_ANSWER_CHARS].rstrip(" ,;") + " …"


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def sentence_features(
    question: str,
    sources: Sequence[Source],
    *,
    language: str | None = None,
    embedder: Embedder | None = None,
    e5: SentenceScorer | None = None,
) -> tuple[list[ScoredSentence], dict[str, Any]]:
    """Candidate sentences of ``sources`` with their features (scores not yet set).

    Returns the candidates in source order and question-level information (answer type, key
    terms) for the trace.
    """
    # No language given: the question's own (a German question gets no English stemming or stop words).
    english = (language or detect_language(question)).lower().startswith("en")
    q = analyse_question(question, english)
    prepared = [(src, *prepare_source(src, english)) for src in sources]
    all_stems: frozenset[str] = frozenset().union(*(p[2] for p in prepared)) if prepared else frozenset()
    cov_all = coverage(q, all_stems)

    candidates: list[ScoredSentence] = []
    for src, sentences, src_stems in prepared:
        header = " ".join(x for x in (src.title, src.section) if x)
        header_stems = frozenset(t.stem for t in content_terms(header, english=english))
        cov_src = coverage(q, src_stems)
        for i, sent in enumerate(sentences):
            if sent.n_tokens < _MIN_ANSWER_TOKENS:
                continue
            if sent.text.rstrip().endswith("?"):
                # A question is never the answer (FAQ pages and Q&A entries repeat the question).
                continue
            prev = sentences[i - 1] if i > 0 else None
            feats = sentence_feature_values(q, sent, prev, header_stems, src_stems, cov_src, cov_all, english)
            candidates.append(ScoredSentence(src.number, _trim(sent.text), 0.0, feats))

    if embedder is not None and candidates:
        # Embedding is the expensive step (~20 ms per sentence on 2 cores), so only the
        # sentences the lexical ranker puts in its top _DENSE_CANDIDATES are embedded, in one
        # batched call with the question. The others keep dense = 0 and so rank below them.
        shortlist = sorted(candidates, key=lambda c: -_logit(c.features, RANK_WEIGHTS_LEXICAL))[:_DENSE_CANDIDATES]
        vectors = embedder.embed([question] + [c.text for c in shortlist])
        qv = vectors[0]
        # An embedder whose similarities live on another scale than MiniLM's (the weights were
        # fitted on MiniLM) maps them onto it (inference.e5.E5SentenceEmbedder).
        onto_minilm_scale = getattr(embedder, "calibrate", None)
        for cand, v in zip(shortlist, vectors[1:], strict=True):
            similarity = _cosine(qv, v)
            cand.features["dense"] = onto_minilm_scale(similarity) if onto_minilm_scale is not None else similarity

    if e5 is not None and candidates:
        # e5's question–sentence similarity (and its lead over the best other sentence) on the
        # shortlist of the ranker without it; the others get the shortlist's lowest value.
        pre = RANK_WEIGHTS_DENSE if embedder is not None else RANK_WEIGHTS_LEXICAL
        shortlist = sorted(candidates, key=lambda c: -_logit(c.features, pre))[:_E5_CANDIDATES]
        sims = [calibrate(x) for x in e5.similarities(question, [c.text for c in shortlist])]
        floor = min(sims)
        for cand in candidates:
            cand.features["e5"] = floor
        for cand, sim in zip(shortlist, sims, strict=True):
            cand.features["e5"] = sim
        for cand in candidates:
            others = [c.features["e5"] for c in shortlist if c is not cand]
            cand.features["e5_gap"] = max(-1.0, min(1.0, cand.features["e5"] - max(others))) if others else 1.0

    qinfo: dict[str, Any] = {
        "answer_type": q.answer_type,
        "terms": {k: round(v, 3) for k, v in q.terms.items()},
        "negated": q.negated,
        "missing_everywhere": sorted(s for s in q.terms if s not in all_stems),
        "language": "en" if english else (language or detect_language(question)),
        "dense": embedder is not None,
        "e5": e5 is not None,
    }
    return candidates, qinfo


def _cross_lingual_support(
    question: str, sources: Sequence[Source], ranked: list[ScoredSentence], language: str | None
) -> list[ScoredSentence]:
    """A question in one language, sources in another: the lexical features see no shared word,
    so a sentence's support is its (calibrated) dense similarity alone when that is higher."""
    question_language = (language or detect_language(question)).lower()[:2]
    foreign = {s.number for s in sources if detect_language(s.text[:600]) != question_language}
    if not foreign:
        return ranked
    for sentence in ranked:
        dense = sentence.features.get("dense")
        if sentence.source_number in foreign and dense is not None:
            sentence.score = max(sentence.score, float(dense))
    return sorted(ranked, key=lambda sentence: sentence.score, reverse=True)


def answer_extractively(
    question: str,
    sources: list[Source],
    *,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
    language: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    embedder: Embedder | None = None,
    e5: SentenceScorer | None = None,
) -> ExtractiveAnswer:
    """Answer ``question`` with verbatim sentences from ``sources``, or refuse.

    Each chosen sentence is followed by its citation ``[n]`` (``n`` = ``Source.number``). The
    answer is refused (``refused=True``, empty ``text``) when the best sentence's support
    probability is below ``threshold``.
    ``language`` other than English switches off stemming, stop words and answer-type checks
    (the refusal calibration is English-only). ``embedder`` adds dense similarity as a feature;
    its vectors are computed in one batched call.
    """
    started = time.perf_counter()
    candidates, qinfo = sentence_features(question, sources, language=language, embedder=embedder, e5=e5)
    if e5 is not None and embedder is not None:  # the e5 weights were fitted with both
        ranked = rank_and_support(candidates, RANK_WEIGHTS_E5, SUPPORT_WEIGHTS_E5)
    elif embedder is not None:
        ranked = rank_and_support(candidates, RANK_WEIGHTS_DENSE, SUPPORT_WEIGHTS_DENSE)
    else:
        ranked = rank_and_support(candidates, RANK_WEIGHTS_LEXICAL, SUPPORT_WEIGHTS_LEXICAL)
    if embedder is not None:
        ranked = _cross_lingual_support(question, sources, ranked, language)
    chosen = choose_sentences(ranked, threshold, max_sentences)
    return ExtractiveAnswer(
        text=" ".join(f"{s.text} [{s.source_number}]" for s in chosen),
        refused=not chosen,
        sentences=chosen,
        candidates=ranked[:_SUPPORT_CANDIDATES],
        question_features=qinfo,
        threshold=threshold,
        cited_sources=sorted({s.source_number for s in chosen}),
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
    )
