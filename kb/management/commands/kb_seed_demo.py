"""Create the demo organisation, admin user and a demo knowledge base (idempotent).

Prints the sign-in URL, e-mail and password. Used by `make run`.

The demo user is a superuser, so its password matters as soon as the server is reachable: the
published password (`groundwork-demo`) is used only while `HOST` is a loopback address. On any
other address the user gets a random password, printed once when it is set; a demo user still
holding the published password gets a random one the first time the server is bound elsewhere.
`GROUNDWORK_DEMO_PASSWORD` (or `--password`) chooses the password explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
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
PUBLISHED_PASSWORD = "groundwork-demo"  # noqa: S105 - documented in README, only ever used on loopback


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = "Create a demo organisation, admin user and knowledge base from the bundled sample documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default=os.environ.get("GROUNDWORK_DEMO_EMAIL", "admin@example.com"))
        parser.add_argument("--password", default=os.environ.get("GROUNDWORK_DEMO_PASSWORD") or None)
        parser.add_argument("--url", default=None, help="Printed sign-in URL.")

    def handle(self, *args: Any, **options: Any) -> None:
        host = os.environ.get("HOST", "127.0.0.1")
        loopback = _is_loopback(host)
        explicit: str | None = options["password"]
        user, created = user_get_or_create(email=options["email"], full_name="Demo Admin")
        new_password: str | None = None
        if created:
            new_password = explicit or (PUBLISHED_PASSWORD if loopback else secrets.token_urlsafe(18))
            user.is_staff = user.is_superuser = True
        elif not loopback and not explicit and user.check_password(PUBLISHED_PASSWORD):
            new_password = secrets.token_urlsafe(18)  # the published one must not face the network
        if new_password is not None:
            user.set_password(new_password)
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
        port = os.environ.get("PORT", "8000")
        url = options["url"] or f"http://{'127.0.0.1' if host in _ANY_ADDRESS else host}:{port}/"
        if new_password is not None:
            password_note = new_password  # printed this once
        elif loopback and user.check_password(PUBLISHED_PASSWORD):
            password_note = PUBLISHED_PASSWORD
        elif explicit and user.check_password(explicit):
            password_note = explicit
        else:
            password_note = f"(printed when it was set; `manage.py changepassword {user.email}` sets a new one)"
        self.stdout.write(
            self.style.SUCCESS(
                "\n  Groundwork is starting.\n"
                f"  Open      {url}\n"
                f"  E-mail    {user.email}\n"
                f"  Password  {password_note}\n"
            )
        )
