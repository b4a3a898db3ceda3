"""`make run`'s seed: the demo user, organisation and knowledge base, and a chatbot that talks.

Prints where to sign in, the playground of the demo bot and a local page with its widget.
Same options as `kb_seed_demo` (`--email`, `--password`, `--url`).
"""

from __future__ import annotations

import os
from typing import Any

from chat.demo import demo_seed
from kb.management.commands.kb_seed_demo import Command as KbSeedCommand
from kb.management.commands.kb_seed_demo import base_url


class Command(KbSeedCommand):
    help = "Seed the demo knowledge base and a chatbot on it with suggested questions (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        seed = demo_seed(email=options["email"], password=options["password"], host=os.environ.get("HOST", "127.0.0.1"))
        url = base_url(options["url"])
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Groundwork is starting.\n"
                f"  Open         {url}\n"
                f"  E-mail       {seed.knowledge.user.email}\n"
                f"  Password     {seed.knowledge.password_note}\n"
                f"  Playground   {seed.playground_url(url)}\n"
                f"  Widget demo  {seed.widget_demo_url(url)}\n"
            )
        )
