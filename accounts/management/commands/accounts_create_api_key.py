"""Print a new API key for an organisation, creating the organisation and user if needed.

    python manage.py accounts_create_api_key --org acme --email ops@acme.test

Prints only the key, so scripts can capture it: KEY=$(python manage.py accounts_create_api_key ...).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.models import Organization, Role
from accounts.services import api_key_issue, membership_set, organization_create, user_get_or_create


class Command(BaseCommand):
    help = "Create an API key for an organisation (and the organisation/user if missing); prints only the key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--email", required=True, help="User the key is issued for (made owner if new).")
        parser.add_argument("--name", default="CLI key", help="A label for the key.")
        parser.add_argument("--role", default=Role.ADMIN, choices=[r.value for r in Role])

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            user, _ = user_get_or_create(email=options["email"])
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                org = organization_create(name=options["org"], slug=options["org"], owner=user)
            elif not org.memberships.filter(user=user).exists():
                membership_set(user=user, organization=org, role=Role.ADMIN)
            issued = api_key_issue(organization=org, name=options["name"], created_by=user, role=options["role"])
        self.stdout.write(issued.raw_key)
