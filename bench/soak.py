"""Soak: mixed traffic at a bounded rate for N minutes against one `make run`-style instance.

    nice -n 5 .venv/bin/python bench/soak.py                # 10 minutes, 2 requests/s
    .venv/bin/python bench/soak.py --minutes 1 --rate 1     # a quick look

Starts its own instance the way `make run` does (devtools.runner's web, worker and beat command
lines; the embedded PostgreSQL and Redis of its own GROUNDWORK_DATA_DIR, default .data/soak; a
free loopback port), seeds an organisation, a knowledge base, a bot and a staff user, then sends
requests at `--rate` per second (at most `--concurrency` at once) drawn from this mix:

    upload   a small new text document through the REST API (each one different: no dedup)
    widget   a visitor conversation + streamed answer through the public widget API
    search   POST /api/v1/knowledge-bases/<id>/search/ (hybrid)
    staff    a signed-in staff page (dashboard, knowledge base, document, chatbots, conversations, analytics)

At the end it waits up to `--grace` seconds for every uploaded document to be READY or FAILED and
counts the others as stuck. Reported (printed, and written to bench/results/soak.json): requests
by kind and status, 5xx count, transport errors, stuck and failed documents, latency percentiles
by kind, the resident memory (RSS, whole process tree) of the web server and of the worker at the
start (after a warm-up request of each kind) and the end, sampled every minute in between, and the load average.

The widget's per-visitor rate limit is raised for the run (every visitor here is 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devtools import embedded_services  # noqa: E402
from devtools.instance import AppProcesses  # noqa: E402

RESULTS = REPO / "bench" / "results" / "soak.json"
ORIGIN = "http://shop.soak.test"
MIX = {"upload": 0.1, "widget": 0.3, "search": 0.35, "staff": 0.25}
TOPICS = [
    ("Returns", "Unused items can be returned within {n} days of delivery for a full refund."),
    ("Shipping", "Orders placed before 14:00 leave the warehouse in {city} the same working day."),
    ("Warranty", "Every {item} carries a {n}-year warranty against manufacturing defects."),
    ("Payments", "We accept cards, bank transfers and invoices for orders above {n} euros."),
]
CITIES = ["Utrecht", "Lyon", "Ghent", "Porto", "Graz", "Turku"]
ITEMS = ["tent", "kettle", "sleeping bag", "stove", "lantern", "backpack"]
QUESTIONS = [
    "How many days do I have to return an item?",
    "When do orders leave the warehouse?",
    "How long is the warranty on a tent?",
    "Which payment methods do you accept?",
    "Who won the 1998 football world cup?",
]
STUCK_STATUSES = ("queued", "parsing", "embedding")


def document_text(i: int) -> str:
    rng = random.Random(i)
    parts = [f"Store policy update {i}"]
    for title, sentence in rng.sample(TOPICS, 3):
        parts.append(
            f"{title}\n{sentence.format(n=rng.randint(2, 60), city=rng.choice(CITIES), item=rng.choice(ITEMS))}"
        )
    return "\n\n".join(parts) + "\n"


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 when gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def memory(app: AppProcesses) -> dict[str, float]:
    return {name: round(tree_rss(app.processes[name].pid) / 2**20, 1) for name in ("web", "worker")}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


class Soak:
    def __init__(self, app: AppProcesses, api_key: str, args: argparse.Namespace) -> None:
        self.app = app
        self.args = args
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.failures: list[dict[str, Any]] = []
        self.uploaded: list[int] = []
        self.kb_id = 0
        self.bot: dict[str, Any] = {}
        self.staff_pages: list[str] = []
        self.rss_samples: list[dict[str, Any]] = []

    def record(self, kind: str, status: int | str, started: float, detail: str = "") -> None:
        self.statuses[kind][str(status)] += 1
        self.latency[kind].append((time.perf_counter() - started) * 1000)
        if (isinstance(status, str) or status >= 500) and len(self.failures) < 50:
            self.failures.append({"kind": kind, "status": status, "detail": detail[:500]})

    async def setup(self, api: httpx.AsyncClient, staff: httpx.AsyncClient, email: str, password: str) -> None:
        kb = (await api.post("/api/v1/knowledge-bases/", json={"name": "Store"})).raise_for_status().json()
        self.kb_id = kb["id"]
        first = await api.post(
            f"/api/v1/knowledge-bases/{self.kb_id}/documents/",
            files={"file": ("policy-0.txt", document_text(0).encode(), "text/plain")},
        )
        doc_id = first.raise_for_status().json()["id"]
        self.uploaded.append(doc_id)
        bot = await api.post(
            "/api/v1/chatbots/",
            json={"name": "Soak", "knowledge_bases": [self.kb_id], "allowed_origins": [ORIGIN], "enabled": True},
        )
        self.bot = bot.raise_for_status().json()
        # Sign in the staff user (a real login: CSRF token from the form, then POST).
        page = await staff.get("/accounts/login/")
        token = staff.cookies.get("csrftoken", "")
        response = await staff.post(
            "/accounts/login/",
            data={"username": email, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.app.base_url}/accounts/login/"},
        )
        if response.status_code != 302:
            raise SystemExit(f"Staff login failed ({response.status_code}): {page.status_code} {response.text[:300]}")
        deadline = time.monotonic() + 300
        while (await api.get(f"/api/v1/documents/{doc_id}/")).json()["status"] != "ready":
            if time.monotonic() > deadline:
                raise SystemExit("The first document is not READY after 300 s: is the worker running?")
            await asyncio.sleep(1)
        self.staff_pages = [
            "/",
            f"/knowledge-bases/{self.kb_id}/",
            f"/documents/{doc_id}/",
            "/chatbots/",
            f"/chatbots/{self.bot['id']}/",
            "/conversations/",
            "/analytics/",
        ]

    async def upload(self, api: httpx.AsyncClient, i: int) -> None:
        started = time.perf_counter()
        response = await api.post(
            f"/api/v1/knowledge-bases/{self.kb_id}/documents/",
            files={"file": (f"policy-{i}.txt", document_text(i).encode(), "text/plain")},
        )
        if response.status_code == 201:
            self.uploaded.append(response.json()["id"])
        self.record("upload", response.status_code, started, response.text)

    async def widget(self, client: httpx.AsyncClient, i: int) -> None:
        base = f"/api/widget/{self.bot['widget_key']}"
        headers = {"Origin": ORIGIN}
        started = time.perf_counter()
        response = await client.post(f"{base}/conversations", json={}, headers=headers)
        if response.status_code != 201:
            self.record("widget", response.status_code, started, response.text)
            return
        conversation = response.json()
        body = {
            "message": QUESTIONS[i % len(QUESTIONS)],
            "conversation_id": conversation["conversation_id"],
            "visitor_token": conversation["visitor_token"],
        }
        async with client.stream("POST", f"{base}/chat", json=body, headers=headers) as stream:
            text = (await stream.aread()).decode(errors="replace")
            status: int | str = stream.status_code
            if status == 200 and "event: final" not in text:
                status = "no_final_event"
        self.record("widget", status, started, text[-500:])

    async def search(self, api: httpx.AsyncClient, i: int) -> None:
        started = time.perf_counter()
        response = await api.post(
            f"/api/v1/knowledge-bases/{self.kb_id}/search/", json={"query": QUESTIONS[i % len(QUESTIONS)], "top_k": 5}
        )
        self.record("search", response.status_code, started, response.text)

    async def staff(self, staff: httpx.AsyncClient, i: int) -> None:
        started = time.perf_counter()
        response = await staff.get(self.staff_pages[i % len(self.staff_pages)])
        self.record("staff", response.status_code, started, response.text)

    async def run(self) -> dict[str, Any]:
        args = self.args
        timeout = httpx.Timeout(120.0, connect=10.0)
        email, password = "ops@soak.test", secrets.token_urlsafe(18)
        self.app.manage(
            "shell",
            "-c",
            "from accounts.models import User; u = User.objects.get(email='ops@soak.test'); "
            f"u.set_password({password!r}); u.save()",
        )
        async with (
            httpx.AsyncClient(base_url=self.app.base_url, headers=self.headers, timeout=timeout) as api,
            httpx.AsyncClient(base_url=self.app.base_url, timeout=timeout) as public,
            httpx.AsyncClient(base_url=self.app.base_url, timeout=timeout) as staff,
        ):
            await self.setup(api, staff, email, password)
            # Warm-up, not counted: the web process loads the embedding model on its first question,
            # so "start" memory is measured once every kind of request has run once.
            await self.search(api, 0)
            await self.widget(public, 0)
            await self.staff(staff, 0)
            self.statuses.clear()
            self.latency.clear()
            start_rss = memory(self.app)
            load_start = os.getloadavg()
            self.rss_samples.append({"t_s": 0, **start_rss})
            rng = random.Random(7)
            kinds, weights = list(MIX), list(MIX.values())
            gate = asyncio.Semaphore(args.concurrency)
            tasks: set[asyncio.Task[None]] = set()
            skipped = 0
            began = time.monotonic()
            end = began + args.minutes * 60
            next_sample = began + 60
            i = 0

            async def one(kind: str, n: int) -> None:
                started = time.perf_counter()
                try:
                    if kind == "upload":
                        await self.upload(api, n)
                    elif kind == "widget":
                        await self.widget(public, n)
                    elif kind == "search":
                        await self.search(api, n)
                    else:
                        await self.staff(staff, n)
                except httpx.HTTPError as exc:
                    self.record(kind, f"transport:{type(exc).__name__}", started, str(exc))
                finally:
                    gate.release()

            while time.monotonic() < end:
                tick = began + i / args.rate
                await asyncio.sleep(max(0.0, tick - time.monotonic()))
                i += 1
                if gate.locked():
                    skipped += 1  # bounded: never more than --concurrency requests in flight
                    continue
                await gate.acquire()
                task = asyncio.create_task(one(rng.choices(kinds, weights)[0], i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if time.monotonic() >= next_sample:
                    self.rss_samples.append({"t_s": round(time.monotonic() - began), **memory(self.app)})
                    next_sample += 60
            await asyncio.gather(*tasks)
            traffic_s = time.monotonic() - began
            end_rss = memory(self.app)
            load_end = os.getloadavg()

            # Every uploaded document READY or FAILED within the grace period, or it is stuck.
            deadline = time.monotonic() + args.grace
            while True:
                statuses = {}
                for doc_id in self.uploaded:
                    response = await api.get(f"/api/v1/documents/{doc_id}/")
                    statuses[doc_id] = response.json().get("status") if response.status_code == 200 else "missing"
                if not any(s in STUCK_STATUSES for s in statuses.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(5)
            settled_s = time.monotonic() - began - traffic_s

        requests_by_kind = {kind: sum(counter.values()) for kind, counter in self.statuses.items()}
        five_xx = sum(n for counter in self.statuses.values() for code, n in counter.items() if code[:1] == "5")
        return {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "minutes": args.minutes,
            "rate_per_s": args.rate,
            "concurrency": args.concurrency,
            "mix": MIX,
            "traffic_s": round(traffic_s, 1),
            "requests": sum(requests_by_kind.values()),
            "requests_by_kind": requests_by_kind,
            "status_by_kind": {kind: dict(counter) for kind, counter in self.statuses.items()},
            "skipped_ticks_at_concurrency_cap": skipped,
            "http_5xx": five_xx,
            "transport_errors": sum(
                n for counter in self.statuses.values() for code, n in counter.items() if code.startswith("transport")
            ),
            "latency_ms": {
                kind: {"p50": percentile(v, 50), "p95": percentile(v, 95), "max": percentile(v, 100)}
                for kind, v in self.latency.items()
            },
            "documents": {
                "uploaded": len(self.uploaded),
                "by_status": dict(Counter(statuses.values())),
                "stuck": sum(s in STUCK_STATUSES for s in statuses.values()),
                "settled_after_traffic_s": round(settled_s, 1),
                "grace_s": args.grace,
            },
            "rss_mb": {"start": start_rss, "end": end_rss, "samples": self.rss_samples},
            "load_average": {
                "start": [round(x, 2) for x in load_start],
                "end": [round(x, 2) for x in load_end],
            },
            "failures": self.failures,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long traffic runs (default 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="requests started per second (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="most requests in flight at once")
    parser.add_argument("--grace", type=float, default=300.0, help="seconds for documents to settle afterwards")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".data" / "soak", help="the instance's data folder")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0 or args.concurrency < 1:
        parser.error("--rate and --minutes must be positive, --concurrency at least 1")

    data_dir = args.data_dir.resolve()
    database_url, pg_started = embedded_services.start_postgres_if_needed(data_dir)
    redis_url, redis_started = embedded_services.start_redis_if_needed(data_dir)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GROUNDWORK_CELERY_QUEUE": "groundwork-soak",
        "GROUNDWORK_WIDGET_RATE_PER_MINUTE": "100000",
        "GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE": "100000",
    }
    app = AppProcesses(env=env, data_dir=data_dir, worker_concurrency=2)
    try:
        app.manage("migrate", "--noinput")
        api_key = app.manage("accounts_create_api_key", "--org", "soak", "--email", "ops@soak.test").strip()
        app.start("web", "worker", "beat")
        app.wait_for_worker()
        report = asyncio.run(Soak(app, api_key, args).run())
    finally:
        app.stop()
        if redis_started:
            embedded_services.stop_redis(data_dir)
        if pg_started:
            embedded_services.stop_postgres(data_dir)
    print(json.dumps(report, indent=2))
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
