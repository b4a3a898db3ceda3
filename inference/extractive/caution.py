"""How readily the local answerer answers: three plain-word settings mapped to refusal thresholds.

A bot owner picks "cautious", "balanced" or "helpful" instead of a number. Each maps to a
threshold on the support probability, chosen on the public SQuAD-2 development half
(cross-validated, k=5 sources: the gold passage plus BM25 distractors) for a target share of
refused unanswerable questions; ``TRADEOFF`` holds what was measured there (see
``bench/results/extractive_eval.json``), so the settings page can show the trade-off in words.
"""

from __future__ import annotations

from typing import Final

CAUTIOUS: Final = "cautious"
BALANCED: Final = "balanced"
HELPFUL: Final = "helpful"

#: caution -> support-probability threshold (the answerer refuses below it).
THRESHOLDS: Final[dict[str, float]] = {CAUTIOUS: 0.6, BALANCED: 0.5, HELPFUL: 0.4}

#: caution -> (share of unanswerable questions declined, share of answerable ones answered with the
#: right answer), measured on the SQuAD-2 development half (3,034 questions), 4-fold cross-validated
#: by article, with the default weights (lexical + MiniLM similarity): the "dense" section of
#: bench/results/extractive_eval.json, thresholds 0.6 / 0.5 / 0.4.
TRADEOFF: Final[dict[str, tuple[float, float]]] = {
    CAUTIOUS: (0.92, 0.28),
    BALANCED: (0.85, 0.41),
    HELPFUL: (0.74, 0.53),
}


def threshold_for(caution: object, default: float) -> float:
    """The threshold of a caution setting; ``default`` for anything else (missing, unknown)."""
    return THRESHOLDS.get(caution, default) if isinstance(caution, str) else default


def describe(caution: str) -> str:
    """The measured trade-off of a setting in plain words, for the bot settings page."""
    refused, answered = TRADEOFF[caution]
    return (
        f"declines {refused:.0%} of questions the documents do not answer, "
        f"and answers {answered:.0%} of those they do correctly (measured on a public test set)"
    )
