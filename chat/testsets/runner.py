"""Evaluation of one case and of a whole run.

A case passes when every expectation it states holds:

- refusal: a must-refuse case must be refused ("should have refused"); any other case must be
  answered ("refused but should answer");
- phrases: the answer contains any one of `expected` after normalisation (`matching`), else
  "answer lacks any of: …"; with the run's judge on and a non-local chat model, the model grades
  a semantic match instead of failing outright;
- documents: the answer cites one of `expected_document_ids`, else "did not cite expected
  document …".

Reported alongside, not part of pass/fail: citation validity (each quote is inside its cited
chunk), grounding grade, latency, and whether an expected document was retrieved (recall@k).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

from django.db.models import F
from django.utils import timezone

from chat.models import Chatbot, EvalResult, EvalRun, EvalStatus
from chat.testsets import answering
from chat.testsets.matching import first_match
from chat.testsets.selectors import CaseSpec, document_titles, eval_cases_for_chatbot
from kb.releases import draft_evaluation_record

logger = logging.getLogger(__name__)

SETTING_FIELDS = ("system_prompt", "chat_model", "top_k", "min_relevance")


def chatbot_with_settings(chatbot: Chatbot, override: dict[str, Any]) -> Chatbot:
    """An unsaved copy of the bot with `override` applied: the run tries settings, the bot keeps its own.

    The copy keeps the primary key, so it reads the same knowledge bases.
    """
    trial = copy.copy(chatbot)
    for name in SETTING_FIELDS:
        if name in override:
            setattr(trial, name, override[name])
    return trial


JUDGE_PROMPT = (
    "You grade a support bot's answer against the expected answer. Reply with YES if the answer "
    "states what the expected answer states (other words are fine), otherwise NO; then one short "
    "sentence saying why."
)


def judge_match(*, chatbot: Chatbot, question: str, expected: Sequence[str], answer: str) -> tuple[bool, str]:
    """Ask the bot's chat model whether `answer` says what any of `expected` says."""
    reply = answering.complete_text(
        chatbot=chatbot,
        messages=[
            {"role": "system", "content": JUDGE_PROMPT},
            {
                "role": "user",
                "content": f"Question: {question}\nExpected (any of): {' | '.join(expected)}\nAnswer: {answer}",
            },
        ],
    ).strip()
    verdict = reply.upper().startswith("YES")
    why = reply[3:].strip(" .:-—\n") if verdict else reply.removeprefix("NO").removeprefix("No").strip(" .:-—\n")
    return verdict, why or ("semantic match" if verdict else "no semantic match")


def _quote(text: str) -> str:
    return f"“{text}”"


def _quoted(phrases: Sequence[str]) -> str:
    return ", ".join(map(_quote, phrases))


def case_evaluate(*, chatbot: Chatbot, case: CaseSpec, target: str, judge: bool = False) -> dict[str, Any]:
    """Answer one case and check it; returns the fields of its EvalResult."""
    got = answering.answer_case(chatbot=chatbot, question=case.question, target=target)
    checks: dict[str, dict[str, Any]] = {}
    if case.must_refuse:
        checks["refusal"] = {
            "passed": got.refused,
            "reason": "refused as expected" if got.refused else "should have refused",
        }
    elif got.refused:
        why = f" ({got.error})" if got.error else ""
        checks["refusal"] = {"passed": False, "reason": f"refused but should answer{why}"}
    else:
        if case.expected:
            hit = first_match(got.content, case.expected)
            if hit is not None:
                checks["expected"] = {"passed": True, "reason": f"answer contains “{hit}”"}
            elif judge:
                verdict, why = judge_match(
                    chatbot=chatbot, question=case.question, expected=case.expected, answer=got.content
                )
                checks["expected"] = {"passed": verdict, "reason": f"judge: {why}", "judged": True}
            else:
                checks["expected"] = {"passed": False, "reason": f"answer lacks any of: {_quoted(case.expected)}"}
        if case.expected_document_ids:
            titles = document_titles(organization=chatbot.organization_id, ids=case.expected_document_ids)
            cited = {c["document_id"] for c in got.citations} & set(case.expected_document_ids)
            names = [titles.get(i, f"#{i}") for i in case.expected_document_ids]
            checks["documents"] = (
                {"passed": True, "reason": f"cited expected document {_quoted([titles.get(min(cited), '')])}"}
                if cited
                else {
                    "passed": False,
                    "reason": f"did not cite expected document {' or '.join(_quoted([n]) for n in names)}",
                }
            )
        if not checks:
            checks["answered"] = {"passed": True, "reason": "answered"}
    passed = all(c["passed"] for c in checks.values())
    shown = [c["reason"] for c in checks.values() if c["passed"] == passed]
    valid = [
        bool(c.get("quote")) and c["quote"] in got.chunk_texts.get(c.get("chunk_id") or 0, "") for c in got.citations
    ]
    retrieved_docs = {r["document_id"] for r in got.retrieved}
    return {
        "case_key": case.key,
        "question": case.question,
        "expected": case.expected,
        "must_refuse": case.must_refuse,
        "expected_document_ids": case.expected_document_ids,
        "answer": got.content,
        "refused": got.refused,
        "passed": passed,
        "reason": "; ".join(shown),
        "checks": {
            **checks,
            "citations_valid": sum(valid),
            "citations_total": len(valid),
            "expected_retrieved": bool(retrieved_docs & set(case.expected_document_ids))
            if case.expected_document_ids
            else None,
        },
        "citations": got.citations,
        "retrieved": got.retrieved,
        "citation_valid": all(valid) if valid else None,
        "grounding_grade": got.grounding_grade,
        "latency_ms": got.latency_ms,
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def eval_summary(results: Sequence[EvalResult], *, k: int) -> dict[str, Any]:
    """The run's figures: pass rate, recall@k of expected documents, refusal accuracy,
    citation validity (valid quotes / all citations) and latency percentiles."""
    with_docs = [r for r in results if r.expected_document_ids]
    citations_total = sum(int(r.checks.get("citations_total") or 0) for r in results)
    citations_valid = sum(int(r.checks.get("citations_valid") or 0) for r in results)
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "pass_rate": _share(sum(r.passed for r in results), len(results)),
        "k": k,
        "recall_at_k": _share(sum(bool(r.checks.get("expected_retrieved")) for r in with_docs), len(with_docs)),
        "refusal_accuracy": _share(sum(r.refused == r.must_refuse for r in results), len(results)),
        "must_refuse_answered": sum(r.must_refuse and not r.refused for r in results),
        "citation_validity": _share(citations_valid, citations_total),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
    }


def _cancel_requested(run_id: int) -> bool:
    return EvalRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def eval_run_execute(*, run_id: int) -> EvalRun | None:
    """Claim a queued run and evaluate its cases one by one (see EvalRun for the states).

    Progress is stored after each case and the cancel flag is read between cases. Returns the
    finished run, or None when the run is gone or someone else claimed it.
    """
    claimed = EvalRun.objects.filter(pk=run_id, status=EvalStatus.QUEUED).update(
        status=EvalStatus.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    run = EvalRun.objects.select_related("chatbot__organization").get(pk=run_id)
    bot = chatbot_with_settings(run.chatbot, run.settings_override)
    judge = run.judge and not answering.chat_model_is_local(bot.effective_chat_model)
    results: list[EvalResult] = []
    status = EvalStatus.DONE
    error = ""
    try:
        cases = eval_cases_for_chatbot(chatbot=run.chatbot)
        EvalRun.objects.filter(pk=run.pk).update(cases_total=len(cases))
        for ordinal, case in enumerate(cases):
            if _cancel_requested(run.pk):
                status = EvalStatus.CANCELLED
                break
            fields = case_evaluate(chatbot=bot, case=case, target=run.target, judge=judge)
            results.append(EvalResult.objects.create(run=run, ordinal=ordinal, **fields))
            EvalRun.objects.filter(pk=run.pk).update(cases_done=F("cases_done") + 1)
    except Exception as exc:
        logger.exception("Evaluation run %s failed", run.pk)
        status, error = EvalStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    summary = eval_summary(results, k=bot.top_k)
    EvalRun.objects.filter(pk=run.pk, status=EvalStatus.RUNNING).update(
        status=status, error=error, summary=summary, finished_at=timezone.now()
    )
    run.refresh_from_db()
    if run.target == "draft" and run.status == EvalStatus.DONE and not run.settings_override:
        # The publish gate of each knowledge base reads the latest evaluation of its draft.
        for kb in run.chatbot.knowledge_bases.all():
            draft_evaluation_record(knowledge_base=kb, summary={**summary, "run_id": run.pk, "chatbot": bot.name})
    return run
