"""Evaluation-run throughput: 500 test cases of one chatbot with the local models (cases/s).

    uv run python bench/eval_cases.py [--cases 500] [--articles 6]

Builds a fresh organisation with a knowledge base of SQuAD 2.0 articles from ../shared/data
(the articles with the most questions first, ingested in-process through the real pipeline),
a chatbot, and test cases from the set's own questions: answerable ones expect any of their gold
answers, unanswerable ones must be refused. Then one evaluation run executes synchronously
(the same service the worker's task calls) and the figures go to bench/results/eval_cases.json.
Use a dedicated data directory, e.g. GROUNDWORK_DATA_DIR=.data/bench.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--articles", type=int, default=6)
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers
    django.setup()
    from django.core.management import call_command

    from accounts.services import organization_create
    from chat.models import TestCase
    from chat.services import chatbot_create
    from chat.testsets.runner import eval_run_execute
    from chat.testsets.services import eval_run_create
    from kb.pipeline.run import version_ingest
    from kb.services import document_upload, knowledge_base_create

    call_command("migrate", verbosity=0)
    questions = _jsonl(SQUAD / "questions.jsonl")
    per_article = Counter(q["doc_id"] for q in questions)
    articles = [a for a, _ in per_article.most_common(args.articles)]
    org = organization_create(name=f"bench-eval-cases-{int(time.time())}")
    kb = knowledge_base_create(organization=org, name="SQuAD", created_by=None)
    started = time.perf_counter()
    for article in articles:
        path = SQUAD / "docs" / f"{article}.txt"
        with path.open("rb") as handle:
            result = document_upload(
                knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=None, enqueue=False
            )
        version_ingest(version_id=result.version.pk)
    ingest_s = time.perf_counter() - started
    bot = chatbot_create(organization=org, name="Eval cases bot", knowledge_bases=[kb], created_by=None)
    chosen = [q for q in questions if q["doc_id"] in articles][: args.cases]
    TestCase.objects.bulk_create(
        TestCase(
            organization=org,
            chatbot=bot,
            question=q["question"],
            expected=[]
            if q["is_impossible"]
            else sorted({a if isinstance(a, str) else a["text"] for a in q["answers"]}),
            must_refuse=bool(q["is_impossible"]),
            source="import",
        )
        for q in chosen
    )
    run = eval_run_create(chatbot=bot, created_by=None, enqueue=False)
    started = time.perf_counter()
    finished = eval_run_execute(run_id=run.pk)
    elapsed = time.perf_counter() - started
    assert finished is not None
    report = {
        "cases": finished.cases_done,
        "articles": articles,
        "ingest_seconds": round(ingest_s, 1),
        "run_seconds": round(elapsed, 1),
        "cases_per_second": round(finished.cases_done / elapsed, 2) if elapsed else None,
        "status": finished.status,
        "summary": finished.summary,
        "chat_model": bot.effective_chat_model,
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_cases.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
