"""Chatbots, conversations, messages and citation snapshots.

A message's citations are copies (document title, version number, page, section, quote), not
just links, so an old answer still shows what it cited after the document changed or was deleted.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models

from accounts.models import Organization
from kb.models import Chunk, Document, DocumentVersion, KnowledgeBase

DEFAULT_FALLBACK = "I'm sorry, I couldn't find that in our documents. Please rephrase the question or contact our team."
DEFAULT_SYSTEM_PROMPT = "You are a friendly, concise support assistant."


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


class AnswerLanguage(models.TextChoices):
    MATCH_USER = "match_user", "Same language as the question"
    DOCUMENTS = "documents", "Language of the documents"
    ENGLISH = "en", "Always English"


class AnswerCaution(models.TextChoices):
    """How readily the offline answerer answers (thresholds in inference.extractive.caution)."""

    CAUTIOUS = "cautious", "Cautious: answer only when the documents clearly say it"
    BALANCED = "balanced", "Balanced"
    HELPFUL = "helpful", "Helpful: answer more often, decline less"


class Chatbot(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chatbots")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    knowledge_bases = models.ManyToManyField(KnowledgeBase, related_name="chatbots", blank=True)
    system_prompt = models.TextField(
        default=DEFAULT_SYSTEM_PROMPT, blank=True, help_text="Persona, tone and behaviour rules."
    )
    chat_model = models.CharField(max_length=200, blank=True, help_text="Any LiteLLM model; empty: the default.")
    # Tried in order when the chat model keeps failing (timeouts, 429, 5xx) after its retries.
    fallback_models = models.JSONField(
        default=list, blank=True, help_text="Models tried in order when the chat model fails (LiteLLM fallbacks)."
    )
    temperature = models.FloatField(default=0.1)
    top_k = models.PositiveSmallIntegerField(default=5, help_text="How many sources the answer may draw on.")
    min_relevance = models.FloatField(
        default=0.25, help_text="Below this vector similarity, with no keyword match, the bot refuses."
    )
    refusal_pointers = models.BooleanField(
        default=True,
        help_text="When the bot finds no direct answer, list up to three related passages (with citations).",
    )
    answer_language = models.CharField(max_length=16, choices=AnswerLanguage.choices, default=AnswerLanguage.MATCH_USER)
    answer_caution = models.CharField(
        max_length=12,
        choices=AnswerCaution.choices,
        default=AnswerCaution.BALANCED,
        help_text="With the built-in offline answerer: how sure it must be before it answers.",
    )
    fallback_message = models.TextField(default=DEFAULT_FALLBACK)
    welcome_message = models.TextField(default="Hi! Ask me anything about our products and policies.", blank=True)
    suggested_questions = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)

    # Widget (public key only: it identifies the bot, it grants nothing else).
    widget_key = models.CharField(max_length=40, unique=True, default=new_widget_key)
    allowed_origins = models.JSONField(default=list, blank=True)
    theme_color = models.CharField(max_length=16, default="#2457c5")
    widget_title = models.CharField(max_length=100, blank=True)
    widget_position = models.CharField(
        max_length=12, default="right", choices=(("right", "Bottom right"), ("left", "Bottom left"))
    )
    lead_capture = models.BooleanField(default=False)
    widget_source_links = models.BooleanField(
        default=False,
        help_text="Let website visitors open a cited document at the quoted sentence (a signed link that "
        "expires). Off: visitors see the quote only — some documents are for answering, not for handing out.",
    )

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=("organization", "slug"), name="chatbot_unique_slug_per_org")]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_chat_model(self) -> str:
        return self.chat_model or settings.GROUNDWORK_CHAT_MODEL


class ProviderKey(models.Model):
    """An organisation's API key for a model provider, encrypted at rest and never shown back."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=40, help_text="LiteLLM provider prefix, e.g. openai, anthropic.")
    encrypted_key = models.TextField()
    last_four = models.CharField(max_length=4)
    api_base = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("organization", "provider"), name="provider_key_unique")]

    def __str__(self) -> str:
        return f"{self.provider} key …{self.last_four}"


class Channel(models.TextChoices):
    PLAYGROUND = "playground", "Playground"
    API = "api", "API"
    WIDGET = "widget", "Widget"


class Conversation(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="conversations")
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="conversations")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    visitor_id = models.CharField(max_length=64, blank=True)
    visitor_token_hash = models.CharField(max_length=64, blank=True)
    title = models.CharField(max_length=200, blank=True)
    origin = models.CharField(max_length=300, blank=True, help_text="Website origin for widget conversations.")
    # Review (staff)
    reviewed = models.BooleanField(default=False)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    tags = models.JSONField(default=list, blank=True)
    internal_note = models.TextField(blank=True)
    # Lead capture (widget)
    lead_email = models.EmailField(blank=True)
    lead_name = models.CharField(max_length=200, blank=True)
    lead_message = models.TextField(blank=True)
    lead_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=("organization", "-created_at"), name="conversation_org_recent"),
            models.Index(fields=("organization", "chatbot", "-created_at"), name="conversation_org_bot_recent"),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Feedback(models.TextChoices):
    UP = "up", "Thumbs up"
    DOWN = "down", "Thumbs down"


class Message(models.Model):
    """One turn. Assistant messages carry the audit trail: model, tokens, latency, trace, grounding."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    refused = models.BooleanField(default=False)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    retrieval_ms = models.FloatField(null=True, blank=True)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    retrieval_trace = models.JSONField(default=dict, blank=True)
    grounding = models.JSONField(default=dict, blank=True)
    grounding_grade = models.FloatField(null=True, blank=True)
    grounding_label = models.CharField(max_length=32, blank=True)
    # The knowledge the answer came from: [{"knowledge_base_id", "knowledge_base", "release"}]
    # ("release" is a number, or "draft" for an evaluation or replay of a draft).
    releases = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    feedback = models.CharField(max_length=8, choices=Feedback.choices, blank=True)
    feedback_comment = models.TextField(blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "pk")
        indexes = [
            models.Index(fields=("conversation", "role"), name="message_conversation_role"),
            # Full-text search over transcripts (the conversation list's `q` filter).
            GinIndex(SearchVector("content", config="english"), name="message_content_search"),
            # The knowledge-gap inbox scans new thumbs-down votes (chat.gaps).
            models.Index(fields=("feedback_at",), condition=models.Q(feedback="down"), name="message_feedback_down"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class Citation(models.Model):
    """A snapshot of what an answer cited; links are kept when the targets still exist."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField(help_text="The n of [n] in the answer.")
    chunk = models.ForeignKey(Chunk, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    version = models.ForeignKey(DocumentVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    document_title = models.CharField(max_length=500)
    version_number = models.PositiveIntegerField(null=True, blank=True)
    page = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)
    section = models.CharField(max_length=1000, blank=True)
    quote = models.TextField()
    source_url = models.URLField(max_length=2000, blank=True)

    class Meta:
        ordering = ("number",)

    def __str__(self) -> str:
        return f"[{self.number}] {self.document_title}"

    @property
    def source_path(self) -> str:
        """Staff link to the cited place: the version's page with the quote highlighted ("" if deleted)."""
        return citation_source_path(
            document_id=self.document_id,
            version_id=self.version_id,
            page=self.page,
            chunk_id=self.chunk_id,
            quote=self.quote,
        )


def citation_source_path(
    *, document_id: int | None, version_id: int | None, page: int | None, chunk_id: int | None, quote: str
) -> str:
    from urllib.parse import urlencode

    from django.urls import reverse

    if document_id is None:
        return ""
    params = {"version": version_id, "page": page, "chunk": chunk_id, "quote": quote}
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{reverse('kb:document_source', args=[document_id])}?{query}"


class Correction(models.Model):
    """A staff correction of an answer: it became a Q&A entry in the bot's knowledge base."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="corrections")
    question = models.TextField()
    answer = models.TextField()
    document = models.ForeignKey(Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"Correction of message {self.message_id}"


# --- test sets and evaluation runs (chat.testsets) ------------------------------------------


class TestCaseSource(models.TextChoices):
    MANUAL = "manual", "Added by staff"
    IMPORT = "import", "Imported"
    REVIEW = "review", "From a conversation"
    GAP = "gap", "From the knowledge-gap inbox"


class TestCase(models.Model):
    """A question with what its answer must satisfy.

    The answer passes when it contains any one of `expected` (alternative spellings; empty: no
    phrase check), cites one of `expected_document_ids` (empty: no citation check), and refuses
    exactly when `must_refuse`.
    """

    __test__ = False  # not a pytest test class, whatever its name

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="test_cases")
    question = models.TextField()
    expected = models.JSONField(default=list, blank=True)
    must_refuse = models.BooleanField(default=False)
    expected_document_ids = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=16, choices=TestCaseSource.choices, default=TestCaseSource.MANUAL)
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created_at", "pk")
        indexes = [models.Index(fields=("organization", "chatbot"), name="testcase_org_bot")]

    def __str__(self) -> str:
        return self.question[:80]


class EvalTarget(models.TextChoices):
    LIVE = "live", "Live knowledge"
    DRAFT = "draft", "Draft knowledge"


class EvalStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


EVAL_TERMINAL = (EvalStatus.DONE, EvalStatus.FAILED, EvalStatus.CANCELLED)


class EvalRun(models.Model):
    """One evaluation of a chatbot's test cases (and Q&A entries).

        queued ──claim──▶ running ──▶ done
           │                 ├──────▶ failed     (error holds why)
           └──cancel──▶ cancelled ◀──┘ (cancel_requested, seen between cases)

    `settings_override` (system_prompt, chat_model, top_k, min_relevance) is applied to an unsaved
    copy of the bot for this run only.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="eval_runs")
    target = models.CharField(max_length=8, choices=EvalTarget.choices, default=EvalTarget.LIVE)
    status = models.CharField(max_length=16, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    cases_total = models.PositiveIntegerField(default=0)
    cases_done = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    settings_override = models.JSONField(default=dict, blank=True)
    judge = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-pk")
        indexes = [models.Index(fields=("organization", "chatbot", "-created_at"), name="evalrun_org_bot_recent")]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of {self.chatbot_id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in EVAL_TERMINAL

    @property
    def progress_percent(self) -> int:
        return round(100 * self.cases_done / self.cases_total) if self.cases_total else 0


class EvalResult(models.Model):
    """One case's outcome in a run; the case's fields are copied so history survives edits."""

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case_key = models.CharField(max_length=40, help_text="case:<id> or qa:<document id>; pairs results across runs.")
    ordinal = models.PositiveIntegerField()
    question = models.TextField()
    expected = models.JSONField(default=list, blank=True)
    must_refuse = models.BooleanField(default=False)
    expected_document_ids = models.JSONField(default=list, blank=True)
    answer = models.TextField(blank=True)
    refused = models.BooleanField(default=False)
    passed = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    checks = models.JSONField(default=dict, blank=True)
    citations = models.JSONField(default=list, blank=True)
    retrieved = models.JSONField(default=list, blank=True)
    citation_valid = models.BooleanField(null=True, blank=True)
    grounding_grade = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ("run", "ordinal")
        constraints = [models.UniqueConstraint(fields=("run", "case_key"), name="evalresult_unique_case")]

    def __str__(self) -> str:
        return f"{self.case_key}: {'pass' if self.passed else 'fail'}"


class ReplayStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReplayChange(models.TextChoices):
    SAME = "same", "Same"
    CHANGED = "changed", "Changed"
    NEWLY_REFUSED = "newly_refused", "Newly refused"
    NEWLY_ANSWERED = "newly_answered", "Newly answered"


class Replay(models.Model):
    """Real questions asked of bots that use a knowledge base, answered again from its live
    release and from its draft, side by side (chat.replay).

        queued ──claim──▶ running ──▶ done | failed
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="replays")
    limit = models.PositiveIntegerField(default=50)
    status = models.CharField(max_length=16, choices=ReplayStatus.choices, default=ReplayStatus.QUEUED)
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return f"Replay {self.pk} of {self.knowledge_base_id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in (ReplayStatus.DONE, ReplayStatus.FAILED)

    @property
    def progress_percent(self) -> int:
        return round(100 * self.items_done / self.items_total) if self.items_total else 0


class ReplayItem(models.Model):
    """One replayed question: the live and the draft answer, and how they differ."""

    replay = models.ForeignKey(Replay, on_delete=models.CASCADE, related_name="items")
    ordinal = models.PositiveIntegerField()
    chatbot = models.ForeignKey(Chatbot, on_delete=models.SET_NULL, null=True, related_name="+")
    question = models.TextField()
    asked_at = models.DateTimeField(null=True, blank=True)
    live_answer = models.TextField(blank=True)
    live_refused = models.BooleanField(default=False)
    live_citations = models.JSONField(default=list, blank=True)
    draft_answer = models.TextField(blank=True)
    draft_refused = models.BooleanField(default=False)
    draft_citations = models.JSONField(default=list, blank=True)
    change = models.CharField(max_length=16, choices=ReplayChange.choices)

    class Meta:
        ordering = ("ordinal",)

    def __str__(self) -> str:
        return f"{self.change}: {self.question[:60]}"
