"""Django settings for Groundwork.

Every deploy-time value comes from the environment (see `config.env` for the strict parsers and
README.md for the list). With `DATABASE_URL` / `REDIS_URL` unset, the project uses its own
PostgreSQL (with pgvector) and Redis under `GROUNDWORK_DATA_DIR`, so a fresh machine needs nothing
installed but Python. Importing settings only names those servers (`devtools.paths`); they are
started by `make run` (`devtools.runner`), `manage.py` and the test session, never by an import
(type checking imports settings too).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_ip_networks, env_list, env_str, env_url

# Third-party libraries that phone home at import: switch that off before anything imports them.
for _name, _value in {
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DO_NOT_TRACK": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("GROUNDWORK_DATA_DIR") or BASE_DIR / ".data").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in the data folder."""
    configured = env_str("SECRET_KEY")
    if configured:
        if len(configured) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long.")
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _database_from_url(url: str) -> dict[str, object]:
    """Django DATABASES entry from a postgres:// URL (host may be a socket dir via ?host=)."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.pop("host", None) or (unquote(parts.hostname) if parts.hostname else "")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL has no database name (postgres://user:pass@host:5432/NAME).")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        "OPTIONS": {
            **({"prepare_threshold": PREPARE_ONLY_WHEN_ASKED} if DB_PREPARED_STATEMENTS else {}),
            **query,
            **({"pool": _database_pool()} if DB_POOL_MAX else {}),
        },
        # A pooled connection goes back to the pool at the end of each request; persistent
        # connections (CONN_MAX_AGE > 0) only apply without the pool.
        "CONN_MAX_AGE": 0 if DB_POOL_MAX else env_int("GROUNDWORK_DB_CONN_MAX_AGE", 0, minimum=0),
        "CONN_HEALTH_CHECKS": True,
    }


# Answers streamed at once per web process (chat.sse): each holds one database connection while it runs.
GROUNDWORK_STREAM_THREADS = env_int("GROUNDWORK_STREAM_THREADS", 32, minimum=1)
# Database connections come from a bounded pool per process (psycopg_pool through Django), so a
# burst of requests queues for a connection instead of exhausting the server's max_connections
# ("FATAL: sorry, too many clients already"). The default leaves a connection to every streaming
# answer plus 8 for the short requests around them; a pool only opens what it uses. Size it so
# that web processes x max + worker pool processes + beat + admin sessions fit under the server's
# max_connections (the embedded server allows 200; see README "Database connections").
# GROUNDWORK_DB_POOL_MAX=0 turns the pool off (e.g. behind PgBouncer in transaction mode).
DB_POOL_MAX = env_int("GROUNDWORK_DB_POOL_MAX", GROUNDWORK_STREAM_THREADS + 8, minimum=0)
# A request that waits longer than this for a connection is answered "busy, retry" (HTTP 503 with
# Retry-After, or a `busy` event in a stream), never a 500 or a hang.
DB_POOL_TIMEOUT = env_float("GROUNDWORK_DB_POOL_TIMEOUT", 10.0, minimum=0.1)
# Statements that ask for it are prepared once per connection (psycopg's prepare=True; Django
# prepares none): match ranking's, sent on every hybrid search (kb.match_ranking). The threshold
# only enables that: no other statement runs it many times over. Off behind a pooler that cannot
# keep prepared statements (PgBouncer in transaction mode before 1.21, or without
# max_prepared_statements).
DB_PREPARED_STATEMENTS = env_bool("GROUNDWORK_DB_PREPARED_STATEMENTS", True)
PREPARE_ONLY_WHEN_ASKED = 2**31 - 1
# Read by the model package (inference) at first use; checked here too, so that a typo stops
# start-up instead of failing the first answer or the first document.
env_int("GROUNDWORK_LOCAL_ANSWER_SLOTS", 1, minimum=1)
# The same count bounds whole offline answers per web process (chat.answer_turns): more CPU-bound
# answers at once than CPUs only slow each other down and starve the short requests around them.
# CPUs this process may run on (a container's CPU set, not the host's count).
_USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
GROUNDWORK_LOCAL_ANSWERS_AT_ONCE = env_int(
    "GROUNDWORK_LOCAL_ANSWER_SLOTS",
    _USABLE_CPUS,
    minimum=1,
)
# Requests running their middleware and view at once per web process (config.lanes); the others
# wait on the event loop, a visitor's chat first. 0: a thread per request, all at once (Django's way).
# 4 measured best on 2 cores (bench/results/widget_load_layouts.json: N=200 first event p95 0.21 s
# against 0.52 s with 8, 0.39 s with 16 and 1.48 s without lanes; 21.9 answers/s against 18.5-20).
GROUNDWORK_WEB_LANES = env_int("GROUNDWORK_WEB_LANES", 4, minimum=0)
# Offline answers waiting for a turn per web process, and for how long, before "busy, retry".
GROUNDWORK_ANSWER_QUEUE = env_int("GROUNDWORK_ANSWER_QUEUE", 1000, minimum=0)
GROUNDWORK_ANSWER_WAIT_SECONDS = env_float("GROUNDWORK_ANSWER_WAIT_SECONDS", 60.0, minimum=0.1)
env_int("GROUNDWORK_EMBED_THREADS", 1, minimum=1)
# Hybrid searches whose vector query may run on a second pooled connection beside the keyword
# query at once, per process (kb.search_beside; no thread: the connection is in pipeline mode);
# only when the pool has a connection to spare. 0: the two queries always run in turn.
GROUNDWORK_SEARCH_BESIDE_THREADS = env_int("GROUNDWORK_SEARCH_BESIDE_THREADS", 4, minimum=0)
# ... for knowledge bases holding more live chunks than this together. Smaller ones search in
# turn: their vector query is short (an exact scan: 468 chunks, 0.35 ms), so the second connection
# (snapshot export, pool, a third busy process on the CPU) gains nothing on a quiet machine and
# costs ~1 ms on a busy one; from ~3,500 chunks (HNSW) it gains 0.6-2.5 ms p50 (bench/retrieval.py).
GROUNDWORK_SEARCH_BESIDE_MIN_CHUNKS = env_int("GROUNDWORK_SEARCH_BESIDE_MIN_CHUNKS", 2_000, minimum=0)
GROUNDWORK_BUSY_RETRY_AFTER = env_int("GROUNDWORK_BUSY_RETRY_AFTER", 5, minimum=1)  # seconds, told to clients


def _database_pool() -> dict[str, object]:
    """psycopg_pool.ConnectionPool arguments (Django's `OPTIONS["pool"]`)."""
    minimum = min(env_int("GROUNDWORK_DB_POOL_MIN", 2, minimum=0), DB_POOL_MAX)
    return {"min_size": minimum, "max_size": DB_POOL_MAX, "timeout": DB_POOL_TIMEOUT}


SECRET_KEY = _secret_key()
DEBUG = env_bool("GROUNDWORK_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("GROUNDWORK_CSRF_TRUSTED_ORIGINS", [])
# The public base URL (used in widget snippets and e-mails); defaults to the run command's address.
PUBLIC_URL = (env_str("GROUNDWORK_PUBLIC_URL") or "").rstrip("/")

_database_url = env_url("DATABASE_URL", schemes={"postgres", "postgresql"})
_redis_url = env_url("REDIS_URL", schemes={"redis", "rediss", "unix"})
if _database_url is None or _redis_url is None:
    from devtools import paths as embedded_paths

    if _database_url is None:
        _database_url = embedded_paths.embedded_postgres_url(DATA_DIR)
    if _redis_url is None:
        _redis_url = embedded_paths.embedded_redis_url(DATA_DIR)
REDIS_URL: str = _redis_url

DATABASES = {"default": _database_from_url(_database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "django_htmx",
    "accounts",
    "kb",
    "chat",
]

MIDDLEWARE = [
    "config.busy.BusyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.streaming.file_streaming_middleware",  # before WhiteNoise, whose responses return early
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.CurrentOrganizationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.security.StaffContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.current_organization",
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
# Password sign-ins are throttled per account and per address (accounts.login_throttle).
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "kb:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("GROUNDWORK_TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]


def _file_storage() -> dict[str, object]:
    """Where uploaded originals live: the local filesystem (MEDIA_ROOT), or an S3-compatible bucket.

    With several worker machines the originals must be shared: GROUNDWORK_STORAGE=s3 keeps them in
    a bucket (AWS S3, MinIO, Ceph, ...) through django-storages; workers download a temporary copy
    to parse it (kb.storage.local_copy) and "Open original" streams the object.
    """
    kind = (env_str("GROUNDWORK_STORAGE", "filesystem") or "filesystem").strip().lower()
    if kind == "filesystem":
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    if kind != "s3":
        raise ImproperlyConfigured(f"GROUNDWORK_STORAGE must be 'filesystem' or 's3'; got {kind!r}.")
    bucket = env_str("AWS_STORAGE_BUCKET_NAME")
    if not bucket:
        raise ImproperlyConfigured("GROUNDWORK_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME.")
    addressing = env_str("AWS_S3_ADDRESSING_STYLE") or None
    if addressing not in (None, "auto", "path", "virtual"):
        raise ImproperlyConfigured(f"AWS_S3_ADDRESSING_STYLE must be auto, path or virtual; got {addressing!r}.")
    options: dict[str, object] = {
        "bucket_name": bucket,
        "endpoint_url": env_url("AWS_S3_ENDPOINT_URL", schemes={"http", "https"}),
        "region_name": env_str("AWS_S3_REGION_NAME") or None,
        # Unset: boto3's own chain (AWS_ACCESS_KEY_ID in the environment, an instance role, ...).
        "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
        "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
        "location": (env_str("AWS_LOCATION") or "").strip("/"),
        "addressing_style": addressing,
        # Names are random (kb.storage.safe_storage_name); never overwrite one silently.
        "file_overwrite": False,
        "default_acl": None,
        # A downloaded object spills to disk past this size instead of staying in memory.
        "max_memory_size": FILE_UPLOAD_MAX_MEMORY_SIZE,
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
STORAGES = {
    "default": _file_storage(),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the finders so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploaded documents live outside the web root and are never served by URL directly.
MEDIA_ROOT = Path(env_str("GROUNDWORK_MEDIA_ROOT") or DATA_DIR / "media").resolve()
MEDIA_URL = "/media/"
# Stop an upload at GROUNDWORK_MAX_UPLOAD_BYTES while it arrives (accounts.upload_limits).
FILE_UPLOAD_HANDLERS = [
    "accounts.upload_limits.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON too deep or holding NUL / unpaired surrogates is a 400 (accounts.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "accounts.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.api.LenientContentNegotiation",
    # `?format=` belongs to the export endpoint (csv|jsonl), not to renderer negotiation.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Groundwork API",
    "DESCRIPTION": "Knowledge bases, documents, search and grounded chat.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {"KnowledgeGapStatusEnum": "chat.models.gaps.GapStatus.choices"},
    # Enum components first (drf-spectacular's default), then the error answers every operation shares.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.add_error_responses",
    ],
}


# Celery: JSON only, late acks so a worker killed mid-task hands the task to another worker.
def _celery_url(redis_url: str) -> str:
    # kombu spells a Unix socket `redis+socket:///path`; redis-py spells it `unix:///path`.
    return "redis+socket://" + redis_url[len("unix://") :] if redis_url.startswith("unix://") else redis_url


CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# With embedding batches of 8 a pool process peaks at ~1.4-1.5 GB RSS on the 10-Q PDFs (it was
# ~2.1 GB with batches of 32; bench/ingest.py); recycle one that grows past 1.8 GB.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("GROUNDWORK_WORKER_MAX_MEMORY_MB", 1800, minimum=200) * 1024
# glibc malloc arenas per worker process (kb.pipeline.memory): fewer arenas fragment less; 0 leaves
# glibc's default (8 per core).
GROUNDWORK_WORKER_MALLOC_ARENAS = env_int("GROUNDWORK_WORKER_MALLOC_ARENAS", 2, minimum=0, maximum=64)
# Pool processes warm up in a background thread (kb.tasks), so they report for work at once; the
# generous timeout stays for a machine so loaded that even forking and importing Django is slow.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env_float("GROUNDWORK_WORKER_PROC_ALIVE_TIMEOUT", 120.0, minimum=4.0)
CELERY_RESULT_EXPIRES = 3600
# Nothing reads task results (status lives on the rows). Storing none also keeps the sender from
# subscribing to a result in Redis, which fails (RuntimeError) while Redis is down: an upload then
# still succeeds and its document is sent when the broker is back (kb.tasks.enqueue_ingest).
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("GROUNDWORK_CELERY_QUEUE", "groundwork") or "groundwork"
# A task that overruns its visibility timeout is redelivered: keep it above the longest ingest.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "kb-recover-stuck-documents": {"task": "kb.documents_recover_stuck", "schedule": 60.0},
    "chat-purge-expired-conversations": {"task": "chat.conversations_purge_expired", "schedule": 3600.0},
    # The knowledge-gap inbox (chat.gaps): cheap per bot when nothing new was refused or disliked.
    "chat-refresh-knowledge-gaps": {"task": "chat.gaps_refresh", "schedule": 300.0},
    # Website sources (kb.websites) whose daily/weekly re-sync is due; cheap when none is.
    "kb-sync-due-web-sources": {"task": "kb.web_sources_sync_due", "schedule": 900.0},
}

# Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR ranges, comma-separated);
# empty: the peer address is the client (accounts.client_ip).
GROUNDWORK_TRUSTED_PROXIES = env_ip_networks("GROUNDWORK_TRUSTED_PROXIES")

# Public chat widget: writes per visitor and per bot per minute (fixed windows in Redis).
GROUNDWORK_WIDGET_RATE_PER_MINUTE = env_int("GROUNDWORK_WIDGET_RATE_PER_MINUTE", 20, minimum=1)
GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE = env_int("GROUNDWORK_WIDGET_BOT_RATE_PER_MINUTE", 600, minimum=1)

# Ingestion limits.
GROUNDWORK_MAX_UPLOAD_BYTES = env_int("GROUNDWORK_MAX_UPLOAD_MB", 50, minimum=1) * 1024 * 1024
GROUNDWORK_MAX_PAGES = env_int("GROUNDWORK_MAX_PAGES", 2000, minimum=1)
GROUNDWORK_INGEST_TIME_LIMIT = env_int("GROUNDWORK_INGEST_TIME_LIMIT", 900, minimum=10)
# Parse each document in a child process forked for it (kb.pipeline.parse.isolated): the parser's
# memory leaves with the child and a parser crash fails only that document. Off: in the worker.
GROUNDWORK_PARSE_IN_CHILD = env_bool("GROUNDWORK_PARSE_IN_CHILD", True)
# Processes that read one long PDF at once, each a range of its pages (kb.pipeline.parse.pdf_ranges;
# only with the parse in a child). pdfminer is single-threaded: one process left a core idle. One fewer
# per other document the worker node is busy with (kb.pipeline.parse.stage._range_processes).
GROUNDWORK_PARSE_PROCESSES = env_int(
    "GROUNDWORK_PARSE_PROCESSES",
    min(4, _USABLE_CPUS),
    minimum=1,
)
GROUNDWORK_STUCK_AFTER_SECONDS = env_int("GROUNDWORK_STUCK_AFTER_SECONDS", 1800, minimum=60)
GROUNDWORK_MAX_ATTEMPTS = env_int("GROUNDWORK_MAX_ATTEMPTS", 3, minimum=1)
# An ingest that hits a transient error (model rate limit or timeout, the database restarted
# mid-run) is retried this many times, after 1x, 2x, 4x... this many seconds (with jitter, at most
# 5 minutes); after that the recovery beat task picks the version up.
GROUNDWORK_INGEST_MAX_RETRIES = env_int("GROUNDWORK_INGEST_MAX_RETRIES", 5, minimum=0, maximum=50)
GROUNDWORK_INGEST_RETRY_BACKOFF = env_int("GROUNDWORK_INGEST_RETRY_BACKOFF", 5, minimum=1, maximum=300)
# How many releases of each knowledge base stay restorable (kb.releases: what bounds storage).
GROUNDWORK_RELEASES_KEPT = env_int("GROUNDWORK_RELEASES_KEPT", 20, minimum=2)
# Web pages by URL: only public addresses unless an intranet deployment allows private ones.
GROUNDWORK_FETCH_ALLOW_PRIVATE = env_bool("GROUNDWORK_FETCH_ALLOW_PRIVATE", False)
GROUNDWORK_FETCH_TIMEOUT = env_float("GROUNDWORK_FETCH_TIMEOUT", 15.0, minimum=1.0)

# Models: any LiteLLM model string; the `local/...` defaults work offline with nothing configured.
GROUNDWORK_EMBEDDING_MODEL = env_str("GROUNDWORK_EMBEDDING_MODEL", "local/minilm") or "local/minilm"
GROUNDWORK_CHAT_MODEL = env_str("GROUNDWORK_CHAT_MODEL", "local/extractive") or "local/extractive"
GROUNDWORK_RERANK_MODEL = env_str("GROUNDWORK_RERANK_MODEL") or None
GROUNDWORK_RERANK_API_BASE = env_str("GROUNDWORK_RERANK_API_BASE") or None
# Providers staff may pick for a chatbot's model. Self-hosted ones (ollama, vllm, openai-compatible
# servers on the local network...) are left out on purpose: the web process would connect wherever
# they point. List them here when you run one.
GROUNDWORK_ALLOWED_MODEL_PROVIDERS = [
    p.lower()
    for p in env_list(
        "GROUNDWORK_ALLOWED_MODEL_PROVIDERS",
        ["local", "openai", "azure", "anthropic", "gemini", "vertex_ai", "mistral", "cohere", "groq", "together_ai"],
    )
]
GROUNDWORK_MODEL_TIMEOUT = env_float("GROUNDWORK_MODEL_TIMEOUT", 60.0, minimum=1.0)
# A chat model that times out, is rate-limited (429) or fails (5xx) is retried this many times with
# exponential backoff (LiteLLM's Router: GROUNDWORK_LLM_RETRY_DELAY seconds, doubling, at most
# GROUNDWORK_LLM_RETRY_MAX_DELAY, or the provider's Retry-After), then each of the bot's fallback
# models is tried the same way; after that the visitor is told in plain words (chat.rag.generate).
GROUNDWORK_LLM_NUM_RETRIES = env_int("GROUNDWORK_LLM_NUM_RETRIES", 2, minimum=0, maximum=10)
GROUNDWORK_LLM_RETRY_DELAY = env_float("GROUNDWORK_LLM_RETRY_DELAY", 0.5, minimum=0.0, maximum=60.0)
GROUNDWORK_LLM_RETRY_MAX_DELAY = env_float("GROUNDWORK_LLM_RETRY_MAX_DELAY", 8.0, minimum=0.0, maximum=300.0)
# LiteLLM reads its backoff from these variables once, when it is imported (after settings).
os.environ["INITIAL_RETRY_DELAY"] = str(GROUNDWORK_LLM_RETRY_DELAY)
os.environ["MAX_RETRY_DELAY"] = str(GROUNDWORK_LLM_RETRY_MAX_DELAY)
os.environ["JITTER"] = str(min(0.75, GROUNDWORK_LLM_RETRY_DELAY))
GROUNDWORK_EMBED_BATCH_SIZE = env_int("GROUNDWORK_EMBED_BATCH_SIZE", 32, minimum=1, maximum=2048)
# A new document of at least this many chunks is searchable by its words as soon as it is chunked,
# while its vectors are computed (kb.pipeline.publish.publish_words_first); 0 turns that off.
GROUNDWORK_WORDS_FIRST_CHUNKS = env_int("GROUNDWORK_WORDS_FIRST_CHUNKS", 64, minimum=0, maximum=10_000_000)

EMAIL_BACKEND = env_str("GROUNDWORK_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("GROUNDWORK_FROM_EMAIL", "groundwork@localhost")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("GROUNDWORK_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients): opt in
# so Django knows the request was https (secure cookies, redirects, HSTS).
if env_bool("GROUNDWORK_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS, sent on https responses only; opt in once the site is served over https for good.
SECURE_HSTS_SECONDS = env_int("GROUNDWORK_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("GROUNDWORK_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("GROUNDWORK_HSTS_PRELOAD", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("GROUNDWORK_LOG_LEVEL", "INFO") or "INFO"},
    "loggers": {
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
