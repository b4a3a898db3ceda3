"""How fast is the conversation list with 100k conversations? (benchmark, not a test)

    GROUNDWORK_DATA_DIR=.data/bench-conv uv run python bench/conversations.py [--conversations 100000]

Loads N conversations (2 messages each, a share with feedback, refusals, leads) into one
organisation of a separate database, then times the list query behind
`GET /api/v1/conversations/` for each filter (first page of 50, plus the count), p50/p95 over
repeated runs. Writes bench/results/conversations_<N>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

FILTERS = {
    "none": {},
    "chatbot": {"chatbot": "{bot}"},
    "feedback=down": {"feedback": "down"},
    "feedback=none": {"feedback": "none"},
    "refused=true": {"refused": "true"},
    "reviewed=false": {"reviewed": "false"},
    "has_lead=true": {"has_lead": "true"},
    "low_grounding=true": {"low_grounding": "true"},
    "q=warranty": {"q": "warranty"},
    "date range (7 days)": {"date_from": "{week_ago}"},
    "feedback=down&q=tent": {"feedback": "down", "q": "tent"},
}


def load(n: int) -> tuple[int, int]:
    from django.db import connection

    from accounts.services import organization_create
    from chat.services import chatbot_create
    from kb.services import knowledge_base_create

    org = organization_create(name=f"bench-conv-{int(time.time())}")
    kb = knowledge_base_create(organization=org, name="KB", created_by=None)
    bots = [chatbot_create(organization=org, name=f"Bot {i}", knowledge_bases=[kb], created_by=None) for i in range(3)]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO chat_conversation (organization_id, chatbot_id, channel, visitor_id, visitor_token_hash,
                title, origin, reviewed, tags, internal_note, lead_email, lead_name, lead_message, created_at,
                updated_at)
            SELECT %(org)s, (ARRAY[%(b0)s, %(b1)s, %(b2)s])[1 + g %% 3],
                (ARRAY['widget','api','playground'])[1 + g %% 3],
                '', '', 'Question ' || g, '', g %% 5 = 0, '[]'::jsonb, '',
                CASE WHEN g %% 50 = 0 THEN 'lead' || g || '@example.com' ELSE '' END, '', '',
                now() - (g %% 90) * interval '1 day', now()
            FROM generate_series(1, %(n)s) AS g
            """,
            {"org": org.pk, "b0": bots[0].pk, "b1": bots[1].pk, "b2": bots[2].pk, "n": n},
        )
        words = "tent|warranty|refund|shipping|boots|jacket|parcel|invoice|store|repair"
        cursor.execute(
            f"""
            INSERT INTO chat_message (conversation_id, role, content, refused, model, retrieval_trace, grounding,
                grounding_label, error, feedback, feedback_comment, created_at)
            SELECT c.id, r.role,
                CASE WHEN r.role = 'user'
                     THEN 'How does the ' || (string_to_array('{words}', '|'))[1 + c.id %% 10] || ' policy work?'
                     ELSE 'According to our documents the ' || (string_to_array('{words}', '|'))[1 + (c.id / 10) %% 10]
                          || ' terms apply [1].' END,
                r.role = 'assistant' AND c.id %% 7 = 0, 'local/extractive', '{{}}'::jsonb, '{{}}'::jsonb, '', '',
                CASE WHEN r.role = 'assistant' AND c.id %% 11 = 0 THEN 'down'
                     WHEN r.role = 'assistant' AND c.id %% 4 = 0 THEN 'up' ELSE '' END,
                '', c.created_at
            FROM chat_conversation c CROSS JOIN (VALUES ('user'), ('assistant')) AS r(role)
            WHERE c.organization_id = %(org)s
            """,  # noqa: S608 - a fixed word list, no input
            {"org": org.pk},
        )
        cursor.execute(
            "UPDATE chat_message SET grounding_grade = CASE WHEN id %% 13 = 0 THEN 0.2 ELSE 0.9 END "
            "WHERE role = 'assistant' AND conversation_id IN "
            "(SELECT id FROM chat_conversation WHERE organization_id = %s)",
            [org.pk],
        )
        cursor.execute("ANALYZE chat_conversation; ANALYZE chat_message;")
    print(f"loaded {n:,} conversations in {time.perf_counter() - started:.1f}s")
    return org.pk, bots[0].pk


def measure(org_id: int, bot_id: int, repeats: int) -> dict[str, dict[str, float]]:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import Organization
    from chat.selectors import ConversationFilters, conversations_filtered

    org = Organization.objects.get(pk=org_id)
    week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()
    results: dict[str, dict[str, float]] = {}
    for name, params in FILTERS.items():
        query = {k: v.format(bot=bot_id, week_ago=week_ago) for k, v in params.items()}
        filters = ConversationFilters.from_query(query)
        page_ms, count_ms = [], []
        total = 0
        for _ in range(repeats):
            qs = conversations_filtered(organization=org, filters=filters)
            t = time.perf_counter()
            list(qs[:50])
            page_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            total = qs.count()
            count_ms.append((time.perf_counter() - t) * 1000)
        results[name] = {
            "matches": total,
            "page_p50_ms": round(statistics.median(page_ms), 1),
            "page_p95_ms": round(sorted(page_ms)[int(0.95 * (len(page_ms) - 1))], 1),
            "count_p50_ms": round(statistics.median(count_ms), 1),
        }
        row = results[name]
        print(
            f"{name:<24} {total:>8,}  page p50 {row['page_p50_ms']:>7.1f} ms  "
            f"p95 {row['page_p95_ms']:>7.1f}  count p50 {row['count_p50_ms']:>7.1f} ms"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import django

    from devtools.embedded_services import start_unless_configured

    start_unless_configured(os.environ)  # settings only name the embedded servers; they outlive this script
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    org_id, bot_id = load(args.conversations)
    results = measure(org_id, bot_id, args.repeats)
    out = REPO / "bench" / "results" / f"conversations_{args.conversations}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"conversations": args.conversations, "filters": results}, indent=2))


if __name__ == "__main__":
    main()
