"""Grounding check: citations parsed and cleaned, sentences judged against what they cite.

Pure Python: no database. The ClapNQ test reads the shared evaluation data in place and is
skipped (with the reason) when that folder is absent.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from chat.rag.ground import check_answer, parse_citations
from inference.extractive import REFUSAL_SENTINEL, Source, answer_extractively
from inference.text import split_sentences

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SOURCES = {
    1: (
        "Full-time employees receive 25 days of paid annual leave per calendar year. "
        "Part-time employees receive leave in proportion to their contracted hours. "
        "Unused leave of up to 5 days may be carried over to the following year, "
        "but it must be taken before 31 March."
    ),
    2: (
        "Travel expenses are reimbursed within 30 days of submitting a receipt. "
        "Meals during business travel are covered up to 40 euros per day."
    ),
}


def test_parse_citations_accepts_common_forms() -> None:
    assert parse_citations("A [1]. B [2][3]. C [1, 4]. D [5;6]. E [7-9]. F [Source 10].") == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
    ]
    assert parse_citations("No citations here [citation needed].") == []


def test_verbatim_cited_sentence_is_supported() -> None:
    report = check_answer("Full-time employees receive 25 days of paid annual leave per calendar year. [1]", SOURCES)

    assert report.label == "grounded"
    assert report.grade == pytest.approx(1.0)
    [sentence] = report.sentences
    assert sentence.verdict == "supported"
    assert sentence.citations == [1]
    assert sentence.text == "Full-time employees receive 25 days of paid annual leave per calendar year."


def test_citation_to_missing_source_is_stripped() -> None:
    report = check_answer(
        "You get 25 days of paid annual leave [1][7]. Meals are covered up to 40 euros [2, 9].", SOURCES
    )

    assert report.removed_citations == [7, 9]
    assert report.answer == "You get 25 days of paid annual leave [1]. Meals are covered up to 40 euros [2]."
    assert [s.citations for s in report.sentences] == [[1], [2]]
    assert report.cited_sources == [1, 2]


def test_sentence_citing_only_missing_sources_has_no_citation() -> None:
    report = check_answer("Meals are covered up to 40 euros per day [4].", SOURCES)

    assert report.removed_citations == [4]
    assert report.answer == "Meals are covered up to 40 euros per day."
    assert report.sentences[0].verdict == "no_citation"
    assert report.label == "ungrounded"
    # The checker still says where the claim can be found.
    assert report.sentences[0].best_source == 2


def test_invented_sentence_is_unsupported() -> None:
    report = check_answer(
        "Full-time employees receive 25 days of paid annual leave [1]. "
        "Employees may also work from home two days per week [1].",
        SOURCES,
    )

    assert [s.verdict for s in report.sentences] == ["supported", "unsupported"]
    assert report.label == "partially_grounded"
    assert 0.0 < report.grade < 1.0


def test_changed_number_is_unsupported_even_when_the_rest_matches() -> None:
    report = check_answer("Full-time employees receive 30 days of paid annual leave per calendar year [1].", SOURCES)

    [sentence] = report.sentences
    assert sentence.verdict == "unsupported"
    assert sentence.critical_missing == ["30"]
    assert report.label == "ungrounded"


def test_claim_cited_to_the_wrong_source_is_unsupported_and_points_to_the_right_one() -> None:
    report = check_answer("Meals during business travel are covered up to 40 euros per day [1].", SOURCES)

    [sentence] = report.sentences
    assert sentence.verdict == "unsupported"
    assert sentence.best_source == 2


def test_negated_claim_is_unsupported() -> None:
    report = check_answer("Part-time employees receive no paid leave at all [1].", SOURCES)

    assert report.sentences[0].verdict == "unsupported"


def test_paraphrase_with_shared_key_terms_is_supported() -> None:
    report = check_answer(
        "Full-time staff are entitled to 25 days of paid leave a year, and up to 5 unused days "
        "can be carried over until 31 March [1].",
        SOURCES,
    )

    assert report.sentences[0].verdict == "supported"


def test_uncited_claim_gets_no_citation_and_filler_is_not_graded() -> None:
    report = check_answer(
        "Sure! Here is what I found. Full-time employees receive 25 days of paid annual leave [1]. "
        "Travel expenses are reimbursed within 30 days of submitting a receipt.",
        SOURCES,
    )

    verdicts = [(s.verdict, s.claim) for s in report.sentences]
    assert verdicts[-2:] == [("supported", True), ("no_citation", True)]
    assert all(not claim for _, claim in verdicts[:-2])
    assert report.label == "partially_grounded"


def test_empty_answer_and_refusal_have_no_claims() -> None:
    assert check_answer("", SOURCES).label == "no_claims"
    assert check_answer(REFUSAL_SENTINEL, SOURCES).label == "no_claims"


def test_extractive_answers_are_graded_grounded() -> None:
    sources = [Source(number=n, text=t) for n, t in SOURCES.items()]
    answer = answer_extractively("How much are meals covered during business travel?", sources)

    report = check_answer(answer.text, SOURCES)

    assert not answer.refused
    assert report.label == "grounded"
    assert report.removed_citations == []


def test_report_is_json_serialisable() -> None:
    report = check_answer("You get 25 days of paid annual leave [1][3].", SOURCES)

    data = json.loads(json.dumps(report.as_dict()))

    assert data["removed_citations"] == [3]
    assert data["sentences"][0]["verdict"] == "supported"


# ------------------------------------------------------------------------------------------
# Real data: ClapNQ's human-written long answers are paraphrases of their gold passage
# ------------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_clapnq_gold_answers_supported_by_their_passage_not_by_another() -> None:
    folder = SHARED_DATA / "clapnq_dev"
    if not folder.is_dir():
        pytest.skip(f"shared evaluation data not found at {folder} (ClapNQ dev)")
    passages = {str(p["pid"]): str(p["text"]) for p in _read_jsonl(folder / "passages.jsonl")}
    questions = [q for q in _read_jsonl(folder / "questions.jsonl") if q["answerable"]]
    rng = random.Random(7)
    sample = rng.sample(questions, 40)
    pids = sorted(passages)

    supported_by_gold = 0
    supported_by_other = 0
    checked = 0
    for q in sample:
        gold_pid = str(q["gold_pids"][0])  # type: ignore[index]
        other_pid = rng.choice([p for p in pids if p != gold_pid])
        sentence = split_sentences(str(q["answers"][0]))[0]  # type: ignore[index]
        checked += 1
        supported_by_gold += check_answer(f"{sentence} [1]", {1: passages[gold_pid]}).label == "grounded"
        supported_by_other += check_answer(f"{sentence} [1]", {1: passages[other_pid]}).label == "grounded"

    # Measured on this seeded sample: 0.875 supported by the gold passage, 0.0 by a random
    # other passage. Floors below the measurement, so only a real regression fails.
    assert supported_by_gold / checked >= 0.8
    assert supported_by_other / checked <= 0.05
