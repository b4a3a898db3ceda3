"""Grounding check for any model's answer: are its claims found in the sources they cite?

Runs after every answer (the local extractive answerer and real LLMs alike), so it has to accept
paraphrase, not only verbatim copies. For each answer sentence it measures how much of the
sentence's content is found in the text of the sources it cites:

- ``local``: the best rarity-weighted coverage of the sentence's content words (light stemming,
  general-English rarity, from :mod:`inference.text`) by a window of two consecutive source
  sentences. A paraphrase keeps most content words together in one place; a claim stitched from
  words scattered over a document does not.
- ``overall``: the same coverage by the whole cited text (a claim may summarise a passage).
- ``ngram``: share of the sentence's word trigrams found in the cited text (verbatim copying).
- ``dense``: optional cosine similarity to the best source sentence window, from a local embedder.
- ``critical_missing``: numbers and names of the sentence that appear nowhere in the cited text.
  Invented facts are mostly numbers and names, and a swapped year is still "98% covered".
- negation: a negated sentence whose best supporting text is not negated loses support.
- ``critical_far``: names and numbers the cited text has, but not near the passage that supports
  the rest of the sentence. Reported only: it flags half of the entity swaps made with another
  name of the same document, but also most honest summaries that join distant sentences, so it
  does not change the verdict. Role swaps within one passage are beyond a lexical check.

The support score combines them (see ``_support``); a sentence is ``supported`` when the score
reaches ``SUPPORT_THRESHOLD`` and no critical term is missing. Calibrated on ClapNQ's
human-written long answers (paraphrases of their gold passage) against the same answers checked
against other passages, and against answers with a number or name swapped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from inference.embedder import Embedder
from inference.text import content_terms, fold, split_sentences, stem, tokenize

__all__ = [
    "SUPPORT_THRESHOLD",
    "GroundingReport",
    "SentenceVerdict",
    "check_answer",
    "parse_citations",
]

Verdict = Literal["supported", "unsupported", "no_citation"]
Label = Literal["grounded", "partially_grounded", "ungrounded", "no_claims"]

#: Support score at or above which a cited sentence counts as supported.
SUPPORT_THRESHOLD = 0.6

# Overall grade at or above which an answer with some unsupported part is "partially grounded".
_PARTIAL_GRADE = 0.4

# Support is multiplied by this when the sentence is negated but the text supporting it is not
# ("Part-time employees receive no paid leave" against "...receive leave in proportion...").
_NEGATION_PENALTY = 0.6
_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "without", "cannot"})

# A sentence needs at least this many content words to be a claim ("Sure, here it is:" is not).
_MIN_CLAIM_TERMS = 2

# [1] [1, 2] [1;2] [1-3] [Source 1] [source 2, 3]; "[1][2]" is two adjacent matches.
_CITATION_RE = re.compile(r"\[\s*(?:sources?\s*)?(\d{1,3}(?:\s*(?:[,;]|-|–)\s*\d{1,3})*)\s*\]", re.I)
# Citations written after the full stop ("... in 1598. [1]") belong to the sentence before it.
_TRAILING_CITATION_RE = re.compile(r"([.!?])((?:\s*\[[^\[\]\n]{1,40}\])+)(?=\s|$)")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:!?])")
_WS_RE = re.compile(r"[ \t]+")


@dataclass
class SentenceVerdict:
    """One answer sentence: what it cites, how well the cited text supports it."""

    text: str  # without its citation markers
    citations: list[int]
    verdict: Verdict
    support: float  # combined score in [0, 1]; 0 when nothing valid is cited
    claim: bool  # False for sentences without content ("Here is what I found:"): not graded
    signals: dict[str, float] = field(default_factory=dict)
    critical_missing: list[str] = field(default_factory=list)
    critical_far: list[str] = field(default_factory=list)
    best_source: int | None = None  # the source (cited or not) that supports it best

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the message trace."""
        return {
            "text": self.text,
            "citations": self.citations,
            "verdict": self.verdict,
            "support": round(self.support, 4),
            "claim": self.claim,
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "critical_missing": self.critical_missing,
            "critical_far": self.critical_far,
            "best_source": self.best_source,
        }


@dataclass
class GroundingReport:
    """Result of :func:`check_answer`.

    ``answer`` is the input with citations to non-existent sources removed (``removed_citations``
    lists those numbers, once each). ``grade`` in [0, 1] is the content-weighted mean support of
    the claim sentences (uncited claims count 0). ``label``: ``grounded`` (every claim supported),
    ``partially_grounded`` (some are, or the grade reaches 0.4), ``ungrounded``, or ``no_claims``
    (nothing to check, e.g. an empty answer or a refusal).
    """

    answer: str
    removed_citations: list[int]
    sentences: list[SentenceVerdict]
    grade: float
    label: Label
    cited_sources: list[int]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the message trace."""
        return {
            "grade": round(self.grade, 4),
            "label": self.label,
            "removed_citations": self.removed_citations,
            "cited_sources": self.cited_sources,
            "sentences": [s.as_dict() for s in self.sentences],
        }


# --------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------


def _expand(group: str) -> list[int]:
    """Numbers in one bracket: "1, 2" -> [1, 2]; "2-4" -> [2, 3, 4] (ranges capped at 20)."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group.strip()):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            lo, hi = int(bounds[0]), int(bounds[1])
            if lo <= hi <= lo + 20:
                numbers.extend(range(lo, hi + 1))
                continue
        numbers.extend(int(b) for b in bounds if b.isdigit())
    return numbers


def parse_citations(text: str) -> list[int]:
    """All cited numbers in order of first appearance."""
    seen: dict[int, None] = {}
    for m in _CITATION_RE.finditer(text):
        for n in _expand(m.group(1)):
            seen.setdefault(n, None)
    return list(seen)


def _strip_invalid(answer: str, valid: set[int]) -> tuple[str, list[int]]:
    """Rewrite citation brackets keeping only numbers in ``valid``; drop brackets left empty."""
    removed: dict[int, None] = {}

    def fix(m: re.Match[str]) -> str:
        numbers = _expand(m.group(1))
        kept = [n for n in numbers if n in valid]
        for n in numbers:
            if n not in valid:
                removed.setdefault(n, None)
        if not kept:
            return ""
        if len(kept) == len(numbers):
            return m.group(0)
        return "[" + ", ".join(str(n) for n in dict.fromkeys(kept)) + "]"

    cleaned = _CITATION_RE.sub(fix, answer)
    if removed:
        # Removing "[7]" from "in 1598 [7]." leaves "in 1598 ."; tidy only the lines we touched.
        cleaned = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", _WS_RE.sub(" ", cleaned)).strip()
    return cleaned, list(removed)


# --------------------------------------------------------------------------------------------
# Support
# --------------------------------------------------------------------------------------------


@dataclass
class _SourceIndex:
    number: int
    text: str
    stems: frozenset[str]
    folded: frozenset[str]  # surface forms, for names and numbers
    trigrams: frozenset[tuple[str, str, str]]
    windows: list[frozenset[str]]  # stems of each pair of consecutive sentences
    window_texts: list[str]
    sentence_keys: list[frozenset[str]]  # folded words and stems of each sentence


def _trigrams(text: str) -> frozenset[tuple[str, str, str]]:
    toks = [stem(t) for t in tokenize(text)]
    return frozenset(zip(toks, toks[1:], toks[2:], strict=False))


def _index_source(number: int, text: str) -> _SourceIndex:
    sentences = split_sentences(text) or [text]
    sent_stems = [frozenset(t.stem for t in content_terms(s)) for s in sentences]
    windows = [
        sent_stems[i] | (sent_stems[i + 1] if i + 1 < len(sent_stems) else frozenset()) for i in range(len(sent_stems))
    ]
    window_texts = [" ".join(sentences[i : i + 2]) for i in range(len(sentences))]
    return _SourceIndex(
        number=number,
        text=text,
        stems=frozenset().union(*sent_stems),
        folded=frozenset(fold(t) for t in tokenize(text)),
        trigrams=_trigrams(text),
        windows=windows,
        window_texts=window_texts,
        sentence_keys=[
            frozenset(fold(t) for t in tokenize(s)) | st for s, st in zip(sentences, sent_stems, strict=True)
        ],
    )


def _weighted_coverage(terms: Sequence[tuple[str, float]], stems: frozenset[str]) -> float:
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    return sum(w for s, w in terms if s in stems) / total


def _critical_terms(sentence: str) -> list[tuple[str, str]]:
    """(folded surface, stem) of the numbers and mid-sentence capitalised names of a sentence."""
    out: list[tuple[str, str]] = []
    for i, tok in enumerate(tokenize(sentence)):
        low = fold(tok)
        if any(c.isdigit() for c in low) or (i > 0 and tok[0].isupper() and len(tok) > 1 and not tok.isupper()):
            out.append((low, stem(low)))
    return out


def _negated(text: str) -> bool:
    words = [fold(t) for t in tokenize(text)]
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


def _support(local: float, overall: float, ngram: float, dense: float | None) -> float:
    """Combine the signals into one score in [0, 1].

    Local coverage carries most of the weight; whole-text coverage helps summaries that draw on
    several sentences; verbatim trigrams lift copied text; dense similarity (when available)
    rescues paraphrases that share few words.
    """
    lexical = 0.6 * local + 0.25 * overall + 0.15 * ngram
    if dense is None:
        return lexical
    # MiniLM cosine: ~0.3 for unrelated text on the same topic, ~0.8+ for a close paraphrase.
    dense_score = min(1.0, max(0.0, (dense - 0.35) / 0.45))
    return max(lexical, 0.5 * lexical + 0.5 * dense_score)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


def _split_answer(answer: str) -> list[str]:
    # Move citations written after the full stop back inside the sentence they belong to.
    moved = _TRAILING_CITATION_RE.sub(lambda m: m.group(2) + m.group(1), answer)
    return split_sentences(moved)


def check_answer(
    answer: str,
    sources: Mapping[int, str],
    *,
    embedder: Embedder | None = None,
    support_threshold: float = SUPPORT_THRESHOLD,
) -> GroundingReport:
    """Check every sentence of ``answer`` against the sources it cites.

    ``sources`` maps the citation number shown to the model to the source text. Citations to
    numbers not in ``sources`` are removed from the returned answer and listed. ``embedder``
    (optional) adds dense similarity for paraphrases, in one batched call.
    """
    cleaned, removed = _strip_invalid(answer, set(sources))
    index = {n: _index_source(n, text) for n, text in sources.items()}

    verdicts: list[SentenceVerdict] = []
    pending_dense: list[tuple[SentenceVerdict, list[str], float, float, float]] = []
    for raw in _split_answer(cleaned):
        citations = parse_citations(raw)
        text = _WS_RE.sub(" ", _CITATION_RE.sub("", raw)).strip()
        text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
        if not text:
            continue
        terms = [(t.stem, t.rarity) for t in content_terms(text)]
        claim = len(terms) >= _MIN_CLAIM_TERMS
        verdict = SentenceVerdict(text=text, citations=citations, verdict="no_citation", support=0.0, claim=claim)
        verdicts.append(verdict)
        if not terms:
            continue
        # Which source supports it best (cited or not): a hint for fixing a wrong citation.
        best_any = max(
            index.values(),
            key=lambda src: max((_weighted_coverage(terms, w) for w in src.windows), default=0.0),
            default=None,
        )
        verdict.best_source = best_any.number if best_any else None
        cited = [index[n] for n in citations if n in index]
        if not cited:
            continue
        local = 0.0
        best_window = ""
        best_at: tuple[_SourceIndex, int] | None = None
        for src in cited:
            for i, (stems_w, text_w) in enumerate(zip(src.windows, src.window_texts, strict=True)):
                cov = _weighted_coverage(terms, stems_w)
                if cov > local:
                    local, best_window, best_at = cov, text_w, (src, i)
        all_stems = frozenset().union(*(s.stems for s in cited))
        overall = _weighted_coverage(terms, all_stems)
        sent_tri = _trigrams(text)
        cited_tri = frozenset().union(*(s.trigrams for s in cited))
        ngram = len(sent_tri & cited_tri) / len(sent_tri) if sent_tri else overall
        folded = frozenset().union(*(s.folded for s in cited))
        critical = _critical_terms(text)
        verdict.critical_missing = sorted(
            {surface for surface, st in critical if surface not in folded and st not in all_stems}
        )
        # A name or number that the cited text has, but far from the passage that supports the
        # rest of the sentence, is how a swapped entity looks ("Calvin" for "Beza", both in the
        # document). Near = the supporting window and one sentence either side.
        far: set[str] = set()
        if best_at is not None:
            src, i = best_at
            near = frozenset().union(*src.sentence_keys[max(0, i - 1) : i + 3])
            far = {surface for surface, st in critical if surface not in near and st not in near}
            far -= set(verdict.critical_missing)
        verdict.critical_far = sorted(far)
        # Negation is one short word that flips a claim; lexical overlap cannot see it.
        negation_mismatch = _negated(text) and not _negated(best_window)
        verdict.signals = {"local": local, "overall": overall, "ngram": ngram}
        if negation_mismatch:
            verdict.signals["negation_mismatch"] = 1.0
        if embedder is not None and best_window:
            pending_dense.append((verdict, [text, best_window], local, overall, ngram))
        verdict.support = _support(local, overall, ngram, None) * (_NEGATION_PENALTY if negation_mismatch else 1.0)

    if embedder is not None and pending_dense:
        texts = [t for _, pair, *_ in pending_dense for t in pair]
        vectors = embedder.embed(texts)
        for i, (verdict, _, local, overall, ngram) in enumerate(pending_dense):
            dense = _cosine(vectors[2 * i], vectors[2 * i + 1])
            verdict.signals["dense"] = dense
            penalty = _NEGATION_PENALTY if verdict.signals.get("negation_mismatch") else 1.0
            verdict.support = _support(local, overall, ngram, dense) * penalty

    for v in verdicts:
        if v.citations and any(n in index for n in v.citations):
            supported = v.support >= support_threshold and not v.critical_missing
            v.verdict = "supported" if supported else "unsupported"

    grade, label = _grade(verdicts)
    cited_sources = sorted({n for v in verdicts for n in v.citations if n in index})
    return GroundingReport(
        answer=cleaned,
        removed_citations=removed,
        sentences=verdicts,
        grade=grade,
        label=label,
        cited_sources=cited_sources,
    )


def _grade(verdicts: Sequence[SentenceVerdict]) -> tuple[float, Label]:
    claims = [v for v in verdicts if v.claim]
    if not claims:
        return 1.0, "no_claims"
    weights = [max(1, len(content_terms(v.text))) for v in claims]
    scores = []
    for v in claims:
        if v.verdict == "supported":
            scores.append(1.0)
        elif v.verdict == "unsupported":
            # Partial credit for a weakly supported sentence, none for a made-up name or number.
            scores.append(0.0 if v.critical_missing else v.support * 0.5)
        else:
            scores.append(0.0)
    grade = sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)
    if all(v.verdict == "supported" for v in claims):
        return grade, "grounded"
    if grade >= _PARTIAL_GRADE or any(v.verdict == "supported" for v in claims):
        return grade, "partially_grounded"
    return grade, "ungrounded"
