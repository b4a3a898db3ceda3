"""Staff UI in a real headless Chromium: upload by drag and drop and watch documents become ready."""

from __future__ import annotations

import pytest

from accounts.models import Role
from kb.services import knowledge_base_create
from tests.conftest import login, screenshot

FILES = {
    "returns.md": "# Returns\n\nItems can be returned within 30 days.\n",
    "shipping.txt": "Shipping\n\nOrders leave the warehouse the same day when placed before 14:00.\n",
    "faq.md": "# FAQ\n\n## Opening hours\n\nThe shop is open Monday to Saturday, 9:00 to 18:00.\n",
}

DROP_FILES_JS = """
([files]) => {
  const data = new DataTransfer();
  for (const [name, text] of Object.entries(files)) data.items.add(new File([text], name, {type: "text/plain"}));
  const zone = document.getElementById("upload-form");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
  }
}
"""


@pytest.mark.browser
@pytest.mark.worker
def test_staff_drops_three_files_and_watches_them_become_ready(page, make_org, make_user, celery_worker) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    user = make_user(org, role=Role.EDITOR, email="editor@northwind.test")
    kb = knowledge_base_create(organization=org, name="Support", created_by=user)
    login(page, "editor@northwind.test")
    page.goto(f"/knowledge-bases/{kb.pk}/")
    page.evaluate(DROP_FILES_JS, [FILES])

    # Three upload rows, then three documents in the table that turn ready without a reload.
    for name in FILES:
        page.get_by_text(name).first.wait_for()
    rows = page.locator("#document-table tbody tr")
    rows.nth(2).wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('#document-table [data-status=ready]').length === 3", timeout=60_000
    )
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    assert rows.count() == 3
    screenshot(page, "kb-detail-after-upload")


@pytest.mark.browser
def test_viewer_sees_no_upload_area(page, make_org, make_user) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    editor = make_user(org, role=Role.EDITOR)
    make_user(org, role=Role.VIEWER, email="viewer@northwind.test")
    kb = knowledge_base_create(organization=org, name="Support", created_by=editor)
    login(page, "viewer@northwind.test")
    page.goto(f"/knowledge-bases/{kb.pk}/")
    assert page.locator("#upload-form").count() == 0
    screenshot(page, "kb-detail-viewer")
