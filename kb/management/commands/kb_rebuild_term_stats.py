"""Recount the BM25 statistics and postings of knowledge bases from their live chunks.

python manage.py kb_rebuild_term_stats [--kb ID ...]

They are kept up to date as documents change; this is for repairs and for chunks loaded in bulk
outside the ingestion pipeline (bench/retrieval.py does the same after its load).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kb.models import KnowledgeBase
from kb.pipeline.index import term_stats


class Command(BaseCommand):
    help = "Recount the keyword-search (BM25) statistics and postings of knowledge bases from their live chunks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kb", type=int, nargs="*", help="Knowledge base ids (default: all).")

    def handle(self, *args: Any, **options: Any) -> None:
        knowledge_bases = KnowledgeBase.objects.order_by("pk")
        if options["kb"]:
            knowledge_bases = knowledge_bases.filter(pk__in=options["kb"])
            missing = set(options["kb"]) - {kb.pk for kb in knowledge_bases}
            if missing:
                raise CommandError(f"No knowledge base with id {', '.join(map(str, sorted(missing)))}.")
        for kb in knowledge_bases:
            started = time.perf_counter()
            term_stats.rebuild(kb)
            kb.refresh_from_db()
            self.stdout.write(
                f"{kb.pk} {kb.name}: {kb.live_chunks} live chunks ({time.perf_counter() - started:.1f} s)"
            )
