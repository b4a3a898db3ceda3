"""Evaluate a chatbot on a question file (see `chat.evaluation` for the format and the metrics).

python manage.py chat_eval --bot support --org demo --questions questions.jsonl [--json out.json]

Or run a chatbot's own test set (its test cases and Q&A entries, see `chat.testsets`) for CI:

python manage.py chat_eval --chatbot support [--org demo] --fail-under 0.9
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
        parser.add_argument("--bot", help="Chatbot id or slug (with --org and --questions).")
        parser.add_argument("--org", help="Organisation slug.")
        parser.add_argument("--questions", type=Path, help="JSON lines question file.")
        parser.add_argument(
            "--chatbot", help="Chatbot id or slug: run its test set (organisation inferred unless --org)."
        )
        parser.add_argument(
            "--fail-under", type=float, default=None, help="With --chatbot: exit non-zero when pass_rate is below this."
        )
        parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N questions.")
        parser.add_argument("--modes", default=",".join(MODES), help=f"Retrievers to compare ({', '.join(MODES)}).")
        parser.add_argument("--no-answers", action="store_true", help="Retrieval metrics only.")
        parser.add_argument("--json", type=Path, default=None, help="Also write the report as JSON here.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["chatbot"] and not options["questions"]:
            self._test_set(options)
            return
        if not (options["bot"] or options["chatbot"]) or not options["org"] or not options["questions"]:
            raise CommandError("Give --chatbot ID (its test set), or --bot, --org and --questions.")
        options["bot"] = options["bot"] or options["chatbot"]
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

    def _test_set(self, options: dict[str, Any]) -> None:
        """Run the bot's test set synchronously (the same service as the worker's task)."""
        from chat.models import Chatbot
        from chat.testsets.runner import eval_run_execute
        from chat.testsets.services import eval_run_create

        ident = str(options["chatbot"])
        bots = Chatbot.objects.select_related("organization")
        if options["org"]:
            bots = bots.filter(organization__slug=options["org"])
        matches = list(bots.filter(pk=int(ident)) if ident.isdigit() else bots.filter(slug=ident))
        if not matches:
            raise CommandError(f"No chatbot {ident!r}.")
        if len(matches) > 1:
            raise CommandError(f"Several organisations have a chatbot {ident!r}: add --org.")
        bot = matches[0]
        run = eval_run_create(chatbot=bot, created_by=None, enqueue=False)
        finished = eval_run_execute(run_id=run.pk)
        if finished is None:
            raise CommandError("The evaluation could not start.")
        summary = finished.summary
        self.stdout.write(f"Chatbot {bot.slug} ({bot.organization.slug}): evaluation {finished.pk} {finished.status}")
        for key, value in summary.items():
            self.stdout.write(f"  {key:<22} {value if value is not None else '–'}")
        for result in finished.results.filter(passed=False):
            self.stdout.write(f"  FAIL {result.question[:70]!r}: {result.reason}")
        if options["json"]:
            options["json"].write_text(json.dumps({"id": finished.pk, "status": finished.status, "summary": summary}))
        if finished.status != "done":
            raise CommandError(f"The evaluation {finished.status}: {finished.error}")
        threshold = options["fail_under"]
        if threshold is not None and (summary.get("pass_rate") or 0.0) < threshold:
            raise CommandError(f"pass_rate {summary.get('pass_rate')} is below --fail-under {threshold}.")
