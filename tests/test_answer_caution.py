"""The bot's "cautious / balanced / helpful" setting: API field, settings form, and the answerer
threshold it selects."""

from __future__ import annotations

import json
from typing import Any

from chat.forms import ChatbotForm
from inference.extractive import caution
from inference.extractive.prompt_format import Source, build_sources_block
from inference.extractive.provider import answer_from_messages


def test_api_sets_and_validates_the_answer_caution(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    client = api_client_for(make_org())
    created = client.post("/api/v1/chatbots/", {"name": "Helper", "knowledge_bases": []}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["answer_caution"] == "balanced"

    bot_id = created.json()["id"]
    changed = client.patch(f"/api/v1/chatbots/{bot_id}/", {"answer_caution": "cautious"}, format="json")
    assert changed.status_code == 200, changed.content
    assert client.get(f"/api/v1/chatbots/{bot_id}/").json()["answer_caution"] == "cautious"

    bad = client.patch(f"/api/v1/chatbots/{bot_id}/", {"answer_caution": "reckless"}, format="json")
    assert bad.status_code == 400
    assert "answer_caution" in json.dumps(bad.json())


def test_other_org_cannot_change_the_caution(make_org, api_client_for) -> None:  # type: ignore[no-untyped-def]
    owner = api_client_for(make_org("Owner"))
    bot_id = owner.post("/api/v1/chatbots/", {"name": "Mine", "knowledge_bases": []}, format="json").json()["id"]
    attacker = api_client_for(make_org("Other"))
    response = attacker.patch(f"/api/v1/chatbots/{bot_id}/", {"answer_caution": "helpful"}, format="json")
    assert response.status_code == 404
    assert owner.get(f"/api/v1/chatbots/{bot_id}/").json()["answer_caution"] == "balanced"


def test_settings_form_shows_the_measured_trade_off_in_words(make_org) -> None:  # type: ignore[no-untyped-def]
    form = ChatbotForm(organization=make_org())
    field = form.fields["answer_caution"]
    choices = dict(field.choices)  # type: ignore[attr-defined]
    assert set(choices) >= {"cautious", "balanced", "helpful"}
    for value in ("cautious", "balanced", "helpful"):
        refused, answered = caution.TRADEOFF[value]
        assert f"declines {refused:.0%}" in field.help_text and f"answers {answered:.0%}" in field.help_text


def _messages(question: str, sources: list[Source]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": build_sources_block(sources) + f"\n<question>{question}</question>"}]


def test_caution_selects_the_refusal_threshold_and_explicit_threshold_wins() -> None:
    sources = [Source(number=1, text="Employees get 25 days of paid annual leave per year.", title="Leave")]
    messages = _messages("How many days of annual leave do employees get?", sources)
    for value, threshold in caution.THRESHOLDS.items():
        result = answer_from_messages(messages, {"caution": value, "dense": False})
        assert result.threshold == threshold
        assert result.refused == (result.best_score < threshold)
    assert answer_from_messages(messages, {"caution": "nonsense", "dense": False}).threshold == 0.5
    explicit = answer_from_messages(messages, {"caution": "helpful", "refusal_threshold": 0.9, "dense": False})
    assert explicit.threshold == 0.9
