"""Models of the knowledge-gap inbox (registered through `chat.models`, app label `chat`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accounts.models import Organization
from chat.models.core import Chatbot, Message
from kb.models import Document


class GapStatus(models.TextChoices):
    OPEN = "open", "Open"
    ANSWERED = "answered", "Answered"
    OUT_OF_SCOPE = "out_of_scope", "Out of scope"
    DISMISSED = "dismissed", "Dismissed"


class GapReason(models.TextChoices):
    REFUSED = "refused", "Refused"
    THUMBS_DOWN = "thumbs_down", "Thumbs down"


class KnowledgeGap(models.Model):
    """Questions a bot failed (refused, or answered with a thumbs-down), grouped by meaning.

        open ──write the answer──▶ answered      (a Q&A entry, test cases expecting the answer)
          ├───out of scope───────▶ out_of_scope  (must-refuse test cases)
          └───dismiss────────────▶ dismissed

    Every transition is final. A closed group keeps its questions, so those messages are never
    grouped again, but it leaves the inbox: the same question asked afterwards starts a new group.

    `centroid` is the mean of the questions' unit vectors (of `embedding_model`), `centroid_weight`
    how many were folded into it; the clustering rule is in `chat.gaps.clustering`. The count and
    the last time a question was asked are read from the questions themselves (`chat.gaps.selectors`),
    so they stay right when old conversations are purged.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="knowledge_gaps")
    label = models.TextField(help_text="The group's most central question.")
    status = models.CharField(max_length=16, choices=GapStatus.choices, default=GapStatus.OPEN)
    embedding_model = models.CharField(max_length=200)
    centroid = models.JSONField(default=list)
    centroid_weight = models.PositiveIntegerField(default=0)
    answer_document = models.ForeignKey(Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-updated_at", "-pk")
        indexes = [models.Index(fields=("organization", "chatbot", "status"), name="gap_org_bot_status")]

    def __str__(self) -> str:
        return self.label[:80]


class KnowledgeGapQuestion(models.Model):
    """One failed answer in a group: the question that was asked, and its vector for regrouping.

    One row per assistant message at most (the message's question belongs to one group ever).
    Deleted with the message, e.g. when the organisation's retention purges old conversations.
    """

    gap = models.ForeignKey(KnowledgeGap, on_delete=models.CASCADE, related_name="questions")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="gap_question")
    question = models.TextField()
    reason = models.CharField(max_length=16, choices=GapReason.choices)
    vector = models.JSONField(default=list)
    asked_at = models.DateTimeField()

    class Meta:
        ordering = ("-asked_at", "-pk")

    def __str__(self) -> str:
        return self.question[:80]


class GapScan(models.Model):
    """Where the last `gaps_refresh` of a bot left off, so a refresh with nothing new is cheap.

    `last_message_id`: refused answers up to this id are grouped (or had no question);
    `feedback_since`: thumbs-down votes cast before this time are grouped.
    """

    chatbot = models.OneToOneField(Chatbot, on_delete=models.CASCADE, related_name="+")
    last_message_id = models.BigIntegerField(default=0)
    feedback_since = models.DateTimeField(null=True, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Gap scan of {self.chatbot_id} up to message {self.last_message_id}"
