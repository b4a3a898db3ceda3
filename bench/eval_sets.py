"""Run `chat_eval` on the public evaluation sets in ../shared/data with the local defaults.

    uv run python bench/eval_sets.py [--sets squad2,clapnq,covidqa,sec10q] [--limit N] [--no-answers] [--reuse]
    uv run python bench/eval_sets.py --reuse --precise   # retrieval before/after precise ranking
    uv run python bench/eval_sets.py --chunk-size 1800 --no-answers   # every knowledge base at 1800 chars

For each set: a fresh organisation and knowledge base in the configured database (the embedded
one under .data/ by default), documents ingested in-process through the real pipeline, a chatbot,
the questions converted to the `chat_eval` format, and the report. Figures go to
bench/results/eval_<set>.json and bench/results/eval_summary.json. `--reuse` evaluates the
newest earlier ingestion of a set instead of ingesting it again (use a dedicated data directory,
e.g. GROUNDWORK_DATA_DIR=.data/eval).

`--chunk-size N` sets the knowledge bases' chunk size instead of the default; the figures go to
bench/results/eval_<set>_chunk<N>.json and under `<set>@<N>` in the summary, and `--reuse` finds
only an ingestion at that size.

`--precise` measures precise ranking (kb.precise_ranking) through the product: hybrid retrieval in
the order without it (match ranking), then the e5 ranking vectors filled (timed, in this process),
then retrieval again; figures go to bench/results/precise_ranking.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def squad2() -> tuple[list[Path | tuple[str, str]], list[dict[str, Any]]]:
    root = DATA / "squad2_dev_half"
    passages = {p["pid"]: p["text"] for p in _jsonl(root / "passages.jsonl")}
    docs: list[Path | tuple[str, str]] = sorted((root / "docs").glob("*.txt"))
    questions = [
        {
            "question": q["question"],
            "answers": q["answers"],
            "gold_passages": [passages[q["gold_pid"]]] if q.get("gold_pid") in passages else [],
            "is_impossible": q["is_impossible"],
        }
        for q in _jsonl(root / "questions.jsonl")
    ]
    return docs, questions


def clapnq() -> tuple[list[Path | tuple[str, str]], list[dict[str, Any]]]:
    root = DATA / "clapnq_dev"
    passages = {p["pid"]: p for p in _jsonl(root / "passages.jsonl")}
    docs: list[Path | tuple[str, str]] = [
        (f"{pid}.txt", f"{p.get('title', '')}\n\n{p['text']}") for pid, p in passages.items()
    ]
    questions = [
        {
            "question": q["question"],
            "answers": q.get("answers") or [],
            "gold_passages": [passages[pid]["text"] for pid in q.get("gold_pids") or [] if pid in passages],
            "is_impossible": not q.get("answerable", True),
        }
        for q in _jsonl(root / "questions.jsonl")
    ]
    return docs, questions


def covidqa() -> tuple[list[Path | tuple[str, str]], list[dict[str, Any]]]:
    root = DATA / "covidqa"
    docs: list[Path | tuple[str, str]] = sorted((root / "docs").glob("*.txt"))
    questions = [
        {
            "question": q["question"],
            "answers": [a["text"] if isinstance(a, dict) else a for a in q["answers"]],
            "is_impossible": q.get("is_impossible", False),
        }
        for q in _jsonl(root / "questions.jsonl")
    ]
    return docs, questions


def sec10q() -> tuple[list[Path | tuple[str, str]], list[dict[str, Any]]]:
    root = DATA / "docugami_sec10q"
    docs: list[Path | tuple[str, str]] = sorted((root / "pdfs").glob("*.pdf"))
    questions = [
        {"question": q["question"], "gold_documents": q.get("source_pdfs") or [], "is_impossible": False}
        for q in _jsonl(root / "questions.jsonl")
    ]
    return docs, questions


SETS = {"squad2": squad2, "clapnq": clapnq, "covidqa": covidqa, "sec10q": sec10q}


def _ingested_bot(name: str, documents: int) -> Any:
    """The chatbot of the newest earlier ingestion of this set whose documents all finished."""
    from chat.models import Chatbot
    from kb.models import Document

    bot = (
        Chatbot.objects.filter(organization__name__startswith=f"eval-{name}-", name=f"{name} bot")
        .order_by("-pk")
        .first()
    )
    if bot is None:
        return None
    finished = Document.objects.filter(
        knowledge_base__in=bot.knowledge_bases.all(), latest_version__status__in=("ready", "failed")
    ).count()
    return bot if finished == documents else None


def run(
    name: str,
    limit: int | None,
    answers: bool,
    reuse: bool = False,
    ingest_only: bool = False,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    import io

    from accounts.services import organization_create
    from chat.services import chatbot_create
    from kb.models import DocumentStatus, DocumentVersion
    from kb.pipeline.run import version_ingest
    from kb.services import document_upload, knowledge_base_create

    docs, questions = SETS[name]()
    label = name if chunk_size is None else f"{name}@{chunk_size}"
    bot = _ingested_bot(label, len(docs)) if reuse else None
    if bot is not None:
        print(f"{label}: reusing {bot.organization.name}")
        return _evaluate(label, bot, docs, questions, limit, answers, failed=None, ingest_s=None)
    org = organization_create(name=f"eval-{label}-{int(time.time())}")
    if chunk_size is None:
        kb = knowledge_base_create(organization=org, name=label, created_by=None)
    else:  # the default overlap
        kb = knowledge_base_create(organization=org, name=label, created_by=None, chunk_size=chunk_size)
    started = time.perf_counter()
    failed = []
    for doc in docs:
        if isinstance(doc, Path):
            handle: Any = doc.open("rb")
            filename = doc.name
        else:
            filename, text = doc
            handle = io.BytesIO(text.encode())
        with handle:
            result = document_upload(
                knowledge_base=kb, upload=handle, filename=filename, uploaded_by=None, enqueue=False
            )
        version_ingest(version_id=result.version.pk)
        version = DocumentVersion.objects.get(pk=result.version.pk)
        if version.status != DocumentStatus.READY:
            failed.append((filename, version.error_message))
    ingest_s = time.perf_counter() - started
    bot = chatbot_create(organization=org, name=f"{label} bot", knowledge_bases=[kb], created_by=None)
    if ingest_only:
        print(f"{label}: ingested {len(docs)} documents in {ingest_s:.0f}s, {len(failed)} failed")
        return {"set": label, "documents": len(docs), "documents_failed": failed, "ingest_seconds": round(ingest_s, 1)}
    return _evaluate(label, bot, docs, questions, limit, answers, failed=failed, ingest_s=ingest_s)


def _evaluate(
    name: str,
    bot: Any,
    docs: list[Any],
    questions: list[dict[str, Any]],
    limit: int | None,
    answers: bool,
    *,
    failed: list[Any] | None,
    ingest_s: float | None,
) -> dict[str, Any]:
    from chat.evaluation import evaluate, format_report, load_questions

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
        for q in questions:
            out.write(json.dumps(q) + "\n")
    report = evaluate(chatbot=bot, questions=load_questions(Path(out.name), limit), answer=answers)
    report["set"] = name
    report["documents"] = len(docs)
    report["documents_failed"] = failed
    report["ingest_seconds"] = round(ingest_s, 1) if ingest_s is not None else None
    print(f"\n=== {name} ({len(docs)} documents, ingest {ingest_s or 0:.0f}s) ===")
    print(format_report(report))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"eval_{name.replace('@', '_chunk')}.json").write_text(json.dumps(report, indent=2))
    return report


def precise(name: str, limit: int | None) -> dict[str, Any]:
    """Retrieval of an earlier ingestion of `name`, with match ranking alone and then with precise ranking."""
    from chat.evaluation import evaluate, load_questions
    from kb.models import Chunk
    from kb.pipeline.ranking import fill_ranking_vectors
    from kb.services import knowledge_base_update

    docs, questions = SETS[name]()
    bot = _ingested_bot(name, len(docs))
    if bot is None:
        raise SystemExit(f"{name}: no finished ingestion to measure; run with --ingest-only first")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
        for q in questions:
            out.write(json.dumps(q) + "\n")
    loaded = load_questions(Path(out.name), limit)
    kbs = list(bot.knowledge_bases.all())
    for kb in kbs:
        knowledge_base_update(knowledge_base=kb, changes={"precise_ranking": False})
    # Without precise ranking: hybrid search's own order (match ranking, kb.match_ranking).
    matched = evaluate(chatbot=bot, questions=loaded, answer=False, modes=("hybrid",))["retrieval"]["hybrid"]
    chunks = Chunk.objects.filter(knowledge_base__in=kbs).count()
    Chunk.objects.filter(knowledge_base__in=kbs).update(ranking_embedding=None)
    started = time.perf_counter()
    for kb in kbs:
        kb.precise_ranking = True
        kb.save(update_fields=["precise_ranking"])
        fill_ranking_vectors(knowledge_base_id=kb.pk)
    fill_s = time.perf_counter() - started
    bot.refresh_from_db()
    precise_report = evaluate(chatbot=bot, questions=loaded, answer=False, modes=("hybrid",))["retrieval"]["hybrid"]
    row = {
        "set": name,
        "questions": matched["evaluated"],
        "chunks": chunks,
        "match": matched,
        "precise": precise_report,
        "fill_seconds": round(fill_s, 1),
        "fill_chunks_per_s": round(chunks / fill_s, 1) if fill_s else None,
        "load_average_after_fill": list(os.getloadavg()),
    }
    print(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", default="squad2,clapnq,covidqa,sec10q")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-answers", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="evaluate an earlier ingestion of each set")
    parser.add_argument("--ingest-only", action="store_true", help="ingest the sets, evaluate nothing")
    parser.add_argument("--precise", action="store_true", help="earlier ingestions: match vs precise ranking")
    parser.add_argument("--chunk-size", type=int, default=None, help="the knowledge bases' chunk size (characters)")
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    from django.core.management import call_command

    if args.chunk_size is not None:
        from kb.serializers import KnowledgeBaseInSerializer

        # The API's own rule for a knowledge base's chunk size, before anything is ingested.
        check = KnowledgeBaseInSerializer(data={"name": "eval", "chunk_size": args.chunk_size})
        if not check.is_valid():
            parser.error(f"--chunk-size {args.chunk_size}: {check.errors['chunk_size'][0]}")
    call_command("migrate", verbosity=0)  # a fresh data directory starts empty
    if args.precise:
        path = RESULTS / "precise_ranking.json"
        figures = json.loads(path.read_text()) if path.exists() else {}
        figures["command"] = "python bench/eval_sets.py --reuse --precise --sets " + args.sets
        figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for name in args.sets.split(","):
            figures.setdefault("sets", {})[name] = precise(name, args.limit)
            path.write_text(json.dumps(figures, indent=2))
        return
    summary_path = RESULTS / "eval_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.sets.split(","):
        report = run(name, args.limit, not args.no_answers, args.reuse, args.ingest_only, args.chunk_size)
        if not args.ingest_only:
            summary[report["set"]] = report
            summary_path.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
