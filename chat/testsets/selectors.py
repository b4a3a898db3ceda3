"""Reads of test cases and evaluation runs, always scoped to an organisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from accounts.models import Organization
from chat.models import Chatbot, EvalResult, EvalRun, TestCase
from kb.models import Document, SourceType


@dataclass
class CaseSpec:
    """A case as a run evaluates it: a stored test case or one of the bot's Q&A entries."""

    key: str  # "case:<id>" or "qa:<document id>"
    question: str
    expected: list[str] = field(default_factory=list)
    must_refuse: bool = False
    expected_document_ids: list[int] = field(default_factory=list)
    source: str = "manual"


def cases_for_chatbot(*, chatbot: Chatbot) -> QuerySet[TestCase]:
    return TestCase.objects.filter(organization_id=chatbot.organization_id, chatbot=chatbot)


def case_get(*, chatbot: Chatbot, pk: int) -> TestCase | None:
    return cases_for_chatbot(chatbot=chatbot).filter(pk=pk).first()


def _qa_answer(document: Document) -> str:
    """The answer of a Q&A entry: its live text without the question heading (see qa_entry_create)."""
    version = document.live_version
    if version is None or not version.file:
        return ""
    try:
        with version.file.open("rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    heading, _, rest = text.partition("\n")
    return rest.strip() if heading.startswith("## ") else text.strip()


def qa_cases_for_chatbot(*, chatbot: Chatbot) -> list[CaseSpec]:
    """The bot's live, enabled Q&A entries as cases: the question must be answered with the answer."""
    documents = (
        Document.objects.filter(
            organization_id=chatbot.organization_id,
            knowledge_base__in=chatbot.knowledge_bases.all(),
            source_type=SourceType.QA,
            enabled=True,
            live_version__isnull=False,
        )
        .select_related("live_version")
        .order_by("pk")
    )
    cases = []
    for document in documents:
        answer = _qa_answer(document)
        if answer:
            cases.append(CaseSpec(key=f"qa:{document.pk}", question=document.title, expected=[answer], source="qa"))
    return cases


def eval_cases_for_chatbot(*, chatbot: Chatbot) -> list[CaseSpec]:
    """Everything a run evaluates: the stored test cases, then the Q&A entries."""
    stored = [
        CaseSpec(
            key=f"case:{case.pk}",
            question=case.question,
            expected=list(case.expected),
            must_refuse=case.must_refuse,
            expected_document_ids=list(case.expected_document_ids),
            source=case.source,
        )
        for case in cases_for_chatbot(chatbot=chatbot)
    ]
    return stored + qa_cases_for_chatbot(chatbot=chatbot)


def document_titles(*, organization: Organization | int, ids: list[int]) -> dict[int, str]:
    org_id = organization if isinstance(organization, int) else organization.pk
    return dict(Document.objects.filter(organization_id=org_id, pk__in=ids).values_list("pk", "title"))


def eval_runs_for_chatbot(*, chatbot: Chatbot) -> QuerySet[EvalRun]:
    return EvalRun.objects.filter(organization_id=chatbot.organization_id, chatbot=chatbot)


def eval_run_get(*, organization: Organization, pk: int) -> EvalRun | None:
    return EvalRun.objects.filter(organization=organization, pk=pk).select_related("chatbot").first()


def eval_run_results(*, run: EvalRun) -> QuerySet[EvalResult]:
    return run.results.all()


def eval_runs_compare(*, a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """Case by case, what changed from run `a` to run `b` (cases paired by their key).

    `flipped` lists cases that passed in one run and failed in the other, with both reasons;
    `only_a` / `only_b` the cases evaluated in one run only.
    """
    results_a = {r.case_key: r for r in a.results.all()}
    results_b = {r.case_key: r for r in b.results.all()}
    flipped = []
    for key, ra in results_a.items():
        rb = results_b.get(key)
        if rb is None or ra.passed == rb.passed:
            continue
        flipped.append(
            {
                "case_key": key,
                "question": rb.question,
                "change": "fixed" if rb.passed else "broke",
                "a": {"passed": ra.passed, "reason": ra.reason, "answer": ra.answer, "refused": ra.refused},
                "b": {"passed": rb.passed, "reason": rb.reason, "answer": rb.answer, "refused": rb.refused},
            }
        )
    return {
        "a": {"id": a.pk, "summary": a.summary, "created_at": a.created_at.isoformat()},
        "b": {"id": b.pk, "summary": b.summary, "created_at": b.created_at.isoformat()},
        "flipped": flipped,
        "unchanged": sum(1 for k in results_a if k in results_b) - len(flipped),
        "only_a": [results_a[k].question for k in results_a if k not in results_b],
        "only_b": [results_b[k].question for k in results_b if k not in results_a],
    }
