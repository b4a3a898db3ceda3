"""Evaluate a chatbot on a question file (see `chat.evaluation` for the format and the metrics).

python manage.py chat_eval --bot support --org demo --questions questions.jsonl [--json out.json]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Organization
from chat.evaluation import MODES, evaluate, format_report, load_questions
from chat.selectors import chatbot_get


class Command(BaseCommand):
    help = "Evaluate a chatbot: retrieval recall@1/5/10 and MRR per retriever, answers, refusals, citations, latency."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bot", required=True, help="Chatbot id or slug.")
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--questions", required=True, type=Path, help="JSON lines question file.")
        parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N questions.")
        parser.add_argument("--modes", default=",".join(MODES), help=f"Retrievers to compare ({', '.join(MODES)}).")
        parser.add_argument("--no-answers", action="store_true", help="Retrieval metrics only.")
        parser.add_argument("--json", type=Path, default=None, help="Also write the report as JSON here.")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organisation with slug {options['org']!r}.")
        bot = chatbot_get(organization=org, id_or_slug=options["bot"])
        if bot is None:
            raise CommandError(f"No chatbot {options['bot']!r} in {org.slug}.")
        if not options["questions"].exists():
            raise CommandError(f"{options['questions']} does not exist.")
        modes = [m.strip() for m in options["modes"].split(",") if m.strip()]
        unknown = set(modes) - set(MODES)
        if unknown:
            raise CommandError(f"Unknown retrievers {sorted(unknown)}; choose from {', '.join(MODES)}.")
        try:
            questions = load_questions(options["questions"], options["limit"])
        except (ValueError, json.JSONDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        report = evaluate(chatbot=bot, questions=questions, modes=modes, answer=not options["no_answers"])
        self.stdout.write(format_report(report))
        if options["json"]:
            options["json"].write_text(json.dumps(report, indent=2))
            self.stdout.write(f"\nJSON written to {options['json']}")
