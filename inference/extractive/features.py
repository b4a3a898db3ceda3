"""Features of a candidate answer sentence against the question (lexical, answer type, negation).

Two logistic models in `inference.extractive.answerer` turn these into probabilities; the
names and their order (`FEATURE_NAMES`) are what `bench/extractive_eval.py --fit` fits on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from inference.extractive.prompt_format import Source
from inference.text import Term, content_terms, fold, split_sentences, stem, tokenize, words

# Words that phrase a question but say nothing about its topic: never required in the answer.
_QUESTION_FILLER = words(
    """
    name named called call term termed known refer refers referred describe described mean
    meaning means type types kind kinds sort example examples happen happened happens
    many much long far old often kind tell give list one
    """
)

_NEGATIONS = frozenset({"not", "no", "never", "none", "neither", "nor", "without", "cannot"})
_NEG_SUFFIX = "n't"

_MONTHS = words(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)

# "one" is left out on purpose: "one of the main centres" is no answer to "how many".
_NUMBER_WORDS = words(
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


def analyse_question(question: str, english: bool) -> _Question:
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
    terms: list[Term]
    stems: frozenset[str]
    n_tokens: int
    negated: bool
    surfaces: frozenset[str]


def prepare_source(source: Source, english: bool) -> tuple[list[_Sentence], frozenset[str]]:
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


def coverage(q: _Question, stems: frozenset[str] | set[str]) -> tuple[float, float]:
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
    "e5",
    "e5_gap",
)
#: Stage-2 (answerability) features: the stage-1 ones plus the stage-1 logit and its margin.
SUPPORT_FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES, "rank_logit", "rank_margin")


def sentence_feature_values(
    q: _Question,
    sent: _Sentence,
    prev: _Sentence | None,
    header_stems: frozenset[str],
    src_stems: frozenset[str],
    cov_src: tuple[float, float],
    cov_all: tuple[float, float],
    english: bool,
) -> dict[str, float]:
    cov_sent, miss_sent = coverage(q, sent.stems)
    # Question terms often live in the previous sentence or the title ("It was founded in...").
    ctx = set(sent.stems) | header_stems
    if prev is not None:
        ctx |= prev.stems
    cov_ctx, miss_ctx = coverage(q, ctx)
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
        "e5": 0.0,
        "e5_gap": 0.0,
    }
