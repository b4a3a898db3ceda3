"""A Content-Security-Policy for the staff UI.

Pages of our own origin may run only our own scripts (`script-src 'self'`: no inline script, no
inline event handlers — static/js/staff.js gives the pages their small behaviours through data
attributes), connect only to us, submit forms only to us and be framed only by us. Inline
`style` attributes stay allowed: server-rendered charts size their bars with them, and style is
not how a script gets in. Responses that set their own policy keep it (the widget frame, stored
originals with `sandbox`); the Django admin is left as Django ships it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

STAFF_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)


class StaffContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            "Content-Security-Policy" not in response
            and response.get("Content-Type", "").startswith("text/html")
            and not request.path.startswith("/admin/")
        ):
            response["Content-Security-Policy"] = STAFF_CSP
        return response
