"""Replay throughput: the last N real questions answered from live and from a draft (questions/s).

    GROUNDWORK_DATA_DIR=.data/bench uv run python bench/replay.py [--questions 200] [--articles 4]

Builds a fresh organisation with a knowledge base of SQuAD 2.0 articles from ../shared/data
(ingested in-process through the real pipeline) and a chatbot; asks it N of the set's questions
through the normal answer path (these become the "real questions", and their timing is the raw
engine: one stored answer each); switches the knowledge base to review mode and stages a
replacement of one article with its second half removed; then runs one replay of N questions
synchronously (the same service the worker's task calls). Each replayed question is answered
twice (live and draft) and rolled back, so the honest comparison is replay seconds against twice
the raw answering seconds: `replay_over_raw`. Figures go to bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SQUAD = REPO.parent / "shared" / "data" / "squad2_dev_half"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--articles", type=int, default=4)
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers
    django.setup()
    from django.core.management import call_command

    from accounts.services import organization_create
    from chat.rag.answer import chat_answer
    from chat.replay.services import replay_counts, replay_create, replay_execute
    from chat.services import chatbot_create
    from kb.models import KnowledgeBase
    from kb.pipeline.run import version_ingest
    from kb.services import document_upload, knowledge_base_create

    call_command("migrate", verbosity=0)
    questions = _jsonl(SQUAD / "questions.jsonl")
    per_article = Counter(q["doc_id"] for q in questions)
    articles = [a for a, _ in per_article.most_common(args.articles)]
    org = organization_create(name=f"bench-replay-{int(time.time())}")
    kb = knowledge_base_create(organization=org, name="SQuAD", created_by=None)
    documents = {}
    for article in articles:
        path = SQUAD / "docs" / f"{article}.txt"
        with path.open("rb") as handle:
            result = document_upload(
                knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=None, enqueue=False
            )
        version_ingest(version_id=result.version.pk)
        documents[article] = result.document
    bot = chatbot_create(organization=org, name="Replay bench bot", knowledge_bases=[kb], created_by=None)

    # Round-robin over the articles: the question file is grouped by article.
    by_article = {a: [q for q in questions if q["doc_id"] == a] for a in articles}
    chosen = [q for group in zip(*by_article.values(), strict=False) for q in group][: args.questions]
    started = time.perf_counter()
    for q in chosen:
        chat_answer(chatbot=bot, question=q["question"], channel="widget")
    raw_s = time.perf_counter() - started

    # A draft: the first article loses its second half.
    KnowledgeBase.objects.filter(pk=kb.pk).update(review_changes=True)
    kb.refresh_from_db()
    first = articles[0]
    text = (SQUAD / "docs" / f"{first}.txt").read_text()
    shortened = text[: len(text) // 2].encode()
    staged = document_upload(
        knowledge_base=kb,
        upload=io.BytesIO(shortened),
        filename=f"{first}.txt",
        uploaded_by=None,
        replace_document=documents[first],
        enqueue=False,
    )
    version_ingest(version_id=staged.version.pk)

    replay = replay_create(knowledge_base=kb, limit=args.questions)
    started = time.perf_counter()
    finished = replay_execute(replay_id=replay.pk)
    replay_s = time.perf_counter() - started
    assert finished is not None
    load = os.getloadavg()
    report = {
        "questions": finished.items_done,
        "articles": articles,
        "raw_answer_seconds": round(raw_s, 1),
        "raw_answers_per_second": round(len(chosen) / raw_s, 2) if raw_s else None,
        "replay_seconds": round(replay_s, 1),
        "replay_questions_per_second": round(finished.items_done / replay_s, 2) if replay_s else None,
        "replay_over_raw": round(replay_s / (2 * raw_s * finished.items_done / len(chosen)), 2) if raw_s else None,
        "changes": replay_counts(finished),
        "status": finished.status,
        "chat_model": bot.effective_chat_model,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in load],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
