"""Every operation of the published OpenAPI schema, fuzzed by schemathesis against the real server.

The schema is read from `/api/schema/` of the app served by uvicorn (`asgi_server`), and each
operation gets a bounded, derandomized batch of generated requests (valid and invalid) made with
an admin API key of an organisation that holds a knowledge base with a ready document, a chatbot
with a conversation and a test case. Path ids are drawn either as generated or as the seeded
rows' ids, so requests reach both "not found" and the real code path. Every response must be no
5xx, carry a status code the schema documents, and match the documented body and content type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from django.test import override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Organization, Role
from accounts.services import api_key_issue, organization_create
from chat.models import Message
from chat.models import Role as MessageRole
from chat.services import conversation_start
from chat.testsets.services import case_create
from tests.conftest import returns_policy_bot

ORIGIN = "https://shop.example"
EXAMPLES_PER_OPERATION = 6
# Operations that answer a question (retrieval + the local answerer) cost ~20x a plain request: fewer examples.
EXAMPLES_PER_ANSWERING_OPERATION = 3
ANSWERING = r"(/chat/$|/chat$|/chat/completions$)"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The seeded rows of the running test, by path parameter; read by the hook below while examples are drawn.
SEEDED: dict[str, Any] = {}


def _seed(org: Organization) -> dict[str, Any]:
    """A knowledge base with a ready document, a chatbot, a conversation and a test case in `org`."""
    SEEDED["round"] = SEEDED.get("round", 0) + 1
    kb, result, bot = returns_policy_bot(org, kb_name=f"Policies {SEEDED['round']}", origin=ORIGIN)
    conversation = conversation_start(chatbot=bot, channel="api", title="Returns?")
    Message.objects.create(conversation=conversation, role=MessageRole.USER, content="How long for returns?")
    answer = Message.objects.create(
        conversation=conversation, role=MessageRole.ASSISTANT, content="Within 30 days of delivery [1]."
    )
    case = case_create(chatbot=bot, question="How long for returns?", expected=["30 days"], created_by=None)
    return {
        "kb_id": kb.pk,
        "doc_id": result.document.pk,
        "bot_id": bot.pk,
        "widget_key": bot.widget_key,
        "conversation_id": conversation.pk,
        "message_id": answer.pk,
        "test_case_id": case.pk,
        "number": 1,
    }


def _seeded_value(path: str, name: str) -> Any:
    """The seeded row's id for a path parameter (`{id}` means different rows on different paths)."""
    if name != "id":
        return SEEDED.get(name)
    for prefix, key in (("/api/v1/conversations/", "conversation_id"), ("/api/v1/messages/", "message_id")):
        if path.startswith(prefix):
            return SEEDED[key]
    if "/test-cases/" in path:
        return SEEDED["test_case_id"]
    return None


def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any]) -> Any:
    """Half of the examples aim at the seeded rows, the other half keep the generated ids."""
    if not path_parameters:
        return st.just(path_parameters)
    seeded = dict(path_parameters)
    for name in path_parameters:
        value = _seeded_value(ctx.operation.path, name)
        if value is not None:
            seeded[name] = value
    return st.sampled_from([seeded, path_parameters])


def _published_schema() -> dict[str, Any]:
    """The schema `/api/schema/` serves, generated in-process (collection needs it before any server runs;
    `test_the_served_schema_is_the_one_fuzzed` checks the server serves the same)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


RAW_SCHEMA = _published_schema()
schema = schemathesis.openapi.from_dict(RAW_SCHEMA)
schema.hook(flatmap_path_parameters)


@pytest.fixture(scope="module")
def api(asgi_server_session: str, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """The running server and an admin API key of an organisation with data, for the whole module.

    Seeded once (not per operation: a flush per operation would double the run time); the rows are
    committed, as the server thread reads them, and flushed at the end like a transactional test's.
    """
    from django.core.management import call_command
    from django.db import connection

    # pytest-django creates the test database only when a collected test asks for one.
    assert connection.settings_dict["NAME"].startswith("test_"), "run with test_the_served_schema_is_the_one_fuzzed"
    with django_db_blocker.unblock():
        SEEDED.clear()
        org = organization_create(name="Fuzz Co")
        key = api_key_issue(organization=org, name="fuzz", created_by=None, role=Role.ADMIN)
        SEEDED.update(_seed(org), org=org)
        # The widget's real limiter stays on; its budget is raised so a burst of examples is not all 429s.
        with override_settings(GROUNDWORK_WIDGET_RATE_PER_MINUTE=10_000, GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE=10_000):
            yield {
                "base_url": asgi_server_session,
                "headers": {"Authorization": f"Bearer {key.raw_key}", "Origin": ORIGIN},
            }
        SEEDED.clear()
        call_command("flush", verbosity=0, interactive=False)


@pytest.fixture
def seeded_db(api: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    """Seeding after a DELETE happens inside the test: let it reach the database."""
    with django_db_blocker.unblock():
        yield


def test_the_served_schema_is_the_one_fuzzed(asgi_server: str) -> None:
    # (Also the one test here that asks pytest-django for the test database: it runs first.)
    response = httpx.get(
        f"{asgi_server}/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}, timeout=60
    )
    assert response.status_code == 200
    assert response.json() == RAW_SCHEMA


# Derandomized: the same examples every run, so CI is repeatable (and a failure reproduces).
SETTINGS = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _call(case: Any, api: dict[str, Any]) -> None:
    response = case.call_and_validate(base_url=api["base_url"], headers=api["headers"], checks=CHECKS, timeout=60)
    if case.method.upper() == "DELETE" and response.status_code == 204:
        SEEDED.update(_seed(SEEDED["org"]))  # the next examples find rows again


@schema.exclude(path_regex=ANSWERING).parametrize()
@settings(SETTINGS, max_examples=EXAMPLES_PER_OPERATION)
def test_every_operation_answers_as_documented_and_never_fails(case: Any, api: dict[str, Any], seeded_db: None) -> None:
    _call(case, api)


@schema.include(path_regex=ANSWERING).parametrize()
@settings(SETTINGS, max_examples=EXAMPLES_PER_ANSWERING_OPERATION)
def test_every_answering_operation_answers_as_documented_and_never_fails(
    case: Any, api: dict[str, Any], seeded_db: None
) -> None:
    _call(case, api)
