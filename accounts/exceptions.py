"""Domain errors of the accounts app; each says what the user can do about it."""


class AccountsError(Exception):
    """Base class."""


class NotAMember(AccountsError):
    def __init__(self) -> None:
        super().__init__("You are not a member of that organisation. Ask one of its admins to invite you.")


class PermissionDeniedForRole(AccountsError):
    def __init__(self, role: str | None, action: str) -> None:
        super().__init__(
            f"Your role ({role or 'none'}) may not {action.replace('_', ' ')} here. Ask an admin of this organisation."
        )
