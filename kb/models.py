"""Knowledge bases, documents, their versions, sections and chunks.

A document's lifecycle lives on each `DocumentVersion`:

    queued ──► parsing ──► embedding ──► ready
       │          │            │
       └──────────┴────────────┴──► failed (error_code + a readable error_message)

Only chunks of a document's *live* version (`Document.live_version`) of an enabled document are
retrieved: `Chunk.is_live` is that fact denormalised onto the chunk row so vector and keyword
search filter it inside the index scan. Publishing a new version flips the flags of the old and
new chunks in one transaction, so readers see the old version or the new one, never half.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from pgvector.django import VectorField

from accounts.models import Organization
from kb.languages import Language


class KnowledgeBase(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="knowledge_bases")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Fixed at creation: the vectors of one knowledge base all share a model and a dimension.
    embedding_model = models.CharField(max_length=200)
    embedding_dims = models.PositiveIntegerField()
    # The documents' language: keyword search stems and drops stop words in it (text_search_config,
    # derived from it by kb.languages), and the local answerer splits sentences in it.
    language = models.CharField(max_length=8, choices=Language.choices, default=Language.ENGLISH)
    text_search_config = models.CharField(
        max_length=32, default="english", help_text="Postgres text search configuration for keyword search."
    )
    chunk_size = models.PositiveIntegerField(default=1200, help_text="Target chunk size in characters.")
    chunk_overlap = models.PositiveIntegerField(default=150, help_text="Characters shared by consecutive chunks.")
    # A change of embedding model in progress: chunks get `next_embedding` in the background while
    # `embedding` keeps serving; one UPDATE swaps them when all are done.
    reembed_model = models.CharField(max_length=200, blank=True)
    reembed_dims = models.PositiveIntegerField(null=True, blank=True)
    reembed_done = models.PositiveIntegerField(default=0)
    reembed_total = models.PositiveIntegerField(default=0)
    reembed_error = models.TextField(blank=True)
    # Precise ranking (kb.precise_ranking): the fused top candidates are re-ranked with a second,
    # stronger embedding (e5) stored per chunk and filled in the background.
    precise_ranking = models.BooleanField(default=False)
    # BM25 collection statistics over the live chunks, kept exact by kb.pipeline.index.term_stats at every change.
    live_chunks = models.BigIntegerField(default=0)
    live_lexemes = models.BigIntegerField(default=0)  # sum of the live chunks' tsvector lengths
    # Instant (False): a ready document goes live at once. Review (True): changes collect in a
    # draft that staff test, replay and publish as one release (kb.releases).
    review_changes = models.BooleanField(default=False)
    release_number = models.PositiveIntegerField(default=0, help_text="The release that is live now.")
    # Publishing a draft is blocked while its latest evaluation passes fewer cases than this (0-1).
    publish_min_pass_rate = models.FloatField(null=True, blank=True)
    # The latest evaluation of the draft (written by chat's evaluation runs): the gate reads it.
    draft_evaluation = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("organization", "name"), name="kb_unique_name_per_org"),
            models.CheckConstraint(
                condition=models.Q(chunk_overlap__lt=models.F("chunk_size")), name="kb_overlap_lt_size"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DocumentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PARSING = "parsing", "Parsing"
    EMBEDDING = "embedding", "Embedding"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


ACTIVE_STATUSES = (DocumentStatus.QUEUED, DocumentStatus.PARSING, DocumentStatus.EMBEDDING)


class SourceType(models.TextChoices):
    FILE = "file", "File"
    URL = "url", "Web page"
    TEXT = "text", "Text"
    QA = "qa", "Q&A"


class DocumentQuerySet(models.QuerySet["Document"]):
    def alive(self) -> DocumentQuerySet:
        return self.filter(deleted_at__isnull=True)


class AliveDocumentManager(models.Manager["Document"]):
    """Deleted documents stay (soft) while a kept release still refers to them; nobody sees them."""

    def get_queryset(self) -> DocumentQuerySet:
        return DocumentQuerySet(self.model, using=self._db).filter(deleted_at__isnull=True)


class Document(models.Model):
    """A source in a knowledge base. Its content lives in versions; one of them is live.

    Deleting sets `deleted_at` (the rows stay so an earlier release can be restored); the rows go
    when no kept release refers to the document any more (kb.releases.releases_prune).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="documents")
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500)
    source_type = models.CharField(max_length=8, choices=SourceType.choices, default=SourceType.FILE)
    source_url = models.URLField(max_length=2000, blank=True)
    enabled = models.BooleanField(default=True)
    latest_version = models.ForeignKey(
        "DocumentVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    live_version = models.ForeignKey(
        "DocumentVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AliveDocumentManager()
    all_objects = DocumentQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("knowledge_base", "title"))]
        base_manager_name = "all_objects"

    def __str__(self) -> str:
        return self.title


class DocumentVersion(models.Model):
    """One upload (or fetch, or edit) of a document, and its trip through the pipeline."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    file = models.FileField(upload_to="documents/%Y/%m/", max_length=500, blank=True)
    original_filename = models.CharField(max_length=500, blank=True)
    file_type = models.CharField(max_length=16, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)

    status = models.CharField(max_length=16, choices=DocumentStatus.choices, default=DocumentStatus.QUEUED)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    pages_total = models.PositiveIntegerField(null=True, blank=True)
    pages_parsed = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_embedded = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    warnings = models.JSONField(default=list, blank=True, help_text="Non-fatal parsing notes for the user.")
    ocr_pages = models.JSONField(
        default=list, blank=True, help_text="Pages (1-based) whose text was recognised by OCR, not read."
    )
    claimed_by = models.CharField(max_length=200, blank=True, help_text="Celery worker node processing it.")

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    searchable_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When search first found its chunks: at READY, or earlier by keyword while a long new "
        "document is still embedding.",
    )

    class Meta:
        ordering = ("-number",)
        constraints = [
            models.UniqueConstraint(fields=("document", "number"), name="version_unique_number"),
        ]
        indexes = [models.Index(fields=("status", "heartbeat_at"))]

    def __str__(self) -> str:
        return f"{self.document} v{self.number}"

    @property
    def progress_percent(self) -> int:
        """A rough overall progress: parsing is the first 40 %, embedding the remaining 60 %."""
        if self.status == DocumentStatus.READY:
            return 100
        if self.status == DocumentStatus.QUEUED:
            return 0
        parse_part = 0.0
        if self.pages_total:
            parse_part = min(1.0, self.pages_parsed / self.pages_total)
        elif self.status != DocumentStatus.PARSING:
            parse_part = 1.0
        embed_part = self.chunks_embedded / self.chunks_total if self.chunks_total else 0.0
        return int(40 * parse_part + 60 * embed_part)

    @property
    def is_terminal(self) -> bool:
        return self.status in (DocumentStatus.READY, DocumentStatus.FAILED)


class Section(models.Model):
    """A heading-delimited part of a version; chunks point to it so a hit can widen to its section."""

    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="sections")
    ordinal = models.PositiveIntegerField()
    path = models.JSONField(default=list)
    text = models.TextField()
    page_start = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ("ordinal",)

    def __str__(self) -> str:
        return " › ".join(self.path) or f"section {self.ordinal}"


class ChunkQuerySet(models.QuerySet["Chunk"]):
    def without_vectors(self) -> ChunkQuerySet:
        """The chunks without their vectors and keyword-search vector, for pages that show text.

        A chunk row carries up to three vectors (model, next model, precise ranking) and a
        tsvector, several times its text: loading a 504-chunk document's chunks took 58 ms with
        them and 12 ms without (one 384-d vector populated). Reading a deferred column later costs
        one query per chunk, so only paths that never read them use this.
        """
        return self.defer("embedding", "next_embedding", "ranking_embedding", "search_vector")


class Chunk(models.Model):
    """A retrievable passage with its citation target (document, version, pages, section path).

    `embedding` has no fixed dimension because knowledge bases may use different models; each
    dimension in use gets a partial expression HNSW index (`embedding::vector(N)` where
    `embedding_dims = N`), which is how pgvector indexes mixed dimensions.
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="chunks")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, related_name="chunks")
    section = models.ForeignKey(Section, on_delete=models.SET_NULL, null=True, blank=True, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    page_start = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)
    section_path = models.JSONField(default=list)
    content_hash = models.CharField(max_length=64)
    is_live = models.BooleanField(default=False)

    embedding_model = models.CharField(max_length=200, blank=True)
    embedding_dims = models.PositiveIntegerField(null=True, blank=True)
    embedding = VectorField(null=True, blank=True)
    next_embedding = VectorField(null=True, blank=True)  # the next model's vector, during a model change
    # The precise-ranking vector (kb.precise_ranking.RANKING_MODEL), when the knowledge base uses it.
    ranking_embedding = VectorField(dimensions=384, null=True, blank=True)
    search_vector = SearchVectorField(null=True)

    objects = ChunkQuerySet.as_manager()

    class Meta:
        ordering = ("version", "ordinal")
        indexes = [
            GinIndex(fields=("search_vector",), name="chunk_search_vector_gin"),
            models.Index(fields=("knowledge_base", "is_live"), name="chunk_kb_live"),
            models.Index(fields=("knowledge_base", "embedding_model", "content_hash"), name="chunk_reuse_lookup"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"

    @property
    def section_label(self) -> str:
        return " › ".join(self.section_path)


class TermStat(models.Model):
    """How many live chunks of a knowledge base contain a lexeme: BM25's document frequency.

    Counting it per query means visiting every matching chunk (seconds for a common word in a
    large knowledge base); kb.pipeline.index.term_stats keeps it up to date as chunks go live or leave.
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    lexeme = models.TextField()
    chunks = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("knowledge_base", "lexeme"), name="kb_termstat_unique")]

    def __str__(self) -> str:
        return f"{self.lexeme}: {self.chunks}"


class Posting(models.Model):
    """One live chunk containing one term: the inverted index keyword search reads.

    BM25 over `tsvector`s visits every chunk a query term matches (hundreds of milliseconds for a
    common word at 100k chunks); here a query reads only its terms' rows, through the primary key
    `(term_id, chunk_id) INCLUDE (tf, dl)` by index-only scans. `tf`: the term's occurrences in
    the chunk; `dl`: the chunk's length in distinct lexemes (the `length(search_vector)` BM25
    normalises by). Rows exist for live chunks only and are written and removed with the term
    statistics (kb.pipeline.index.term_stats), in the same transaction as the change of `is_live`.

    Its migration creates the table in SQL (the key's INCLUDE is beyond Django's schema editor):
    `term` cascades in the database (a knowledge base's postings go with its term rows), `chunk`
    has no constraint (it would make every chunk delete scan the postings; live chunks leave
    their postings before they are deleted, and only live chunks have any).
    """

    pk = models.CompositePrimaryKey("term", "chunk")
    term = models.ForeignKey(TermStat, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    chunk = models.ForeignKey(Chunk, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    tf = models.SmallIntegerField()
    dl = models.SmallIntegerField()

    class Meta:
        db_table = "kb_posting"

    def __str__(self) -> str:
        return f"{self.term_id}@{self.chunk_id}: {self.tf}"


class DraftChange(models.Model):
    """A change waiting in a review-mode knowledge base's draft: the document's pending state.

    One row per document: `version` (a new version to go live), `enabled` (a pending switch) or
    `remove` (a pending deletion). Publishing applies every row of the knowledge base in one transaction.
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="draft_changes")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(DocumentVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    enabled = models.BooleanField(null=True, blank=True)
    remove = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("created_at",)
        constraints = [models.UniqueConstraint(fields=("knowledge_base", "document"), name="draft_one_per_document")]

    def __str__(self) -> str:
        return f"{self.action} {self.document_id}"

    @property
    def action(self) -> str:
        if self.remove:
            return "delete"
        if self.version_id is not None:
            return "replace" if self.document.live_version_id else "add"
        return "enable" if self.enabled else "disable"


class Release(models.Model):
    """A numbered state of a knowledge base's live knowledge: which version of which document.

    `manifest` maps document id -> {"version": id, "enabled": bool} for every document that was
    not deleted; restoring a release makes exactly that state live again (as a new release).
    """

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="releases")
    number = models.PositiveIntegerField()
    manifest = models.JSONField(default=dict)
    changes = models.JSONField(default=list, help_text="[{document_id, title, action}]")
    summary = models.CharField(max_length=500, blank=True)
    evaluation = models.JSONField(default=dict, blank=True, help_text="The draft's evaluation summary, if any.")
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_by_label = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-number",)
        constraints = [models.UniqueConstraint(fields=("knowledge_base", "number"), name="release_unique_number")]

    def __str__(self) -> str:
        return f"{self.knowledge_base} release {self.number}"


class WebSourceMode(models.TextChoices):
    SITEMAP = "sitemap", "Sitemap"
    CRAWL = "crawl", "Crawl links"


class WebSourceSchedule(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    OFF = "off", "Off"


class WebSourceStatus(models.TextChoices):
    IDLE = "idle", "Idle"
    QUEUED = "queued", "Queued"
    SYNCING = "syncing", "Syncing"
    FAILED = "failed", "Failed"


class WebSource(models.Model):
    """A website imported into a knowledge base and kept fresh (kb.websites).

        idle / failed ──(sync requested: by hand, or due by its schedule)──► queued
        queued ──(the task claims it)──► syncing ──► idle (last_report) / failed (error_message)

    Each page found becomes a `WebPage` and a web-page `Document`; a sync re-fetches every page
    (conditionally) and adds a version only where the page's text changed.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="web_sources")
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="web_sources")
    url = models.URLField(max_length=2000, help_text="The start page, or the sitemap.")
    mode = models.CharField(max_length=8, choices=WebSourceMode.choices, default=WebSourceMode.SITEMAP)
    # Bounds: always the start URL's host; pages under `path_prefix`; `max_depth` links from the start (crawl).
    path_prefix = models.CharField(max_length=500, default="/")
    max_depth = models.PositiveIntegerField(default=3)
    max_pages = models.PositiveIntegerField(default=100)
    schedule = models.CharField(max_length=8, choices=WebSourceSchedule.choices, default=WebSourceSchedule.WEEKLY)
    status = models.CharField(max_length=8, choices=WebSourceStatus.choices, default=WebSourceStatus.QUEUED)
    error_message = models.TextField(blank=True)
    sync_started_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_report = models.JSONField(default=dict, blank=True, help_text="Counts and URLs of the last sync.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=("schedule", "last_synced_at"), name="websource_due")]

    def __str__(self) -> str:
        return self.url

    @property
    def is_busy(self) -> bool:
        return self.status in (WebSourceStatus.QUEUED, WebSourceStatus.SYNCING)


class WebPageResult(models.TextChoices):
    FOUND = "found", "Found"
    ADDED = "added", "Added"
    CHANGED = "changed", "Changed"
    UNCHANGED = "unchanged", "Unchanged"
    REMOVED = "removed", "Removed"
    FAILED = "failed", "Failed"


class WebPage(models.Model):
    """One page of a web source: its document, validators for conditional requests, and the outcome
    of the last sync (`result`). `text_sha256` is the hash of the page's extracted text: a new
    version is made only when it changes."""

    source = models.ForeignKey(WebSource, on_delete=models.CASCADE, related_name="pages")
    url = models.URLField(max_length=2000)
    document = models.ForeignKey(Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    depth = models.PositiveIntegerField(default=0)
    result = models.CharField(max_length=10, choices=WebPageResult.choices, default=WebPageResult.FOUND)
    error_message = models.TextField(blank=True)
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    text_sha256 = models.CharField(max_length=64, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("url",)
        constraints = [models.UniqueConstraint(fields=("source", "url"), name="webpage_unique_url")]

    def __str__(self) -> str:
        return self.url
