"""Reads about users, organisations and keys — and the request's organisation context.

`OrgContext` is how every other app learns which organisation a request acts for and with which
role; it is the single place where tenant scoping starts.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.models import ApiKey, Membership, Organization, User
from accounts.permissions import Action, role_allows


@dataclass(frozen=True)
class OrgContext:
    """The organisation a request acts for, who acts, and with which role."""

    organization: Organization
    role: str
    user: User | None = None
    api_key: ApiKey | None = None

    def allows(self, action: Action) -> bool:
        return role_allows(self.role, action)


def organizations_for_user(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by("name")


def membership_get(*, user: User, organization_id: int) -> Membership | None:
    return Membership.objects.select_related("organization").filter(user=user, organization_id=organization_id).first()


def org_context_for_user(*, user: User, preferred_organization_id: int | None) -> OrgContext | None:
    """The user's current organisation: the preferred one if they belong to it, else their first."""
    membership = None
    if preferred_organization_id is not None:
        membership = membership_get(user=user, organization_id=preferred_organization_id)
    if membership is None:
        membership = (
            Membership.objects.select_related("organization").filter(user=user).order_by("organization__name").first()
        )
    if membership is None:
        return None
    return OrgContext(organization=membership.organization, role=membership.role, user=user)


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_get_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, or None. Looks up by prefix, compares hashes.

    A key whose creator is no longer an active member of its organisation is not active.
    """
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "gw":
        return None
    key = ApiKey.objects.select_related("organization", "created_by").filter(prefix=parts[1]).first()
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, hash_api_key(raw_key)):
        return None
    creator = key.created_by
    if creator is not None and (
        not creator.is_active
        or not Membership.objects.filter(user=creator, organization_id=key.organization_id).exists()
    ):
        # A key acts for the person who made it: once they left (or were deactivated) it stops,
        # however the membership went (membership_remove also revokes it, visibly).
        return None
    return key
