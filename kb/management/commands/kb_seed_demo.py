"""Create the demo organisation, admin user and a demo knowledge base (idempotent).

Prints the sign-in URL, e-mail and password. Used by `make run`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import Organization, Role
from accounts.services import membership_set, organization_create, user_get_or_create
from kb import services
from kb.models import KnowledgeBase

# Compared with HOST only, to print a browsable address; nothing binds to it here.
_ANY_ADDRESS = {"0.0.0.0", "::"}  # noqa: S104
DEMO_DOCUMENTS = Path(__file__).resolve().parents[2] / "demo_documents"


class Command(BaseCommand):
    help = "Create a demo organisation, admin user and knowledge base from the bundled sample documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default=os.environ.get("GROUNDWORK_DEMO_EMAIL", "admin@example.com"))
        parser.add_argument("--password", default=os.environ.get("GROUNDWORK_DEMO_PASSWORD", "groundwork-demo"))
        parser.add_argument("--url", default=None, help="Printed sign-in URL.")

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = user_get_or_create(email=options["email"], full_name="Demo Admin")
        if created:
            user.set_password(options["password"])
            user.is_staff = user.is_superuser = True
            user.save()
        org = Organization.objects.filter(slug="demo").first()
        if org is None:
            org = organization_create(name="Demo Company", slug="demo", owner=user)
        else:
            membership_set(user=user, organization=org, role=Role.OWNER)
        kb = KnowledgeBase.objects.filter(organization=org, name="Customer support").first()
        if kb is None:
            kb = services.knowledge_base_create(
                organization=org,
                name="Customer support",
                description="Sample policies of a fictional outdoor shop, to try search and chat.",
                created_by=user,
            )
            for path in sorted(DEMO_DOCUMENTS.iterdir()):
                with path.open("rb") as handle:
                    services.document_upload(knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=user)
        host = os.environ.get("HOST", "127.0.0.1")
        port = os.environ.get("PORT", "8000")
        url = options["url"] or f"http://{'127.0.0.1' if host in _ANY_ADDRESS else host}:{port}/"
        password_note = options["password"]
        if not user.check_password(options["password"]):
            password_note = "(you changed it since the demo was created)"  # noqa: S105 - a message, not a secret
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Groundwork is starting.\n"
                f"  Open      {url}\n"
                f"  E-mail    {user.email}\n"
                f"  Password  {password_note}\n"
            )
        )
