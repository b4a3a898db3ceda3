"""Website import speed: a local site's pages synced and ingested, beside plain HTTP GETs of them.

Not a test: run it by hand after changing kb.websites, and read the JSON.

    nice -n 5 .venv/bin/python bench/website_sync.py [--pages 200]

1. Starts its own embedded PostgreSQL and Redis under `.data/bench-website`, migrates.
2. Serves a local site of N help pages (tests/local_site.py: sitemap index, robots.txt, ETags)
   on loopback and, in this process:
   - raw: GETs every page once with one `httpx.Client` (the engine underneath: no SSRF checks,
     robots.txt, sitemap, database or storage);
   - first sync: `kb.websites.sync.web_source_sync` (robots.txt, sitemap index, every page
     fetched, fingerprinted and stored as a new document version);
   - ingest: `kb.pipeline.run.version_ingest` on every version the sync enqueued, one after the
     other (parse, chunk, embed with the local model, index, publish) — what the worker does;
   - re-sync with nothing changed (every page answers 304) and re-sync after one page changed.
3. Writes pages/s and the ratios to the raw GETs into bench/results/website_sync.json, with the
   load average at start and end (a shared machine: read the ratios, not the absolute seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA_DIR = REPO / ".data" / "bench-website"


def setup_django() -> None:
    os.environ["GROUNDWORK_DATA_DIR"] = str(DATA_DIR)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["GROUNDWORK_FETCH_ALLOW_PRIVATE"] = "1"  # the site is on loopback
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)
    import django

    import kb.pipeline.parse  # noqa: F401  (configures unstructured's environment first)

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    load_start = [round(x, 2) for x in os.getloadavg()]
    setup_django()
    import httpx

    from accounts.services import organization_create
    from kb.models import WebSource
    from kb.pipeline import embed, parse
    from kb.pipeline.run import version_ingest
    from kb.services import knowledge_base_create
    from kb.websites.services import web_source_create
    from kb.websites.sync import web_source_sync
    from tests.local_site import help_path, serve_site

    parse.warm_up()
    embed.warm_up()
    org = organization_create(name=f"bench-website-{int(time.time())}")
    kb = knowledge_base_create(organization=org, name="Site", created_by=None)
    results: dict[str, object] = {"pages": args.pages, "load_start": load_start}
    with serve_site(args.pages) as site:
        urls = [site.base + help_path(n) for n in range(1, args.pages + 1)]
        started = time.perf_counter()
        with httpx.Client() as client:
            for url in urls:
                client.get(url).raise_for_status()
        raw = time.perf_counter() - started

        source = web_source_create(knowledge_base=kb, url=f"{site.base}/", created_by=None, max_pages=args.pages)
        enqueued: list[int] = []

        def sync() -> tuple[float, dict[str, object]]:
            WebSource.objects.filter(pk=source.pk).update(status="queued")
            began = time.perf_counter()
            report = web_source_sync(source_id=source.pk, enqueue=enqueued.append)
            assert report is not None, WebSource.objects.get(pk=source.pk).error_message
            return time.perf_counter() - began, report

        first, report = sync()
        assert report["added"] == args.pages, report
        began = time.perf_counter()
        for version_id in enqueued:
            version_ingest(version_id=version_id, worker="bench")
        ingest = time.perf_counter() - began
        unchanged, report = sync()
        assert report["unchanged"] == args.pages, report
        site.texts[help_path(1)] = "Help topic 1 was rewritten for the benchmark."
        one_changed, report = sync()
        assert report["changed"] == 1, report

    def rate(seconds: float) -> float:
        return round(args.pages / seconds, 1)

    results.update(
        raw_get_s=round(raw, 3),
        raw_get_pages_per_s=rate(raw),
        first_sync_s=round(first, 3),
        first_sync_pages_per_s=rate(first),
        first_sync_ratio_to_raw=round(first / raw, 2),
        ingest_s=round(ingest, 3),
        ingest_pages_per_s=rate(ingest),
        import_pages_per_s=rate(first + ingest),
        resync_unchanged_s=round(unchanged, 3),
        resync_unchanged_pages_per_s=rate(unchanged),
        resync_unchanged_ratio_to_raw=round(unchanged / raw, 2),
        resync_one_changed_s=round(one_changed, 3),
        load_end=[round(x, 2) for x in os.getloadavg()],
    )
    out = REPO / "bench" / "results" / "website_sync.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    from django.db import connections

    connections.close_all()
    from devtools import embedded_services

    embedded_services.stop_postgres(DATA_DIR)
    embedded_services.stop_redis(DATA_DIR)


if __name__ == "__main__":
    main()
