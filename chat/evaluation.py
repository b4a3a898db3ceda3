"""Offline evaluation of a chatbot on a question file: retrieval recall, answers, refusals, citations.

Question file: JSON lines with

    question        the question text (required)
    answers         gold answer strings (optional)
    gold_passages   texts of passages that contain the answer (optional)
    gold_documents  titles / file names of documents that contain the answer (optional)
    is_impossible   true when the documents do not answer it (optional, default false)

A retrieved chunk counts as a hit when it overlaps a gold passage (half of the shorter text's
word 5-grams), else when it belongs to a gold document, else when it contains a gold answer.
Answers are generated inside a rolled-back transaction: evaluating leaves no conversations behind.
"""

from __future__ import annotations

import json
import math
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from chat.models import Channel, Chatbot
from chat.rag.answer import chat_answer
from kb.models import Chunk
from kb.selectors import chunk_search

MODES = ("bm25", "keyword", "vector", "hybrid")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    (
        "a an and are as at be by for from has have in is "
        "it its of on or that the to was were what when where which "
        "who whom why how with does did do "
    ).split()
)


@dataclass
class EvalQuestion:
    question: str
    answers: list[str] = field(default_factory=list)
    gold_passages: list[str] = field(default_factory=list)
    gold_documents: list[str] = field(default_factory=list)
    is_impossible: bool = False


def load_questions(path: Path, limit: int | None = None) -> list[EvalQuestion]:
    questions: list[EvalQuestion] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not row.get("question"):
                raise ValueError(f"{path}:{number}: every line needs a 'question'.")
            questions.append(
                EvalQuestion(
                    question=row["question"],
                    answers=[a if isinstance(a, str) else a.get("text", "") for a in row.get("answers") or []],
                    gold_passages=list(row.get("gold_passages") or []),
                    gold_documents=list(row.get("gold_documents") or []),
                    is_impossible=bool(row.get("is_impossible", False)),
                )
            )
            if limit and len(questions) >= limit:
                break
    return questions


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no accents, punctuation or articles, single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", text))
    return " ".join(text.split())


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


class _GoldMatcher:
    def __init__(self, question: EvalQuestion) -> None:
        self.question = question
        self.passages = [_shingles(p) for p in question.gold_passages]
        self.documents = {normalize(d) for d in question.gold_documents}
        self.answers = [normalize(a) for a in question.answers if normalize(a)]

    @property
    def has_gold(self) -> bool:
        return bool(self.passages or self.documents or self.answers)

    def matches(self, chunk: Chunk) -> bool:
        if self.passages:
            chunk_shingles = _shingles(chunk.text)
            return any(
                len(chunk_shingles & gold) >= 0.5 * min(len(chunk_shingles), len(gold)) for gold in self.passages
            )
        if self.documents:
            return normalize(chunk.document.title) in self.documents
        text = normalize(chunk.text)
        return any(answer in text for answer in self.answers)


class Bm25:
    """Plain Okapi BM25 over the bot's live chunks, in memory: the baseline hybrid must beat."""

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75) -> None:
        self.chunks = list(chunks)
        self.docs = [Counter(self.tokens(c.text + " " + " ".join(c.section_path))) for c in self.chunks]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for d in self.docs:
            df.update(d.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.k1, self.b = k1, b

    @staticmethod
    def tokens(text: str) -> list[str]:
        return [w for w in _WORD.findall(text.lower()) if w not in _STOP]

    def search(self, query: str, limit: int) -> list[Chunk]:
        terms = set(self.tokens(query))
        scored = []
        for i, doc in enumerate(self.docs):
            score = 0.0
            for t in terms:
                tf = doc.get(t)
                if tf:
                    norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg)
                    score += self.idf[t] * tf * (self.k1 + 1) / norm
            if score:
                scored.append((score, i))
        scored.sort(reverse=True)
        return [self.chunks[i] for _, i in scored[:limit]]


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[index], 1)


def evaluate(
    *,
    chatbot: Chatbot,
    questions: Iterable[EvalQuestion],
    modes: Sequence[str] = MODES,
    answer: bool = True,
    k: int = 10,
) -> dict[str, Any]:
    """Run every question; return the report (see the module docstring for the metrics)."""
    questions = list(questions)
    kbs = list(chatbot.knowledge_bases.all())
    bm25 = None
    if "bm25" in modes:
        live = Chunk.objects.filter(knowledge_base__in=kbs, is_live=True).without_vectors().select_related("document")
        bm25 = Bm25(list(live))
    ranks: dict[str, list[int | None]] = {m: [] for m in modes}
    retrieval_ms: dict[str, list[float]] = {m: [] for m in modes}
    answered, contains_gold, refused_impossible, impossible = 0, 0, 0, 0
    answerable = 0
    citations_total, citations_valid = 0, 0
    latencies: list[float] = []
    for q in questions:
        matcher = _GoldMatcher(q)
        if not q.is_impossible and matcher.has_gold:
            for mode in modes:
                started = time.perf_counter()
                if mode == "bm25":
                    assert bm25 is not None
                    found = bm25.search(q.question, k)
                else:
                    hits = chunk_search(knowledge_bases=kbs, query=q.question, limit=k, mode=mode)
                    found = [h.chunk for h in hits if h.chunk is not None]
                retrieval_ms[mode].append((time.perf_counter() - started) * 1000)
                rank = next((i for i, c in enumerate(found, start=1) if matcher.matches(c)), None)
                ranks[mode].append(rank)
        if q.is_impossible:
            impossible += 1
        else:
            answerable += 1
        if not answer:
            continue
        with transaction.atomic():
            result = chat_answer(chatbot=chatbot, question=q.question, channel=Channel.API)["message"]
            for citation in result["citations"]:
                citations_total += 1
                chunk = Chunk.objects.filter(pk=citation["chunk_id"]).only("text").first()
                if chunk is not None and citation["quote"] and citation["quote"] in chunk.text:
                    citations_valid += 1
            transaction.set_rollback(True)
        if result["latency"]["total_ms"] is not None:
            latencies.append(result["latency"]["total_ms"])
        if q.is_impossible:
            refused_impossible += int(result["refused"])
        elif not result["refused"]:
            answered += 1
            text = normalize(result["content"])
            contains_gold += int(any(normalize(a) and normalize(a) in text for a in q.answers))

    def recall(mode: str, at: int) -> float | None:
        values = ranks[mode]
        return round(sum(1 for r in values if r is not None and r <= at) / len(values), 4) if values else None

    def mrr(mode: str) -> float | None:
        values = ranks[mode]
        return round(sum(1 / r for r in values if r) / len(values), 4) if values else None

    return {
        "chatbot": chatbot.slug,
        "model": chatbot.effective_chat_model,
        "questions": len(questions),
        "answerable": answerable,
        "impossible": impossible,
        "retrieval": {
            mode: {
                "recall@1": recall(mode, 1),
                "recall@5": recall(mode, 5),
                "recall@10": recall(mode, 10),
                "mrr": mrr(mode),
                "evaluated": len(ranks[mode]),
                "p50_ms": _percentile(retrieval_ms[mode], 0.5),
            }
            for mode in modes
        },
        "answers": {
            "answer_rate": round(answered / answerable, 4) if answerable else None,
            "answer_contains_gold": round(contains_gold / answerable, 4) if answerable else None,
            "contains_gold_when_answered": round(contains_gold / answered, 4) if answered else None,
            "refusal_accuracy_impossible": round(refused_impossible / impossible, 4) if impossible else None,
            "citation_validity": round(citations_valid / citations_total, 4) if citations_total else None,
            "citations": citations_total,
            "latency_p50_ms": _percentile(latencies, 0.5),
            "latency_p95_ms": _percentile(latencies, 0.95),
        }
        if answer
        else None,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    lines = [
        f"Chatbot {report['chatbot']} ({report['model']}): {report['questions']} questions, "
        f"{report['answerable']} answerable, {report['impossible']} impossible",
        "",
        f"{'retriever':<10} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'MRR':>7} {'n':>6} {'p50 ms':>8}",
    ]
    for mode, row in report["retrieval"].items():
        cells = [row["recall@1"], row["recall@5"], row["recall@10"], row["mrr"]]
        lines.append(
            f"{mode:<10} "
            + " ".join(f"{c:>7.3f}" if c is not None else f"{'–':>7}" for c in cells)
            + f" {row['evaluated']:>6} {row['p50_ms'] if row['p50_ms'] is not None else '–':>8}"
        )
    answers = report.get("answers")
    if answers:
        lines += ["", "answers"]
        for key, value in answers.items():
            lines.append(f"  {key:<30} {value if value is not None else '–'}")
    return "\n".join(lines)
