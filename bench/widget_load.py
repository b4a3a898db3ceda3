"""Load test of the chat widget: N visitors at once, each starting a conversation and streaming an answer.

Against a running server on loopback (uvicorn + a Celery worker, e.g. `python -m devtools.runner`):

    # 1. Seed a knowledge base and a bot (once). Run with the server's environment (same
    #    GROUNDWORK_DATA_DIR or DATABASE_URL); its worker must be running to ingest the document.
    .venv/bin/python bench/widget_load.py --setup --origin http://shop.bench.test
    # -> prints the widget key

    # 2. The load itself (HTTP only, nothing imported from the project):
    .venv/bin/python bench/widget_load.py --base-url http://127.0.0.1:8765 --widget-key wk_... \\
        --origin http://shop.bench.test -n 50

Rate limits: every visitor here comes from 127.0.0.1, and the defaults (20 writes per visitor,
600 per bot per minute) are meant for real traffic. Start the server with them raised, e.g.
`GROUNDWORK_WIDGET_RATE_PER_MINUTE=100000 GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=100000` (read by
config/settings.py). Requests refused with 429 are counted as `rate_limited` errors, with a hint.

Each visitor: POST /conversations, then POST /chat and read the server-sent events. Measured:
time to the first event of the stream (`start`), to the first `delta` (answered questions;
refusals send no deltas) and to `final`, answers per second over the run, errors by kind (a
`busy` event or a 503 counts as an error here), and the load average before and after. The run
is bounded: at most `--max-n` visitors and `--deadline` seconds overall; unfinished visitors
count as `deadline` errors. Results are printed and merged into bench/results/widget_load.json
(or `--results FILE`) under `n<N>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `--setup` imports the project
RESULTS = REPO / "bench" / "results" / "widget_load.json"

POLICY = """Shipping
Orders placed before 14:00 leave our warehouse in Utrecht the same working day.
Standard delivery inside the Netherlands takes one to two working days.
International parcels are handed to the postal service and take three to seven days.

Returns
Unused items can be returned within 30 days of delivery for a full refund.
Refunds are paid to the original payment method within 5 business days.
Gift cards and opened camping fuel canisters cannot be returned.

Warranty
All tents carry a 5-year warranty against manufacturing defects.
Sleeping bags carry a 3-year warranty.
"""
QUESTIONS = [
    "How many days do I have to return an item?",
    "How long does delivery inside the Netherlands take?",
    "How long is the warranty on tents?",
    "How long do international parcels take?",
    "Who won the 1998 football world cup?",  # refused: no deltas, a fallback in `final`
]


@dataclass
class Visit:
    ok: bool = False
    error: str = ""
    refused: bool = False
    create_ms: float | None = None
    first_event_ms: float | None = None
    first_delta_ms: float | None = None
    total_ms: float | None = None
    deltas: int = 0
    phase: str = "conversation"  # where a transport error struck: "conversation" or "chat"
    events: list[str] = field(default_factory=list)


async def visit(client: httpx.AsyncClient, api: str, origin: str, question: str, result: Visit) -> None:
    headers = {"Origin": origin}
    started = time.perf_counter()
    response = await client.post(f"{api}/conversations", json={}, headers=headers)
    result.create_ms = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        result.error = _http_error(response)
        return
    conversation = response.json()
    body = {
        "message": question,
        "conversation_id": conversation["conversation_id"],
        "visitor_token": conversation["visitor_token"],
    }
    asked = time.perf_counter()
    result.phase = "chat"
    async with client.stream("POST", f"{api}/chat", json=body, headers=headers) as stream:
        if stream.status_code != 200:
            await stream.aread()
            result.error = _http_error(stream)
            return
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
                result.events.append(event)
                if result.first_event_ms is None:
                    result.first_event_ms = (time.perf_counter() - asked) * 1000
                if event == "delta":
                    result.deltas += 1
                    if result.first_delta_ms is None:
                        result.first_delta_ms = (time.perf_counter() - asked) * 1000
            elif line.startswith("data: ") and event == "final":
                result.refused = bool(json.loads(line[len("data: ") :])["message"]["refused"])
            elif line.startswith("data: ") and event in ("error", "busy"):
                result.error = f"{event}_event:" + json.loads(line[len("data: ") :]).get("error", "?")
    result.total_ms = (time.perf_counter() - asked) * 1000
    if not result.error:
        result.ok = "final" in result.events
        result.error = "" if result.ok else "no_final_event"


def _http_error(response: httpx.Response) -> str:
    try:
        code = response.json().get("error", "")
    except ValueError:
        code = ""
    return f"http_{response.status_code}" + (f":{code}" if code else "")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 1) if values else None,
    }


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    api = f"{args.base_url.rstrip('/')}/api/widget/{args.widget_key}"
    results = [Visit() for _ in range(args.n)]
    limits = httpx.Limits(max_connections=args.n + 10, max_keepalive_connections=args.n + 10)
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    load_before = os.getloadavg()
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        probe = await client.get(f"{api}/config", headers={"Origin": args.origin})
        if probe.status_code != 200:
            raise SystemExit(f"{api}/config answered {probe.status_code}: {probe.text[:300]}")

        async def one(i: int) -> None:
            try:
                await visit(client, api, args.origin, QUESTIONS[i % len(QUESTIONS)], results[i])
            except httpx.HTTPError as exc:
                results[i].error = f"{results[i].phase}:{type(exc).__name__}"

        tasks = [asyncio.create_task(one(i)) for i in range(args.n)]
        _, pending = await asyncio.wait(tasks, timeout=args.deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if not result.ok and not result.error:
                result.error = "deadline"
    wall = time.perf_counter() - started

    errors = Counter(r.error for r in results if r.error)
    answered = [r for r in results if r.ok and not r.refused]
    report = {
        "n": args.n,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "label": args.label,
        "base_url": args.base_url,
        "wall_s": round(wall, 2),
        "ok": sum(r.ok for r in results),
        "refused": sum(r.ok and r.refused for r in results),
        "errors": dict(errors),
        "answers_per_s": round(sum(r.ok for r in results) / wall, 2),
        "conversation_create_ms": summary([r.create_ms for r in results if r.create_ms is not None]),
        "first_event_ms": summary([r.first_event_ms for r in results if r.first_event_ms is not None]),
        "first_delta_ms": summary([r.first_delta_ms for r in answered if r.first_delta_ms is not None]),
        "total_ms": summary([r.total_ms for r in results if r.ok and r.total_ms is not None]),
        "deltas_per_answer_p50": percentile([float(r.deltas) for r in answered], 50),
    }
    return report


def setup(origin: str) -> str:
    """Create (or reuse) a bench organisation, knowledge base, document and bot; return the widget key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    from accounts.models import Organization
    from accounts.services import organization_create
    from chat.models import Chatbot
    from chat.services import chatbot_create, chatbot_update
    from kb.models import DocumentStatus, DocumentVersion, KnowledgeBase
    from kb.services import document_create_text, knowledge_base_create

    org = Organization.objects.filter(name="Widget bench").first() or organization_create(name="Widget bench")
    kb = KnowledgeBase.objects.filter(organization=org, name="Store").first() or knowledge_base_create(
        organization=org, name="Store", created_by=None, chunk_size=400, chunk_overlap=0
    )
    if not kb.documents.exists():
        document_create_text(knowledge_base=kb, title="Store policies", text=POLICY, created_by=None)
    deadline = time.monotonic() + 180
    while not DocumentVersion.objects.filter(document__knowledge_base=kb, status=DocumentStatus.READY).exists():
        if time.monotonic() > deadline:
            raise SystemExit("The bench document is not READY after 180 s: is the Celery worker running?")
        time.sleep(0.5)
    bot = Chatbot.objects.filter(organization=org, slug="widget-bench").first()
    if bot is None:
        bot = chatbot_create(
            organization=org, name="Widget bench", slug="widget-bench", knowledge_bases=[kb], created_by=None
        )
    chatbot_update(chatbot=bot, allowed_origins=sorted({*bot.allowed_origins, origin}), enabled=True)
    return bot.widget_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--setup", action="store_true", help="seed a knowledge base and bot; print the widget key")
    parser.add_argument("--base-url", default="http://127.0.0.1:8765")
    parser.add_argument("--widget-key")
    parser.add_argument("--origin", default="http://shop.bench.test", help="the website origin the bot allows")
    parser.add_argument("-n", type=int, default=50, help="concurrent visitors")
    parser.add_argument("--max-n", type=int, default=1000, help="refuse larger runs (a guard against typos)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    parser.add_argument("--deadline", type=float, default=300.0, help="the whole run, seconds")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write bench/results")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file the report is merged into")
    parser.add_argument("--label", default="", help="a note on the server layout, saved with the figures")
    args = parser.parse_args()

    if args.setup:
        print(setup(args.origin))
        return
    if not args.widget_key:
        parser.error("--widget-key is required (get one with --setup)")
    if not 1 <= args.n <= args.max_n:
        parser.error(f"-n must be between 1 and --max-n ({args.max_n})")

    report = asyncio.run(run_load(args))
    print(json.dumps(report, indent=2))
    if any(key.startswith("http_429") for key in report["errors"]):
        print(
            "\nSome requests were rate limited: start the server with GROUNDWORK_WIDGET_RATE_PER_MINUTE and "
            "GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE raised (e.g. 100000).",
            file=sys.stderr,
        )
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        saved = json.loads(args.results.read_text()) if args.results.exists() else {}
        saved[f"n{args.n}"] = report
        args.results.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
