"""Move chunk vectors stored before kb migration 0013 from the TOAST table into their rows.

python manage.py kb_store_vectors_in_rows [--kb ID ...] [--batch N]

Chunks written since are stored so already; older ones keep their layout until rewritten, and every
vector search reads each of their vectors through the TOAST index (~5 pages a chunk instead of 1).
Safe to run while the product serves (a transaction per batch) and to run again.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kb.models import KnowledgeBase
from kb.pipeline.index.vector_indexes import store_vectors_in_rows


class Command(BaseCommand):
    help = "Move chunk vectors stored out of line (before kb migration 0013) into their rows, where they fit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kb", type=int, nargs="*", help="Knowledge base ids (default: all).")
        parser.add_argument("--batch", type=int, default=1000, help="Chunks per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["kb"]:
            missing = set(options["kb"]) - set(
                KnowledgeBase.objects.filter(pk__in=options["kb"]).values_list("pk", flat=True)
            )
            if missing:
                raise CommandError(f"No knowledge base with id {', '.join(map(str, sorted(missing)))}.")
        started = time.perf_counter()
        rewritten = store_vectors_in_rows(knowledge_base_ids=options["kb"] or None, batch=max(1, options["batch"]))
        self.stdout.write(f"{rewritten} chunk vectors rewritten ({time.perf_counter() - started:.1f} s)")
