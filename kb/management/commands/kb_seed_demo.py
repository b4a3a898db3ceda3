"""Create the demo organisation, admin user and a demo knowledge base (idempotent); see `kb.demo`.

Prints the sign-in URL, e-mail and password. `make run` calls `chat_seed_demo`, which does this
and adds a chatbot. `GROUNDWORK_DEMO_PASSWORD` (or `--password`) chooses the password explicitly.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kb.demo import demo_knowledge_base_seed

# Compared with HOST only, to print a browsable address; nothing binds to it here.
_ANY_ADDRESS = {"0.0.0.0", "::"}  # noqa: S104


def base_url(explicit: str | None = None) -> str:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    return explicit or f"http://{'127.0.0.1' if host in _ANY_ADDRESS else host}:{port}/"


class Command(BaseCommand):
    help = "Create a demo organisation, admin user and knowledge base from the bundled sample documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default=os.environ.get("GROUNDWORK_DEMO_EMAIL", "admin@example.com"))
        parser.add_argument("--password", default=os.environ.get("GROUNDWORK_DEMO_PASSWORD") or None)
        parser.add_argument("--url", default=None, help="Printed sign-in URL.")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = demo_knowledge_base_seed(
            email=options["email"], password=options["password"], host=os.environ.get("HOST", "127.0.0.1")
        )
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Groundwork is starting.\n"
                f"  Open      {base_url(options['url'])}\n"
                f"  E-mail    {demo.user.email}\n"
                f"  Password  {demo.password_note}\n"
            )
        )
