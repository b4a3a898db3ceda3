"""Drafts in the answer path (chat.replay, chat.rag): replay side by side, draft evaluations feeding
the publish gate, the releases an answer records, and isolation."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import ReplayChange, ReplayItem
from chat.replay.services import classify
from chat.testsets.answering import CaseAnswer
from tests.conftest import wait_for
from tests.test_releases import POLICY_V1, POLICY_V2, SHIPPING, _draft_ready, _live, _replace, _upload

QUESTION = "How many days do I have to return unworn shoes?"


def _ask(client: APIClient, bot_id: int, question: str = QUESTION) -> dict[str, Any]:
    response = client.post(f"/api/v1/chatbots/{bot_id}/chat/", {"message": question}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _replayed(client: APIClient, replay_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/replays/{replay_id}/").json()
        return body if body["status"] in ("done", "failed") else None

    return wait_for(done, timeout=180)


@pytest.fixture
def shop(make_org, api_client_for, celery_worker) -> tuple[APIClient, int, int, int]:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org("Shoes"))
    kb_id = client.post("/api/v1/knowledge-bases/", {"name": "Policies"}, format="json").json()["id"]
    policy = _upload(client, kb_id, "returns.md", POLICY_V1)
    shipping = _upload(client, kb_id, "shipping.md", SHIPPING)
    _live(client, policy["id"], 1)
    _live(client, shipping["id"], 1)
    bot = client.post("/api/v1/chatbots/", {"name": "Shop bot", "knowledge_bases": [kb_id]}, format="json").json()
    return client, kb_id, policy["id"], bot["id"]


@pytest.mark.worker
def test_replay_shows_the_changed_answer_side_by_side_and_answers_name_their_release(shop) -> None:  # type: ignore[no-untyped-def]
    client, kb_id, policy_id, bot_id = shop
    before = _ask(client, bot_id)
    assert "30 days" in before["answer"]
    release_now = client.get(f"/api/v1/knowledge-bases/{kb_id}/").json()["release_number"]
    assert before["releases"] == [{"knowledge_base_id": kb_id, "knowledge_base": "Policies", "release": release_now}]
    _ask(client, bot_id, "Do parcels to Austria ship for free?")

    client.patch(f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True}, format="json")
    _replace(client, policy_id, "returns.md", POLICY_V2)
    _draft_ready(client, kb_id)
    assert "30 days" in _ask(client, bot_id)["answer"]  # customers still get the live release

    replay_id = client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/replay/", {"limit": 10}, format="json").json()["id"]
    body = _replayed(client, replay_id)
    assert body["status"] == "done", body
    by_question = {item["question"]: item for item in body["items"]}
    assert set(by_question) == {QUESTION, "Do parcels to Austria ship for free?"}  # asked twice, replayed once
    changed = by_question[QUESTION]
    assert changed["change"] == "changed", changed
    assert "30 days" in changed["live_answer"] and "60 days" in changed["draft_answer"]
    assert by_question["Do parcels to Austria ship for free?"]["change"] == "same"
    assert body["counts"]["changed"] == 1 and body["progress"] == {"done": 2, "total": 2}

    assert client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json").status_code == 200
    after = _ask(client, bot_id)
    assert "60 days" in after["answer"]
    assert after["releases"][0]["release"] == release_now + 1


@pytest.mark.worker
def test_a_draft_evaluation_opens_the_gate_and_is_recorded_on_the_release(shop) -> None:  # type: ignore[no-untyped-def]
    client, kb_id, policy_id, bot_id = shop
    case = {"question": QUESTION, "expected": ["60 days"]}
    assert client.post(f"/api/v1/chatbots/{bot_id}/test-cases/", case, format="json").status_code == 201
    client.patch(
        f"/api/v1/knowledge-bases/{kb_id}/", {"review_changes": True, "publish_min_pass_rate": 1.0}, format="json"
    )
    _replace(client, policy_id, "returns.md", POLICY_V2)
    _draft_ready(client, kb_id)

    def evaluate(target: str) -> dict[str, Any]:
        run_id = client.post(f"/api/v1/chatbots/{bot_id}/evaluations/", {"target": target}, format="json").json()["id"]
        return wait_for(
            lambda: (b := client.get(f"/api/v1/evaluations/{run_id}/").json())["status"] in ("done", "failed") and b,
            timeout=120,
        )

    assert evaluate("live")["summary"]["pass_rate"] == 0.0  # live still says 30 days
    assert client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json").status_code == 409
    assert evaluate("draft")["summary"]["pass_rate"] == 1.0
    assert client.get(f"/api/v1/knowledge-bases/{kb_id}/draft/").json()["gate"]["open"]
    published = client.post(f"/api/v1/knowledge-bases/{kb_id}/draft/publish/", {}, format="json")
    assert published.status_code == 200
    release = client.get(f"/api/v1/knowledge-bases/{kb_id}/releases/").json()[0]
    assert release["number"] == published.json()["release"] and release["evaluation"]["pass_rate"] == 1.0


def test_replays_of_another_organisation_are_invisible(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    owner = api_client_for(make_org("Acme"))
    intruder = api_client_for(make_org("Other"))
    kb_id = owner.post("/api/v1/knowledge-bases/", {"name": "Shop"}, format="json").json()["id"]
    assert (
        intruder.post(f"/api/v1/knowledge-bases/{kb_id}/draft/replay/", {"limit": 5}, format="json").status_code == 404
    )
    replay_id = owner.post(f"/api/v1/knowledge-bases/{kb_id}/draft/replay/", {"limit": 5}, format="json").json()["id"]
    assert intruder.get(f"/api/v1/replays/{replay_id}/").status_code == 404
    assert owner.get(f"/api/v1/replays/{replay_id}/").status_code == 200
    assert not ReplayItem.objects.exists()


def test_replay_classification() -> None:
    answered = CaseAnswer(content="Returns within 60 days.", citations=[{"document_id": 1}])
    assert classify(CaseAnswer(refused=True), CaseAnswer(refused=True)) == ReplayChange.SAME
    assert classify(CaseAnswer(refused=True), answered) == ReplayChange.NEWLY_ANSWERED
    assert classify(answered, CaseAnswer(refused=True)) == ReplayChange.NEWLY_REFUSED
    same = CaseAnswer(content="returns within 60 days", citations=[{"document_id": 1}])
    assert classify(answered, same) == ReplayChange.SAME
    other_source = CaseAnswer(content="Returns within 60 days.", citations=[{"document_id": 2}])
    assert classify(answered, other_source) == ReplayChange.CHANGED
