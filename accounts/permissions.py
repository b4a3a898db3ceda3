"""What each role may do — the one place where that is decided.

Every staff view and API endpoint names an `Action`; `role_allows` answers whether a role may
perform it. Viewer: read only. Editor: knowledge bases, documents and chatbots. Admin: members,
API keys and organisation settings. Owner: everything.
"""

from __future__ import annotations

from enum import StrEnum

from accounts.models import ROLE_RANK, Role


class Action(StrEnum):
    VIEW = "view"  # read knowledge bases, documents, chatbots, conversations
    EDIT_CONTENT = "edit_content"  # upload/replace/delete documents, edit knowledge bases and bots
    REVIEW = "review"  # mark conversations reviewed, correct answers
    MANAGE_MEMBERS = "manage_members"
    MANAGE_KEYS = "manage_keys"
    MANAGE_SETTINGS = "manage_settings"
    DELETE_ORGANIZATION = "delete_organization"


_MINIMUM_ROLE: dict[Action, str] = {
    Action.VIEW: Role.VIEWER,
    Action.EDIT_CONTENT: Role.EDITOR,
    Action.REVIEW: Role.EDITOR,
    Action.MANAGE_MEMBERS: Role.ADMIN,
    Action.MANAGE_KEYS: Role.ADMIN,
    Action.MANAGE_SETTINGS: Role.ADMIN,
    Action.DELETE_ORGANIZATION: Role.OWNER,
}


def role_allows(role: str | None, action: Action) -> bool:
    if role is None or role not in ROLE_RANK:
        return False
    return ROLE_RANK[role] >= ROLE_RANK[_MINIMUM_ROLE[action]]
