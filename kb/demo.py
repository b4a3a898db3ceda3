"""The demo organisation, admin user and knowledge base that `make run` seeds (idempotent).

The demo user is a superuser, so its password matters as soon as the server is reachable: the
published password (`groundwork-demo`) is used only while `host` is a loopback address. On any
other address the user gets a random password, printed once when it is set; a demo user still
holding the published password gets a random one the first time the server is bound elsewhere.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from accounts.models import Organization, Role, User
from accounts.services import membership_set, organization_create, user_get_or_create
from kb import services
from kb.models import KnowledgeBase

DEMO_DOCUMENTS: Final = Path(__file__).resolve().parent / "demo_documents"
PUBLISHED_PASSWORD: Final = "groundwork-demo"  # noqa: S105 - documented in README, only ever used on loopback
DEMO_KB_NAME: Final = "Customer support"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class DemoKnowledgeBase:
    user: User
    organization: Organization
    knowledge_base: KnowledgeBase
    password_note: str  # the password to print, or how to set one


def demo_knowledge_base_seed(*, email: str, password: str | None, host: str) -> DemoKnowledgeBase:
    """The demo user, organisation and knowledge base (its documents uploaded and queued once)."""
    loopback = is_loopback(host)
    user, created = user_get_or_create(email=email, full_name="Demo Admin")
    new_password: str | None = None
    if created:
        new_password = password or (PUBLISHED_PASSWORD if loopback else secrets.token_urlsafe(18))
        user.is_staff = user.is_superuser = True
    elif not loopback and not password and user.check_password(PUBLISHED_PASSWORD):
        new_password = secrets.token_urlsafe(18)  # the published one must not face the network
    if new_password is not None:
        user.set_password(new_password)
        user.save()
    org = Organization.objects.filter(slug="demo").first()
    if org is None:
        org = organization_create(name="Demo Company", slug="demo", owner=user)
    else:
        membership_set(user=user, organization=org, role=Role.OWNER)
    kb = KnowledgeBase.objects.filter(organization=org, name=DEMO_KB_NAME).first()
    if kb is None:
        kb = services.knowledge_base_create(
            organization=org,
            name=DEMO_KB_NAME,
            description="Sample policies of a fictional outdoor shop, to try search and chat.",
            created_by=user,
        )
        for path in sorted(DEMO_DOCUMENTS.iterdir()):
            with path.open("rb") as handle:
                services.document_upload(knowledge_base=kb, upload=handle, filename=path.name, uploaded_by=user)
    if new_password is not None:
        note = new_password  # printed this once
    elif loopback and user.check_password(PUBLISHED_PASSWORD):
        note = PUBLISHED_PASSWORD
    elif password and user.check_password(password):
        note = password
    else:
        note = f"(printed when it was set; `manage.py changepassword {user.email}` sets a new one)"
    return DemoKnowledgeBase(user=user, organization=org, knowledge_base=kb, password_note=note)
