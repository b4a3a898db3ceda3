"""Staff UI in a real headless Chromium: import a whole (local) website and watch its pages become ready."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.test import override_settings

from accounts.models import Role
from kb.services import knowledge_base_create
from tests.conftest import login, screenshot
from tests.local_site import PAGES, serve_site

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "website-import.png"


@pytest.mark.browser
@pytest.mark.worker
def test_staff_imports_a_30_page_website_and_watches_it_become_ready(page, make_org, make_user, celery_worker) -> None:  # type: ignore[no-untyped-def]
    org = make_org("Northwind")
    user = make_user(org, role=Role.EDITOR, email="editor@northwind.test")
    kb = knowledge_base_create(organization=org, name="Help centre", created_by=user)
    with serve_site() as site, override_settings(GROUNDWORK_FETCH_ALLOW_PRIVATE=True, GROUNDWORK_FETCH_TIMEOUT=5.0):
        login(page, "editor@northwind.test")
        page.goto(f"/knowledge-bases/{kb.pk}/")
        page.get_by_text("Import a whole website").click()
        page.get_by_label("Website or sitemap address").fill(f"{site.base}/sitemap.xml")
        page.get_by_label("Re-sync by itself").select_option("daily")
        page.get_by_role("button", name="Import website").click()

        # The source page lists the pages as they are found and turns each ready, without a reload.
        page.wait_for_url(f"**/knowledge-bases/{kb.pk}/web-sources/*/")
        page.locator("#web-page-table tbody tr").first.wait_for()
        page.wait_for_function(
            f"() => document.querySelectorAll('#web-page-table [data-status=ready]').length === {PAGES}",
            timeout=240_000,
        )
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        page.locator("#sync-report").wait_for()
        assert page.locator("#sync-report [data-count=added]").inner_text() == str(PAGES)
        assert page.locator("#web-page-table tbody tr").count() == PAGES
        assert "/private/" not in page.locator("#web-page-table").inner_text()  # robots.txt
        page.get_by_text("What changed").click()
        path = screenshot(page, "website-import")
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOT)

        # Back on the knowledge base, the site is listed with its schedule.
        page.goto(f"/knowledge-bases/{kb.pk}/")
        assert "daily" in page.locator("#web-sources").inner_text()
