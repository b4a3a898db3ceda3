"""The shared text toolkit: folding, stemming, tokens, term rarity, sentence splitting.

Both the local extractive answerer (`inference.extractive`) and the grounding check of answers
(`chat.rag.ground`) read text the same way through these functions, so a word the answerer
counts as present is present for the check as well.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "FOREIGN_STOPWORDS",
    "STOPWORDS",
    "WHITESPACE_RE",
    "Term",
    "content_terms",
    "detect_language",
    "fold",
    "split_sentences",
    "stem",
    "term_rarity",
    "tokenize",
    "words",
]

# The WordPiece vocabulary of the vendored MiniLM tokenizer doubles as a word-frequency list.
_VOCAB_PATH = Path(__file__).resolve().parent / "assets" / "minilm" / "tokenizer.json"


def words(text: str) -> frozenset[str]:
    """A word list written as whitespace-separated text (easier to read and extend than literals)."""
    return frozenset(text.split())


# Numbers keep their inner separators ("1,500", "3.5") so "1,500" never matches "500".
_TOKEN_RE = re.compile(r"\d+(?:[.,:]\d+)*(?:st|nd|rd|th|s)?|[^\W\d_]+(?:['’][^\W\d_]+)*")

STOPWORDS = words(
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

# Stop words of the other languages knowledge bases are offered in (kb.languages): function words
# only, so dropping them never loses a content word. Used when the text is not English.
_STOPWORDS_BY_LANGUAGE = {
    "de": words(
        """
        der die das den dem des ein eine einen einem einer eines und oder aber doch sondern denn
        ist sind war waren wird werden wurde wurden sein seine seiner seinem seinen ihr ihre ihrem
        ihren ihrer hat haben hatte hatten kann können konnte muss müssen soll sollen will wollen
        darf dürfen mag ich du er sie es wir man mich dich sich uns euch mir dir ihm ihnen
        in im ins an am auf aus bei mit nach seit von vom zu zum zur über unter vor hinter neben
        zwischen durch für gegen ohne um bis als wie wo wann warum was wer wen wem wessen welche
        welcher welches dass ob wenn weil auch noch schon nur sehr nicht kein keine keinen keinem
        keiner so dann da hier dort mehr viel viele alle allen aller alles jede jeder jedes dies
        diese dieser dieses diesem diesen gibt es
        """
    ),
    "fr": words(
        """
        le la les l un une des du de d au aux et ou mais donc or ni car est sont était étaient
        sera seront être été a ont avait avaient avoir je tu il elle on nous vous ils elles me te
        se lui leur leurs moi toi soi mon ma mes ton ta tes son sa ses notre nos votre vos ce cet
        cette ces ça cela ceci qui que qu quoi dont où quand comment pourquoi quel quelle quels
        quelles lequel laquelle dans en sur sous avec sans pour par chez vers entre depuis pendant
        avant après contre ne pas plus moins très aussi bien tout tous toute toutes y c s n j m t
        si comme peut peuvent doit doivent faut combien est-ce qu'est-ce
        """
    ),
    "es": words(
        """
        el la los las un una unos unas y o pero de del al en con sin por para sobre entre es son
        era fue ser estar está están hay ha han que qué quien quién cual cuál cuando cuándo como
        cómo donde dónde se su sus lo le les me te nos mi tu no sí muy más menos también ya este
        esta estos estas ese esa eso
        """
    ),
    "it": words(
        """
        il lo la i gli le un uno una e ed o ma di del della dei degli delle da dal dalla in nel
        nella con su sul sulla per tra fra è sono era erano essere ha hanno che chi cui come dove
        quando perché quale quali non più molto anche si ci mi ti vi ne suo sua suoi sue questo
        questa quello quella
        """
    ),
    "nl": words(
        """
        de het een en of maar van in op aan met voor door bij uit over naar om tot als dan dat die
        dit deze is zijn was waren wordt worden werd heeft hebben had ik jij je hij zij ze wij we
        jullie u hun haar hem niet geen ook nog wel er hier daar wat wie waar wanneer hoe waarom
        """
    ),
    "pt": words(
        """
        o a os as um uma uns umas e ou mas de do da dos das em no na nos nas por para com sem sobre
        entre é são era foi ser estar está estão há que quem qual quando como onde se seu sua seus
        suas lhe me te nos não sim muito mais menos também já este esta isso
        """
    ),
}
#: Stop words of every non-English language above, for text that is not English.
FOREIGN_STOPWORDS = frozenset().union(*_STOPWORDS_BY_LANGUAGE.values())


def detect_language(text: str) -> str:
    """The language of ``text`` ("en", "de", "fr", …) by its function words; "en" when unsure.

    Enough to choose English stemming or not for a question or a passage: a dozen words of a
    question usually hold two or three function words of their language.
    """
    tokens = [fold(tok) for tok in tokenize(text)]
    if not tokens:
        return "en"
    counts = {"en": sum(1 for tok in tokens if tok in STOPWORDS)}
    for language, stopwords in _STOPWORDS_BY_LANGUAGE.items():
        folded = {fold(word) for word in stopwords}
        counts[language] = sum(1 for tok in tokens if tok in folded)
    best = max(counts, key=lambda language: (counts[language], language == "en"))
    return best if counts[best] > counts["en"] else "en"


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


_FOREIGN_FOLDED = frozenset(fold(word) for word in FOREIGN_STOPWORDS)


@dataclass(frozen=True)
class Term:
    """A content word: folded surface, stem, general-English rarity, and whether it is a name or a number."""

    surface: str
    stem: str
    rarity: float
    proper: bool
    numeric: bool


def content_terms(text: str, *, english: bool = True) -> list[Term]:
    """Content-word terms of ``text`` (stop words dropped), in order, with rarity and flags."""
    out: list[Term] = []
    for i, tok in enumerate(tokenize(text)):
        low = fold(tok)
        if english and low in STOPWORDS:
            continue
        if not english and (len(low) <= 2 or low in _FOREIGN_FOLDED):
            continue
        numeric = any(c.isdigit() for c in low)
        # A capital not at the start of the text marks a name; first words are ambiguous.
        proper = (not numeric) and tok[0].isupper() and i > 0
        out.append(
            Term(
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

_ABBREVIATIONS = words(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e eg ie cf al inc ltd co corp no nos vol vols fig
    figs approx dept est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n a.m p.m ca
    gen col lt sgt capt cmdr adm gov rev hon pres op ed eds pp ch sec art ibid viz resp
    z.b bzw ca nr usw d.h u.a evtl ggf inkl zzgl abs str tel mwst s.o s.u vgl
    mme mlle mm env p.ex av bd tél
    """
)
# "am 3. Mai", "le 1. janvier" (rare), "3. Oktober": a day number before a month is an ordinal.
_MONTHS = words(
    """
    januar jänner februar märz april mai juni juli august september oktober november dezember
    janvier février mars avril juin juillet août septembre octobre novembre décembre
    """
)

_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•▪●◦‣–]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)]|\[\d{1,3}\])\s+")
_BOUNDARY_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+)")
_INLINE_LIST_RE = re.compile(r"(?<=[:;.!?])\s+(?=\(?\d{1,2}[.)]\s+\S)")
WHITESPACE_RE = re.compile(r"\s+")


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
        if not (first.isupper() or first.isdigit() or first in "\"'“‘([¿¡«„"):
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
            # German ordinals: "am 3. Mai", "zum 2. Mal", "die 5. Klasse".
            next_word = nxt.split(None, 1)[0].strip(",.;:").lower()
            if word.isdigit() and len(word) <= 2 and next_word in _MONTHS:
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
            block = WHITESPACE_RE.sub(" ", " ".join(paragraph)).strip()
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
