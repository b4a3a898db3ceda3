"""Local extractive answerer: the offline default behind ``local/extractive``.

Why extractive: tiny local generative models invent an answer for almost every unanswerable
question, while an answerer that only ever *copies* source sentences cannot invent text. What it
can still get wrong is *whether* the sources answer the question at all, so most of this module is
about that decision (see ``shared/research/models.md``: retrieval scores alone barely separate
answerable from unanswerable questions, so refusal has to come from the answer step).

How a question is answered:

1. Every source is split into sentences (abbreviations, decimals, initials and list items are
   handled, PDF line wraps are joined).
2. Each sentence gets lexical features against the question: IDF-weighted coverage of the
   question's content words (light stemming; "IDF" is a general-English rarity taken from the
   vendored MiniLM WordPiece vocabulary, whose whole-word entries are ordered by corpus
   frequency), coverage by the sentence's neighbourhood and its source, the rarest question term
   that is *missing* (unanswerable questions often swap one key entity or term), question bigrams
   kept in order, whether the expected answer type is present (who → names, when → dates,
   how many → numbers, where → places), negation mismatches, and optionally the dense similarity
   from a local embedder.
3. Two logistic models turn the features into probabilities. Stage 1 ranks the sentences
   (which one answers?); stage 2 re-scores the best few, adding the stage-1 logit and its margin
   over the runner-up (does it answer at all?). The best sentence's stage-2 probability must
   reach ``threshold``, else the answer is refused. Weights are fitted by
   ``bench/extractive_eval.py --fit`` on the SQuAD-2 and ClapNQ development halves (each set
   weighing the same), with group-level cross-validation for the reported figures.
4. Up to ``max_sentences`` sentences are returned verbatim (whitespace normalised, list markers
   trimmed), each followed by its citation ``[n]``.

With an embedder, only the lexical ranker's best ``_DENSE_CANDIDATES`` sentences are embedded
(one batch), so the embedder's cost stays bounded whatever the size of the sources.

Measured (``bench/results/extractive_eval.json``, k=5 sources: gold + BM25 distractors,
threshold 0.5, cross-validated): refusal accuracy on unanswerable questions 0.83 (SQuAD-2) and
0.98 (ClapNQ) lexical-only, 0.85 and 0.98 with the dense feature; answer-contains-gold on
answerable ones 0.40 / 0.11 lexical, 0.41 / 0.25 dense. The dense feature mostly helps real
users' questions (ClapNQ), whose wording differs from the documents.

The LiteLLM adapter (``complete``) parses a fixed prompt format, produced by
``build_sources_block`` so that the prompt builder and the parser cannot drift apart.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_SENTENCES",
    "DEFAULT_THRESHOLD",
    "FEATURE_NAMES",
    "REFUSAL_SENTINEL",
    "SUPPORT_FEATURE_NAMES",
    "Embedder",
    "ExtractiveAnswer",
    "ParsedPrompt",
    "ScoredSentence",
    "Source",
    "answer_extractively",
    "answer_from_messages",
    "build_sources_block",
    "choose_sentences",
    "complete",
    "content_terms",
    "fold",
    "parse_prompt",
    "rank_and_support",
    "sentence_features",
    "split_sentences",
    "stem",
    "term_rarity",
    "tokenize",
]

#: What ``complete`` returns when the sources do not answer the question. The app stores the
#: message as refused and shows its own "I don't know" text (localised, configurable).
REFUSAL_SENTINEL = "[[REFUSE]]"

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

_VOCAB_PATH = Path(__file__).resolve().parent.parent / "kb" / "assets" / "minilm" / "tokenizer.json"

# --------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One retrieved passage as numbered in the prompt (``number`` is what ``[n]`` cites)."""

    number: int
    text: str
    title: str | None = None
    section: str | None = None


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


class Embedder(Protocol):
    """What the answerer needs from an embedder (``kb.local_embedder`` satisfies it)."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        ...


# --------------------------------------------------------------------------------------------
# Tokens, stems, rarity
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    """A word list written as whitespace-separated text (easier to read and extend than literals)."""
    return frozenset(text.split())


# Numbers keep their inner separators ("1,500", "3.5") so "1,500" never matches "500".
_TOKEN_RE = re.compile(r"\d+(?:[.,:]\d+)*(?:st|nd|rd|th|s)?|[^\W\d_]+(?:['’][^\W\d_]+)*")

_STOPWORDS = _words(
    """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either few for from further had hadn't has hasn't have
    haven't having he he'd he'll he's her here here's hers herself him himself his how how's i
    i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself
    no nor not of off on once only or other ought our ours ourselves out over own same shan't she
    she'd she'll she's should shouldn't so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those through to
    too under until up very was wasn't we we'd we'll we're we've were weren't what what's when
    when's where where's which while who who's whom why why's will with won't would wouldn't you
    you'd you'll you're you've your yours yourself yourselves whose whatever whichever whoever
    may might must shall upon onto per via among within without also yet ever s t
    """
)

# Words that phrase a question but say nothing about its topic: never required in the answer.
_QUESTION_FILLER = _words(
    """
    name named called call term termed known refer refers referred describe described mean
    meaning means type types kind kinds sort example examples happen happened happens
    many much long far old often kind tell give list one
    """
)

_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "without", "cannot"})
_NEG_SUFFIX = "n't"

_MONTHS = _words(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)

# "one" is left out on purpose: "one of the main centres" is no answer to "how many".
_NUMBER_WORDS = _words(
    """
    two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred hundreds thousand thousands million millions billion billions trillion dozen dozens
    half quarter percent cent
    """
)

_REASON_MARKERS = (
    "because",
    "due to",
    "since",
    "as a result",
    "in order to",
    "so that",
    "owing to",
    "led to",
    "caused",
    "reason",
    "thanks to",
    "result of",
)

# Suffixes stripped by the light stemmer, longest first. Consistency (question and passage map
# to the same stem) matters here, not linguistic accuracy.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ational", "ate"),
    ("ization", "ize"),
    ("isation", "ize"),
    ("fulness", "ful"),
    ("iveness", "ive"),
    ("ousness", "ous"),
    ("ations", "ate"),
    ("ation", "ate"),
    ("ments", ""),
    ("ment", ""),
    ("ness", ""),
    ("ingly", ""),
    ("edly", ""),
    ("ings", ""),
    ("ing", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ers", ""),
    ("er", ""),
    ("ed", ""),
    ("ly", ""),
    ("es", ""),
    ("s", ""),
)
_VOWELS = frozenset("aeiouy")


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """Lower case without diacritics ("Temür" and "Temur" must match), curly apostrophes straight."""
    low = word.lower().replace("’", "'")
    if low.isascii():
        return low
    decomposed = unicodedata.normalize("NFKD", low)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Light English stemmer: folded word with common inflectional suffixes removed."""
    w = fold(word)
    if w.endswith("'s"):
        w = w[:-2]
    if w[:1].isdigit():
        # "1980s" is about 1980; "17th" stays (it is not the number 17).
        return w[:-1] if w.endswith("s") else w
    if len(w) <= 3 or not w.isalpha():
        return w
    for suffix, repl in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            base = w[: -len(suffix)]
            # Keep "is"/"as"/"ss" words ("analysis", "class") and require a vowel in the base
            # so "ring" or "bed" are not gutted.
            if suffix == "s" and (base.endswith(("s", "u", "i"))):
                break
            if not any(c in _VOWELS for c in base):
                break
            w = base + repl
            break
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # "stopp" -> "stop", "planned" -> "plan"
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]  # "found" / "founded" vs "create" / "created" -> "creat"
    return w


def tokenize(text: str) -> list[str]:
    """Word and number tokens of ``text`` in order (original case)."""
    return _TOKEN_RE.findall(text)


@lru_cache(maxsize=1)
def _vocab_ranks() -> dict[str, int]:
    """Whole-word frequency ranks from the vendored WordPiece vocabulary (empty if absent).

    BERT's vocabulary lists whole words after the special tokens and single characters roughly
    in descending corpus frequency ("the" first), so ``id - first_word_id`` is a usable
    general-English frequency rank: a rarity prior that needs no extra download.
    """
    try:
        data = json.loads(_VOCAB_PATH.read_text(encoding="utf-8"))
        vocab: dict[str, int] = data["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    first = vocab.get("the")
    if first is None:
        return {}
    return {tok: idx - first for tok, idx in vocab.items() if idx >= first and tok.isalpha()}


_RANK_SCALE = 50.0
_RANK_NORM = math.log1p(30000 / _RANK_SCALE)


@lru_cache(maxsize=65536)
def term_rarity(word: str) -> float:
    """General-English rarity of a word in [0.05, 1]: 1 for names, numbers and rare words."""
    w = word.lower()
    if any(c.isdigit() for c in w):
        return 1.0
    ranks = _vocab_ranks()
    if ranks:
        rank = ranks.get(w)
        if rank is None:
            return 1.0  # split into word pieces: rare in general English
        return max(0.05, min(1.0, math.log1p(rank / _RANK_SCALE) / _RANK_NORM))
    # No vocabulary available: fall back to length, which correlates with rarity.
    return min(1.0, 0.2 + 0.08 * len(w))


@dataclass(frozen=True)
class _Term:
    surface: str
    stem: str
    rarity: float
    proper: bool
    numeric: bool


def content_terms(text: str, *, english: bool = True) -> list[_Term]:
    """Content-word terms of ``text`` (stop words dropped), in order, with rarity and flags."""
    out: list[_Term] = []
    for i, tok in enumerate(tokenize(text)):
        low = fold(tok)
        if english and low in _STOPWORDS:
            continue
        if not english and len(low) <= 2:
            continue
        numeric = any(c.isdigit() for c in low)
        # A capital not at the start of the text marks a name; first words are ambiguous.
        proper = (not numeric) and tok[0].isupper() and i > 0
        out.append(
            _Term(
                surface=low,
                stem=stem(low) if english else low,
                rarity=term_rarity(low),
                proper=proper,
                numeric=numeric,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Sentence splitting
# --------------------------------------------------------------------------------------------

_ABBREVIATIONS = _words(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e eg ie cf al inc ltd co corp no nos vol vols fig
    figs approx dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n a.m p.m ca
    gen col lt sgt capt cmdr adm gov rev hon pres op ed eds pp ch sec art ibid viz resp
    """
)

_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•▪●◦‣–]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)]|\[\d{1,3}\])\s+")
_BOUNDARY_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+)")
_INLINE_LIST_RE = re.compile(r"(?<=[:;.!?])\s+(?=\(?\d{1,2}[.)]\s+\S)")
_WS_RE = re.compile(r"\s+")


def _split_block(block: str) -> list[str]:
    """Split one paragraph (no list items inside) at sentence-ending punctuation."""
    sentences: list[str] = []
    start = 0
    for m in _BOUNDARY_RE.finditer(block):
        end = m.end()
        nxt = block[end:].lstrip()
        if not nxt:
            continue
        first = nxt[0]
        # A sentence starts with a capital, a digit, a quote or a bracket; "e.g. the" does not.
        if not (first.isupper() or first.isdigit() or first in "\"'“‘([¿¡"):
            continue
        punct = m.group(0)
        if punct.startswith("."):
            before = block[start : m.start()].rstrip()
            word = before.rsplit(None, 1)[-1] if before else ""
            word = word.lstrip("(\"'“‘[").lower()
            if word in _ABBREVIATIONS or word.rstrip(".") in _ABBREVIATIONS:
                continue
            # "J. R. R. Tolkien", "U. S." : single-letter initials.
            if len(word) == 1 and word.isalpha():
                continue
        sentences.append(block[start:end].strip())
        start = end
    tail = block[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, list items and headings.

    Handles abbreviations ("e.g.", "Dr.", "U.S."), initials, decimals ("3.5" never splits: the
    period is not followed by whitespace), text tokenised with spaces before punctuation
    ("year . Any"), bullet and numbered list items (each item is its own unit, marker trimmed)
    and hard-wrapped lines (a single newline inside a paragraph is a space).
    """
    units: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            block = _WS_RE.sub(" ", " ".join(paragraph)).strip()
            paragraph.clear()
            for piece in _INLINE_LIST_RE.split(block):
                piece = _LIST_MARKER_RE.sub("", piece, count=1).strip()
                if piece:
                    units.extend(_split_block(piece))

    for line in text.splitlines():
        if not line.strip():
            flush()
            continue
        if _LIST_MARKER_RE.match(line):
            flush()  # a list item starts a new unit even without a blank line before it
        paragraph.append(line.strip())
    flush()
    return [u for u in units if u]


# --------------------------------------------------------------------------------------------
# Question analysis
# --------------------------------------------------------------------------------------------

_TYPE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "number",
        re.compile(
            r"\bhow (?:many|much|long|far|old|big|large|tall|high|deep|wide|often|fast)\b"
            r"|\bwhat (?:percentage|percent|proportion|number|amount|fraction|share|size|age)\b"
            r"|\b(?:population|cost|price)\b.*\?",
            re.I,
        ),
    ),
    (
        "date",
        re.compile(
            r"^\s*when\b|\b(?:what|which|in what|in which) (?:year|years|date|century|decade|"
            r"month|day|time|period|era|age)\b|\bhow long ago\b|\bwhen (?:did|was|were|is|does|do)\b",
            re.I,
        ),
    ),
    ("person", re.compile(r"^\s*(?:who|whom|whose)\b|\b(?:by whom|who (?:is|was|were))\b", re.I)),
    (
        "place",
        re.compile(
            r"^\s*where\b|\b(?:what|which|in what|in which) (?:city|country|state|place|"
            r"location|region|area|town|continent|province|county|island|river|nation)\b",
            re.I,
        ),
    ),
    ("reason", re.compile(r"^\s*why\b|\bwhat (?:caused|causes|led to)\b|\bfor what reason\b", re.I)),
)

_YEAR_RE = re.compile(r"\b(?:1\d{3}|20\d{2})s?\b|\b\d{1,2}(?:st|nd|rd|th)[- ]century\b", re.I)
_NUMBER_RE = re.compile(r"\d")


def _answer_type(question: str) -> str:
    # NQ-style questions ("when did x happen") have no question mark; patterns allow for that.
    for name, pattern in _TYPE_PATTERNS:
        if pattern.search(question):
            return name
    return "other"


@dataclass
class _Question:
    text: str
    terms: dict[str, float]  # stem -> rarity (max over surface forms)
    proper_stems: frozenset[str]
    all_stems: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    answer_type: str
    negated: bool
    total_weight: float
    surfaces: frozenset[str]
    subject: frozenset[str]  # for "what is X" questions: the stems of X, else empty


_DEFINITION_RE = re.compile(r"^\s*(?:what|who)\s*(?:is|are|was|were|'s)\s+(?:an?\s+|the\s+)?(?P<x>[^?]+)", re.I)
_COPULAS = frozenset({"is", "are", "was", "were", "refers", "means", "denotes", "describes", "called", "known"})


def _analyse_question(question: str, english: bool) -> _Question:
    terms_list = content_terms(question, english=english)
    terms: dict[str, float] = {}
    for t in terms_list:
        weight = t.rarity
        if english and t.surface in _QUESTION_FILLER:
            weight *= 0.3  # "what is X called": "called" need not appear in the answer
        if t.proper or t.numeric:
            weight = max(weight, 0.8)  # names and numbers are the key terms of a question
        terms[t.stem] = max(terms.get(t.stem, 0.0), weight)
    stems_in_order = [t.stem for t in terms_list]
    lowered = {fold(tok) for tok in tokenize(question)}
    subject: frozenset[str] = frozenset()
    dm = _DEFINITION_RE.match(question) if english else None
    if dm:
        subject = frozenset(t.stem for t in content_terms(dm.group("x")))
    return _Question(
        text=question,
        terms=terms,
        proper_stems=frozenset(t.stem for t in terms_list if t.proper or t.numeric),
        all_stems=frozenset(stem(tok) if english else fold(tok) for tok in tokenize(question)),
        bigrams=frozenset(pairwise(stems_in_order)),
        answer_type=_answer_type(question) if english else "other",
        negated=bool(lowered & _NEGATIONS) or any(w.endswith(_NEG_SUFFIX) for w in lowered),
        total_weight=sum(terms.values()) or 1.0,
        surfaces=frozenset(lowered),
        subject=subject,
    )


# --------------------------------------------------------------------------------------------
# Sentence features
# --------------------------------------------------------------------------------------------


@dataclass
class _Sentence:
    source_number: int
    index: int
    text: str
    terms: list[_Term]
    stems: frozenset[str]
    n_tokens: int
    negated: bool
    surfaces: frozenset[str]


def _prepare_source(source: Source, english: bool) -> tuple[list[_Sentence], frozenset[str]]:
    """Sentences of one source and the stems of the whole source (with title and section)."""
    sentences: list[_Sentence] = []
    for i, text in enumerate(split_sentences(source.text)):
        terms = content_terms(text, english=english)
        lowered = [fold(tok) for tok in tokenize(text)]
        sentences.append(
            _Sentence(
                source_number=source.number,
                index=i,
                text=text,
                terms=terms,
                stems=frozenset(t.stem for t in terms),
                n_tokens=len(lowered),
                negated=any(w in _NEGATIONS or w.endswith(_NEG_SUFFIX) for w in lowered),
                surfaces=frozenset(lowered),
            )
        )
    header = " ".join(x for x in (source.title, source.section) if x)
    header_stems = frozenset(t.stem for t in content_terms(header, english=english))
    all_stems = header_stems.union(*(s.stems for s in sentences)) if sentences else header_stems
    return sentences, all_stems


def _coverage(q: _Question, stems: frozenset[str] | set[str]) -> tuple[float, float]:
    """Weighted share of question terms found in ``stems`` and the rarity of the rarest missing."""
    found = 0.0
    missing_max = 0.0
    for s, w in q.terms.items():
        if s in stems:
            found += w
        elif w > missing_max:
            missing_max = w
    return found / q.total_weight, missing_max


def _type_present(q: _Question, sent: _Sentence) -> float:
    """1.0 if the sentence holds a candidate of the expected answer type not given in the question."""
    kind = q.answer_type
    text = sent.text
    if kind == "date":
        for m in _YEAR_RE.finditer(text):
            if stem(m.group(0).lower()) not in q.all_stems:
                return 1.0
        return 1.0 if any(t.surface in _MONTHS and t.stem not in q.all_stems for t in sent.terms) else 0.0
    if kind == "number":
        for t in sent.terms:
            if t.stem in q.all_stems:
                continue
            if _NUMBER_RE.search(t.surface) or t.surface in _NUMBER_WORDS:
                return 1.0
        return 0.0
    if kind in ("person", "place"):
        return 1.0 if any(t.proper and t.stem not in q.all_stems for t in sent.terms) else 0.0
    if kind == "reason":
        low = text.lower()
        return 1.0 if any(m in low for m in _REASON_MARKERS) else 0.0
    return 1.0


_ANTONYMS: dict[str, frozenset[str]] = {}
for _a, _b in (
    ("inside", "outside"),
    ("before", "after"),
    ("first", "last"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("most", "least"),
    ("more", "less"),
    ("more", "fewer"),
    ("higher", "lower"),
    ("highest", "lowest"),
    ("increase", "decrease"),
    ("increased", "decreased"),
    ("rise", "fall"),
    ("rose", "fell"),
    ("north", "south"),
    ("east", "west"),
    ("northern", "southern"),
    ("eastern", "western"),
    ("early", "late"),
    ("earliest", "latest"),
    ("begin", "end"),
    ("start", "end"),
    ("began", "ended"),
    ("started", "ended"),
    ("won", "lost"),
    ("win", "lose"),
    ("accept", "reject"),
    ("accepted", "rejected"),
    ("legal", "illegal"),
    ("public", "private"),
    ("minimum", "maximum"),
    ("upper", "lower"),
    ("old", "new"),
    ("oldest", "newest"),
    ("major", "minor"),
    ("majority", "minority"),
    ("internal", "external"),
    ("domestic", "foreign"),
    ("import", "export"),
    ("imports", "exports"),
    ("support", "oppose"),
    ("supported", "opposed"),
    ("allow", "forbid"),
    ("allowed", "banned"),
    ("success", "failure"),
    ("successful", "unsuccessful"),
    ("positive", "negative"),
    ("long", "short"),
    ("longest", "shortest"),
    ("rich", "poor"),
    ("entered", "left"),
):
    _ANTONYMS.setdefault(_a, frozenset())
    _ANTONYMS.setdefault(_b, frozenset())
    _ANTONYMS[_a] |= {_b}
    _ANTONYMS[_b] |= {_a}

#: Sentence features, in the order the weights are fitted. Coverage features are the
#: rarity-weighted share of question terms found; ``miss_*`` the rarity of the rarest term not
#: found; ``ctx`` = the sentence, the previous sentence and the source's title/section.
FEATURE_NAMES: tuple[str, ...] = (
    "cov_sent",
    "cov_ctx",
    "cov_src",
    "cov_all",
    "miss_sent",
    "miss_ctx",
    "miss_src",
    "miss_all",
    "rare_missing_ctx",
    "proper_miss_src",
    "proper_miss_ctx",
    "bigram",
    "typed",
    "type_missing",
    "novel",
    "neg_mismatch",
    "neg_extra",
    "antonym",
    "qlen",
    "short",
    "definition",
    "dense",
)
#: Stage-2 (answerability) features: the stage-1 ones plus the stage-1 logit and its margin.
SUPPORT_FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES, "rank_logit", "rank_margin")


def _features(
    q: _Question,
    sent: _Sentence,
    prev: _Sentence | None,
    header_stems: frozenset[str],
    src_stems: frozenset[str],
    cov_src: tuple[float, float],
    cov_all: tuple[float, float],
    english: bool,
) -> dict[str, float]:
    cov_sent, miss_sent = _coverage(q, sent.stems)
    # Question terms often live in the previous sentence or the title ("It was founded in...").
    ctx = set(sent.stems) | header_stems
    if prev is not None:
        ctx |= prev.stems
    cov_ctx, miss_ctx = _coverage(q, ctx)
    rare_missing = sum(1 for s, w in q.terms.items() if w >= 0.6 and s not in ctx)
    bigram = 0.0
    if q.bigrams:
        seq = [t.stem for t in sent.terms]
        sent_bigrams = set(pairwise(seq))
        bigram = len(q.bigrams & sent_bigrams) / len(q.bigrams)
    novel = sum(1 for t in sent.terms if t.stem not in q.all_stems)
    typed = q.answer_type in ("date", "number", "person", "place", "reason")
    type_ok = _type_present(q, sent)
    # An antonym of a question word in the sentence, without the word itself ("inside" asked,
    # "outside" written): a classic way an answerable-looking question has no answer.
    antonym = 0.0
    if english:
        for word in q.surfaces:
            opposite = _ANTONYMS.get(word)
            if opposite and word not in sent.surfaces and opposite & sent.surfaces:
                antonym = 1.0
                break
    # "What is X?" answered by "X is ..." / "X refers to ...": the defining sentence.
    definition = 0.0
    if q.subject and q.subject <= ctx and sent.surfaces & _COPULAS:
        definition = 1.0
    return {
        "cov_sent": cov_sent,
        "cov_ctx": cov_ctx,
        "cov_src": cov_src[0],
        "cov_all": cov_all[0],
        "miss_sent": miss_sent,
        "miss_ctx": miss_ctx,
        "miss_src": cov_src[1],
        "miss_all": cov_all[1],
        "rare_missing_ctx": min(rare_missing, 3) / 3.0,
        "proper_miss_src": 1.0 if any(s not in src_stems for s in q.proper_stems) else 0.0,
        "proper_miss_ctx": 1.0 if any(s not in ctx for s in q.proper_stems) else 0.0,
        "bigram": bigram,
        "typed": 1.0 if typed else 0.0,
        "type_missing": 1.0 if typed and type_ok == 0.0 else 0.0,
        "novel": min(novel, 8) / 8.0,
        "neg_mismatch": 1.0 if q.negated and not sent.negated else 0.0,
        "neg_extra": 1.0 if sent.negated and not q.negated else 0.0,
        "antonym": antonym,
        "qlen": min(len(q.terms), 10) / 10.0,
        "short": 1.0 if sent.n_tokens < 8 else 0.0,
        "definition": definition,
        "dense": 0.0,
    }


# Logistic weights, fitted by `bench/extractive_eval.py --fit` (see its docstring): stage 1 ranks
# sentences (which one answers?), stage 2 decides on the best ones (does it answer at all?).
# Separate sets for lexical-only scoring and for scoring with the dense similarity.
_RANK_WEIGHTS_LEXICAL: dict[str, float] = {
    "bias": -4.024,
    "cov_sent": 1.406,
    "cov_ctx": 2.552,
    "cov_src": 2.702,
    "cov_all": -2.03,
    "miss_sent": -0.027,
    "miss_ctx": 1.493,
    "miss_src": -0.5,
    "miss_all": -0.229,
    "rare_missing_ctx": -0.981,
    "proper_miss_src": 0.203,
    "proper_miss_ctx": -1.427,
    "bigram": 0.679,
    "typed": 0.082,
    "type_missing": -0.647,
    "novel": -1.333,
    "neg_mismatch": -2.193,
    "neg_extra": -0.29,
    "antonym": -1.681,
    "qlen": 1.084,
    "short": -0.25,
    "definition": -0.016,
}
_SUPPORT_WEIGHTS_LEXICAL: dict[str, float] = {
    "bias": -2.91,
    "cov_sent": 1.455,
    "cov_ctx": -0.35,
    "cov_src": 1.464,
    "cov_all": 0.432,
    "miss_sent": 0.233,
    "miss_ctx": -0.495,
    "miss_src": 0.57,
    "miss_all": -0.248,
    "rare_missing_ctx": -0.402,
    "proper_miss_src": -0.068,
    "proper_miss_ctx": -0.811,
    "bigram": 0.533,
    "typed": -0.057,
    "type_missing": -0.542,
    "novel": -0.603,
    "neg_mismatch": -1.972,
    "neg_extra": -0.028,
    "antonym": -1.253,
    "qlen": 0.72,
    "short": 0.322,
    "definition": -0.251,
    "rank_logit": 1.345,
    "rank_margin": 2.237,
}
_RANK_WEIGHTS_DENSE: dict[str, float] = {
    "bias": -4.04,
    "cov_sent": -1.638,
    "cov_ctx": 1.865,
    "cov_src": 1.305,
    "cov_all": -1.258,
    "miss_sent": -0.54,
    "miss_ctx": 0.883,
    "miss_src": -0.8,
    "miss_all": -0.132,
    "rare_missing_ctx": -0.695,
    "proper_miss_src": 0.202,
    "proper_miss_ctx": -1.195,
    "bigram": 0.851,
    "typed": 0.061,
    "type_missing": -0.541,
    "novel": -0.487,
    "neg_mismatch": -1.687,
    "neg_extra": -0.065,
    "antonym": -1.492,
    "qlen": 0.043,
    "short": 0.051,
    "definition": 0.125,
    "dense": 5.713,
}
_SUPPORT_WEIGHTS_DENSE: dict[str, float] = {
    "bias": -2.937,
    "cov_sent": -0.422,
    "cov_ctx": -0.057,
    "cov_src": 0.387,
    "cov_all": 0.214,
    "miss_sent": -0.259,
    "miss_ctx": -0.684,
    "miss_src": 0.462,
    "miss_all": -0.218,
    "rare_missing_ctx": -0.287,
    "proper_miss_src": 0.012,
    "proper_miss_ctx": -0.548,
    "bigram": 0.444,
    "typed": 0.013,
    "type_missing": -0.24,
    "novel": 0.237,
    "neg_mismatch": -1.387,
    "neg_extra": -0.026,
    "antonym": -1.426,
    "qlen": -0.167,
    "short": 0.477,
    "definition": -0.14,
    "dense": 3.98,
    "rank_logit": 2.844,
    "rank_margin": 1.176,
}

# Sentences embedded for the dense feature (the lexical ranker's best): bounds the embedder's
# time to one batch whatever the number and length of the sources.
_DENSE_CANDIDATES = 12

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
    text = _WS_RE.sub(" ", text).strip()
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
) -> tuple[list[ScoredSentence], dict[str, Any]]:
    """Candidate sentences of ``sources`` with their features (scores not yet set).

    Returns the candidates in source order and question-level information (answer type, key
    terms) for the trace.
    """
    english = language is None or language.lower().startswith("en")
    q = _analyse_question(question, english)
    prepared = [(src, *_prepare_source(src, english)) for src in sources]
    all_stems: frozenset[str] = frozenset().union(*(p[2] for p in prepared)) if prepared else frozenset()
    cov_all = _coverage(q, all_stems)

    candidates: list[ScoredSentence] = []
    for src, sentences, src_stems in prepared:
        header = " ".join(x for x in (src.title, src.section) if x)
        header_stems = frozenset(t.stem for t in content_terms(header, english=english))
        cov_src = _coverage(q, src_stems)
        for i, sent in enumerate(sentences):
            if sent.n_tokens < _MIN_ANSWER_TOKENS:
                continue
            if sent.text.rstrip().endswith("?"):
                # A question is never the answer (FAQ pages and Q&A entries repeat the question).
                continue
            prev = sentences[i - 1] if i > 0 else None
            feats = _features(q, sent, prev, header_stems, src_stems, cov_src, cov_all, english)
            candidates.append(ScoredSentence(src.number, _trim(sent.text), 0.0, feats))

    if embedder is not None and candidates:
        # Embedding is the expensive step (~20 ms per sentence on 2 cores), so only the
        # sentences the lexical ranker puts in its top _DENSE_CANDIDATES are embedded, in one
        # batched call with the question. The others keep dense = 0 and so rank below them.
        shortlist = sorted(candidates, key=lambda c: -_logit(c.features, _RANK_WEIGHTS_LEXICAL))[:_DENSE_CANDIDATES]
        vectors = embedder.embed([question] + [c.text for c in shortlist])
        qv = vectors[0]
        for cand, v in zip(shortlist, vectors[1:], strict=True):
            cand.features["dense"] = _cosine(qv, v)

    qinfo: dict[str, Any] = {
        "answer_type": q.answer_type,
        "terms": {k: round(v, 3) for k, v in q.terms.items()},
        "negated": q.negated,
        "missing_everywhere": sorted(s for s in q.terms if s not in all_stems),
        "language": "en" if english else (language or ""),
        "dense": embedder is not None,
    }
    return candidates, qinfo


def answer_extractively(
    question: str,
    sources: list[Source],
    *,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
    language: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    embedder: Embedder | None = None,
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
    candidates, qinfo = sentence_features(question, sources, language=language, embedder=embedder)
    if embedder is not None:
        ranked = rank_and_support(candidates, _RANK_WEIGHTS_DENSE, _SUPPORT_WEIGHTS_DENSE)
    else:
        ranked = rank_and_support(candidates, _RANK_WEIGHTS_LEXICAL, _SUPPORT_WEIGHTS_LEXICAL)
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


# --------------------------------------------------------------------------------------------
# Prompt format shared by the prompt builder and the LiteLLM adapter
# --------------------------------------------------------------------------------------------

_SOURCE_RE = re.compile(
    r'<source id="(?P<id>\d+)"(?P<attrs>(?:\s+[a-z_]+="[^"]*")*)\s*>(?P<body>.*?)</source>',
    re.S,
)
_ATTR_RE = re.compile(r'([a-z_]+)="([^"]*)"')
_QUESTION_RE = re.compile(r"<question>(?P<q>.*?)</question>", re.S)
_SOURCES_WRAPPER_RE = re.compile(r"<sources>.*?</sources>", re.S)


def build_sources_block(sources: Iterable[Source]) -> str:
    """Render sources in the fenced format that :func:`parse_prompt` reads.

    Format (one block, sources in citation order)::

        <sources>
        <source id="1" title="Employee handbook" section="Leave">
        ...passage text, HTML-escaped...
        </source>
        </sources>

    Text and attributes are HTML-escaped, so a document containing ``</source>`` or
    ``<question>`` cannot break out of its fence (retrieved text is untrusted data).
    """
    parts = ["<sources>"]
    for src in sources:
        attrs = f'id="{int(src.number)}"'
        if src.title:
            attrs += f' title="{html.escape(src.title, quote=True)}"'
        if src.section:
            attrs += f' section="{html.escape(src.section, quote=True)}"'
        parts.append(f"<source {attrs}>\n{html.escape(src.text, quote=False)}\n</source>")
    parts.append("</sources>")
    return "\n".join(parts)


@dataclass
class ParsedPrompt:
    """Question and sources recovered from a chat prompt."""

    question: str
    sources: list[Source]


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style content parts
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def parse_prompt(messages: Sequence[Mapping[str, Any]]) -> ParsedPrompt:
    """Recover the question and the sources from chat ``messages``.

    Sources are every ``<source id="n" ...>`` block in any message (the last occurrence of an id
    wins). The question is the ``<question>...</question>`` element of the last user message if
    present, otherwise that message's text with any sources block removed.
    """
    sources: dict[int, Source] = {}
    for message in messages:
        for m in _SOURCE_RE.finditer(_message_text(message)):
            attrs = {k: html.unescape(v) for k, v in _ATTR_RE.findall(m.group("attrs"))}
            number = int(m.group("id"))
            sources[number] = Source(
                number=number,
                text=html.unescape(m.group("body")).strip(),
                title=attrs.get("title") or None,
                section=attrs.get("section") or None,
            )
    question = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            text = _message_text(message)
            qm = _QUESTION_RE.search(text)
            if qm:
                question = html.unescape(qm.group("q")).strip()
            else:
                question = _SOURCE_RE.sub("", _SOURCES_WRAPPER_RE.sub("", text)).strip()
            break
    return ParsedPrompt(question=question, sources=[sources[k] for k in sorted(sources)])


_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")


def _default_embedder() -> Embedder | None:
    """The process-wide local embedder, or None when it cannot be loaded (then: lexical only)."""
    try:
        from kb.local_embedder import get_local_embedder

        return get_local_embedder()
    except Exception:  # any failure to load means "answer without dense similarity"
        logger.warning("local embedder unavailable; extractive answers use lexical features only", exc_info=True)
        return None


def answer_from_messages(messages: list[dict[str, Any]], optional_params: Mapping[str, Any]) -> ExtractiveAnswer:
    """Parse the prompt and answer it; the full result, for callers that store the trace.

    ``optional_params``: ``max_sentences`` (default 3), ``refusal_threshold`` (default
    :data:`DEFAULT_THRESHOLD`), ``language``, ``dense`` (default True: add the local
    embedder's similarity, which separates answerable from unanswerable questions better;
    falls back to lexical features if the embedder cannot be loaded).
    """
    parsed = parse_prompt(messages)
    max_sentences = int(optional_params.get("max_sentences", DEFAULT_MAX_SENTENCES))
    threshold = float(optional_params.get("refusal_threshold", DEFAULT_THRESHOLD))
    # Only a language code counts ("en", "fr-CA"); app-level settings such as "match_user"
    # must not switch the English features off.
    raw_language = optional_params.get("language")
    language = str(raw_language) if isinstance(raw_language, str) and _LANGUAGE_RE.match(raw_language) else None
    if not parsed.question or not parsed.sources:
        return ExtractiveAnswer(
            text="",
            refused=True,
            sentences=[],
            candidates=[],
            question_features={"reason": "no question" if not parsed.question else "no sources"},
            threshold=threshold,
        )
    embedder = _default_embedder() if optional_params.get("dense", True) else None
    return answer_extractively(
        parsed.question,
        parsed.sources,
        max_sentences=max_sentences,
        language=language,
        threshold=threshold,
        embedder=embedder,
    )


def complete(messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
    """LiteLLM custom-provider entry point for ``local/extractive``.

    ``messages`` is the chat prompt: any message (system or user) carries the sources as
    produced by :func:`build_sources_block`; the question is the last user message, either
    wrapped as ``<question>...</question>`` or as that message's plain text outside the sources
    block. Example::

        [{"role": "system", "content": "Answer only from the sources ..."},
         {"role": "user", "content": build_sources_block(sources)
                                     + "\n<question>How many days of leave?</question>"}]

    ``optional_params`` is described in :func:`answer_from_messages`; anything else
    (temperature, ...) is ignored. Returns the answer text with ``[n]`` citations, or
    :data:`REFUSAL_SENTINEL` when the sources do not answer the question.
    """
    result = answer_from_messages(messages, optional_params)
    return REFUSAL_SENTINEL if result.refused else result.text
