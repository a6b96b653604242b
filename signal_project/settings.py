"""Django settings for Automata-Signal.

Everything that differs between machines comes from the environment (or `.env`, which the
environment overrides); see `.env.example` and docs/configuration.md.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from kombu import Exchange, Queue

from core.logging import build_logging
from core.metrics_process import multiprocess_setup

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("SECRET_KEY", default="dev-insecure-secret-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    # django.contrib.admin, with the operators' console as its site (operations.admin_site).
    "operations.admin_site.SignalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    # Browsers' cross-origin API calls (accounts.cors decides which origins).
    "corsheaders",
    # Lockouts after repeated failed admin logins.
    "axes",
    "core",
    "accounts",
    "adapters",
    "templates_app",
    "messaging",
    "campaigns",
    "operations",
]

MIDDLEWARE = [
    # First: every line logged while a request is served carries its id, also the errors'.
    "core.middleware.RequestIdMiddleware",
    # All requests' count and latency through the whole stack (django-prometheus; early so
    # that it times every middleware). Its PrometheusAfterMiddleware (series per view, method,
    # status and transport, with a 26-bucket latency histogram per view) is left out: after
    # the test suite's requests it made 1,800 of a scrape's 2,100 samples and the scrape
    # 130-430 ms; per-view counts are core.metrics.API_REQUESTS. Its database wrapper is left
    # out too: it replaces the core.db backend and counts every statement, the delivery's too.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before anything that may answer: a preflight is answered here, and every API answer,
    # errors and 429s included, gets the CORS headers its origin and key allow.
    "corsheaders.middleware.CorsMiddleware",
    "core.api.ApiErrorMiddleware",
    "core.metrics.ApiMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last (django-axes): turns a login refused for a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out login before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "signal_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The admin pages every app shares (the action confirmation page).
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "signal_project.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/signal"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
# No per-request SELECT 1 (a round trip on every request): the PostgreSQL backend below
# finds connections the server closed with a poll() of their socket instead.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("DB_CONN_HEALTH_CHECKS", False))
_ON_POSTGRESQL = "postgresql" in DATABASES["default"]["ENGINE"]
if _ON_POSTGRESQL:
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, whose persistent connections are checked for a server that
        # closed them before each request or task uses them (core/db/base.py).
        DATABASES["default"]["ENGINE"] = "core.db"
    # A connection attempt to a server that does not answer gives up after this many
    # seconds (libpq waits forever by default): a request answers 503 instead of hanging.
    _db_options.setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=5))
    # Parameters travel apart from the SQL and psycopg prepares statements a connection runs
    # often: less quoting in Python, no re-planning in PostgreSQL (about 10 % less CPU per
    # delivery batch on the bench machine). Off behind a pooler in transaction mode.
    _db_options.setdefault("server_side_binding", env.bool("DB_SERVER_SIDE_BINDING", default=True))
# DATABASE_URL names a pooler in transaction mode (PgBouncer's pool_mode = transaction): each
# transaction may run on another server connection, so nothing may outlive one. Turns off
# what does: server-side binding (psycopg prepares statements on the server connection), the
# server-side cursors of QuerySet.iterator() (held across transactions in autocommit), and
# the `options` startup parameter that carries DB_IDLE_IN_TRANSACTION_TIMEOUT (PgBouncer
# refuses a connection that sends it unless told to ignore it, and then drops it: set
# idle_in_transaction_session_timeout on the database or role instead, docs/scaling.md).
# Django's client-side binding cursors never prepare (prepare_threshold stays None).
DB_TRANSACTION_POOLER = env.bool("DB_TRANSACTION_POOLER", default=False)
if _ON_POSTGRESQL and DB_TRANSACTION_POOLER:
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = False
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
# A transaction left open by a stuck process is ended by PostgreSQL after this long, releasing
# its row locks (a delivery batch holds its messages' locks while it sends: the longest a
# batch may send is bounded far below this, see the Celery time limits). 0 turns it off; with
# DB_TRANSACTION_POOLER it is not sent (the database's or role's own setting applies).
DB_IDLE_IN_TRANSACTION_TIMEOUT = env.int("DB_IDLE_IN_TRANSACTION_TIMEOUT", default=300)
if _ON_POSTGRESQL and DB_IDLE_IN_TRANSACTION_TIMEOUT and not DB_TRANSACTION_POOLER:
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = (
        _options.get("options", "")
        + f" -c idle_in_transaction_session_timeout={DB_IDLE_IN_TRANSACTION_TIMEOUT * 1000}"
    ).strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-setup fallback: web, worker and beat share one file, so wait for locks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30

# While the database cannot be reached, requests answer 503 with this Retry-After (seconds).
DB_UNAVAILABLE_RETRY_AFTER = env.int("DB_UNAVAILABLE_RETRY_AFTER", default=5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Cache (and so the API rate limit) lives in Redis; the fallback mode uses local memory.
CACHE_URL = env("CACHE_URL", default=REDIS_URL)
if CACHE_URL.startswith("locmem"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "signal",
        }
    }

# --- Operations (operations/, core/metrics.py) ------------------------------------------------
# Where every process writes its Prometheus metric files, summed by /metrics: one directory
# shared by all processes of a deployment, emptied when it starts. Empty: each process keeps
# its own metrics (and /metrics shows only the answering process's).
PROMETHEUS_MULTIPROC_DIR = multiprocess_setup(
    env("PROMETHEUS_MULTIPROC_DIR", default=str(BASE_DIR / "var" / "prometheus"))
)
# Bearer token /metrics asks for (`Authorization: Bearer <token>`); empty: /metrics is open.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates and times shown as "2026-12-06 23:10:05 UTC" (the zone named) in the admin and every
# template (core/formats).
FORMAT_MODULE_PATH = ["core.formats"]

STATIC_URL = "static/"
# Set STATIC_ROOT (and run `collectstatic`) in production; without it WhiteNoise serves the
# files straight from the apps.
STATIC_ROOT = env("STATIC_ROOT", default=None)
# WhiteNoise serves the admin's and the API docs' static files from the app server itself;
# in DEBUG it finds them without collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# The reference inbox client at /inbox-demo/ (messaging.inbox_demo): development only, on with
# DEBUG or INBOX_DEMO. INBOX_STREAM_URL is the base URL of the ASGI process that serves
# /api/v1/inbox/stream (e.g. http://127.0.0.1:8001); empty: the page's own origin.
INBOX_DEMO = env.bool("INBOX_DEMO", default=False)
INBOX_STREAM_URL = env("INBOX_STREAM_URL", default="")

# --- API -----------------------------------------------------------------------------------
API_RATE_LIMIT = env.int("API_RATE_LIMIT", default=100)  # requests per second per key
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Path and query string of an API request; longer ones get 414 uri_too_long. gunicorn's own
# request-line limit (gunicorn.conf.py) sits above it.
API_MAX_URL_BYTES = env.int("API_MAX_URL_BYTES", default=4096)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.auth.IsServerKey"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["core.api.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.openapi.SignalAutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Automata-Signal API",
    "DESCRIPTION": "Multi-channel messaging: subscriptions, users, messages, templates and "
    "campaigns. Authenticate with the `X-API-Key` header (server or client key).",
    "VERSION": "1.0.0",
    # 3.1: full JSON Schema (propertyNames, type lists), so the document can say what is refused.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.add_links",
    ],
    # Swagger UI served from our own static files: nothing is fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "SubscriptionTypeEnum": "messaging.models.SubscriptionType",
        "MessageStatusEnum": "messaging.models.MessageStatus",
        "MessageEventTypeEnum": "messaging.models.MessageEvent.Type",
        "ClientReportedStatusEnum": ["received", "converted"],
    },
}

# --- Encryption at rest ------------------------------------------------------------------------
# Comma-separated Fernet keys, newest first. The development default is NOT secret.
FIELD_ENCRYPTION_KEYS = env.list(
    "FIELD_ENCRYPTION_KEYS", default=["W-9lS79eGObfGyi6_8aTdR08Lrmos_qyX4UOtB22S4M="]
)
# Key of the HMAC that makes tokens searchable without storing them in clear.
TOKEN_HMAC_KEY = env("TOKEN_HMAC_KEY", default=SECRET_KEY)

# --- Celery --------------------------------------------------------------------------------
CELERY_QUEUES = ("critical", "messages", "campaigns", "retry")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
_ON_RABBITMQ = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
# On RabbitMQ the four queues are durable and their tasks persistent, so queued work outlives
# a broker restart. `quorum` (the default there) makes them quorum queues: replicated across
# a cluster's nodes, and the queue type RabbitMQ develops further (classic mirrored queues are
# gone in 4.0). Celery then disables global QoS and delays countdown tasks (retry back-off) in
# the broker itself (native delayed delivery), which needs topic exchanges; a topic exchange
# with the queue's name as routing key routes exactly like a direct one. `classic` keeps
# single-node durable queues with direct exchanges, for nodes older than 3.10.
RABBITMQ_QUEUE_TYPE = env("RABBITMQ_QUEUE_TYPE", default="quorum")
if RABBITMQ_QUEUE_TYPE not in ("quorum", "classic"):
    raise ValueError(f"RABBITMQ_QUEUE_TYPE must be quorum or classic, not {RABBITMQ_QUEUE_TYPE!r}")
_QUORUM = _ON_RABBITMQ and RABBITMQ_QUEUE_TYPE == "quorum"
# Each queue has its own exchange and routing key: a task published to one queue lands in
# that queue only. Priorities are queues: `high` goes to `critical`, retries to `retry`.
CELERY_TASK_QUEUES = [
    Queue(
        name,
        Exchange(name, type="topic" if _QUORUM else "direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"} if _QUORUM else None,
    )
    for name in CELERY_QUEUES
]
# Celery's native delayed delivery (quorum queues) delays countdown tasks in whole seconds.
BROKER_COUNTDOWN_WHOLE_SECONDS = _QUORUM
CELERY_TASK_DEFAULT_QUEUE = "messages"
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged after it ran, so a crash re-delivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True  # nobody reads results: no result backend writes
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
# Pool processes per worker: two per core. A delivery batch's process waits on PostgreSQL's
# commits and the providers' answers for part of its time, and with one process per core
# those waits left a fifth of the cores idle (bench/RESULTS.md, "The default deployment").
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2 * (os.cpu_count() or 1))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost its broker keeps trying to reconnect (Celery gives up after 100 tries,
# about 50 minutes, and exits); the stale-pending sweep picks up what was lost meanwhile.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Every task has a soft limit (SoftTimeLimitExceeded inside the task: its transaction rolls
# back) and a hard one (the pool child is killed, as a crash would). Tasks that must end sooner
# set their own (messaging.tasks, campaigns.tasks).
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis transport, made to survive a broker restart (signal_project/broker.py).
    CELERY_BROKER_TRANSPORT = "signal_project.broker:RedisTransport"
# Celery's Django fixup closes the database connection around every task unless told to
# reuse it: a new PostgreSQL connection per task would cost more than many a task itself.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=10_000)
# One visibility timeout, longer than any task runs: an unacknowledged task is re-delivered
# after it, and the stale-pending sweep (messaging.tasks) waits at least as long.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The zero-setup fallback broker: messages are files in var/broker.
    _broker_dir = env("CELERY_BROKER_DIR", default=str(BASE_DIR / "var" / "broker"))
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "data_folder_in": _broker_dir,
        "data_folder_out": _broker_dir,
        "processed_folder": _broker_dir + "-processed",
        "store_processed": False,
    }
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "sweep-pending-messages": {
        "task": "messaging.sweep_pending",
        "schedule": env.float("MESSAGE_SWEEP_INTERVAL_SECONDS", default=10.0),
        "options": {"queue": "critical", "expires": 60},
    },
    "resume-stalled-campaign-runs": {
        "task": "campaigns.resume_stalled_runs",
        "schedule": env.float("CAMPAIGN_RESUME_INTERVAL_SECONDS", default=30.0),
        "options": {"queue": "critical", "expires": 60},
    },
    "purge-idempotency-records": {
        "task": "messaging.purge_idempotency_records",
        "schedule": 3600.0,
        "options": {"queue": "messages"},
    },
    "purge-rollups": {
        "task": "messaging.purge_rollups",
        "schedule": 86400.0,
        "options": {"queue": "messages"},
    },
    # Retention: each run works for at most RETENTION_PURGE_BUDGET_SECONDS; the next continues.
    "purge-expired": {
        "task": "messaging.purge_expired",
        "schedule": env.float("RETENTION_PURGE_INTERVAL_SECONDS", default=900.0),
        "options": {"queue": "messages", "expires": 600},
    },
    # KakaoTalk: the dealer's per-recipient results, and its list of approved templates.
    "poll-kakao-results": {
        "task": "messaging.poll_kakao_results",
        "schedule": env.float("KAKAO_RESULTS_POLL_SECONDS", default=60.0),
        "options": {"queue": "critical", "expires": 60},
    },
    "sync-kakao-templates": {
        "task": "templates_app.sync_kakao_templates",
        "schedule": env.float("KAKAO_TEMPLATES_SYNC_SECONDS", default=600.0),
        "options": {"queue": "messages", "expires": 600},
    },
    # Fallback across channels: the chains whose current hop failed or went unreceived.
    "fallback-advance": {
        "task": "messaging.fallback_advance",
        "schedule": env.float("FALLBACK_INTERVAL_SECONDS", default=5.0),
        "options": {"queue": "critical", "expires": 30},
    },
}

# --- Delivery ------------------------------------------------------------------------------
# Messages per delivery task (one transaction: claim, send, record). 1,000 rather than 500:
# what each batch costs once (the task, the claim's and the record's statements, the commit,
# the hand-over to the adapters' loop) spread over twice the messages, +6-8 % campaign
# throughput (bench/RESULTS.md, "Throughput").
MESSAGE_BATCH_SIZE = env.int("MESSAGE_BATCH_SIZE", default=1000)
# Under load, sends from many requests share one delivery task per interval. At 200 requests/s
# the workers spent 2.1-2.2 ms of CPU per message with 20 ms, 1.4-1.5 ms with 50 ms (each
# task's fixed cost shared by more messages); accepted-to-successful p50 25 -> 41 ms.
MESSAGE_OUTBOX_FLUSH_MS = env.float("MESSAGE_OUTBOX_FLUSH_MS", default=50.0)
# A publish the broker refused is offered again every second for this long (messaging.dispatch).
MESSAGE_PUBLISH_DEFER_SECONDS = env.int("MESSAGE_PUBLISH_DEFER_SECONDS", default=600)
MESSAGE_MAX_ATTEMPTS = env.int("MESSAGE_MAX_ATTEMPTS", default=5)
MESSAGE_RETRY_BASE_SECONDS = env.float("MESSAGE_RETRY_BASE_SECONDS", default=2.0)
MESSAGE_RETRY_MAX_SECONDS = env.float("MESSAGE_RETRY_MAX_SECONDS", default=600.0)
# Pending work not picked up this long after it was enqueued is enqueued again (a worker
# sending it holds its row lock, so a copy enqueued meanwhile skips it).
MESSAGE_STALE_AFTER_SECONDS = env.int("MESSAGE_STALE_AFTER_SECONDS", default=300)
# The sweep's windows overlap by this much, for clocks that differ between hosts.
MESSAGE_SWEEP_OVERLAP_SECONDS = env.int("MESSAGE_SWEEP_OVERLAP_SECONDS", default=15)

# --- Fallback across channels (messaging.services.fallback) --------------------------------
# How often beat advances the chains (also the shortest wait before a pending hop is looked at
# again), and the shortest `after_seconds` a send may ask for.
FALLBACK_INTERVAL_SECONDS = env.float("FALLBACK_INTERVAL_SECONDS", default=5.0)
FALLBACK_MIN_AFTER_SECONDS = env.int("FALLBACK_MIN_AFTER_SECONDS", default=10)

# --- Campaigns -----------------------------------------------------------------------------
CAMPAIGN_BATCH_SIZE = env.int("CAMPAIGN_BATCH_SIZE", default=1000)
# A running fan-out that has not moved for this long is enqueued again.
CAMPAIGN_STALL_SECONDS = env.int("CAMPAIGN_STALL_SECONDS", default=60)
# A run with more pending messages than this waits a moment before its next fan-out step.
CAMPAIGN_MAX_PENDING = env.int("CAMPAIGN_MAX_PENDING", default=50_000)

# --- Retention -----------------------------------------------------------------------------
# Retention of messages, their events and inbox items, and subscription events
# (Application.retention_days; messaging.retention): the purge deletes them in batches of
# this many messages, one short transaction each, pausing between batches so that sending
# keeps the database, for at most the budget per run (the task keeps it under
# CELERY_TASK_SOFT_TIME_LIMIT).
RETENTION_PURGE_BATCH_SIZE = env.int("RETENTION_PURGE_BATCH_SIZE", default=2000)
RETENTION_PURGE_PAUSE_SECONDS = env.float("RETENTION_PURGE_PAUSE_SECONDS", default=0.3)
RETENTION_PURGE_BUDGET_SECONDS = env.float("RETENTION_PURGE_BUDGET_SECONDS", default=200.0)
RETENTION_PURGE_LOCK_TIMEOUT_MS = env.int("RETENTION_PURGE_LOCK_TIMEOUT_MS", default=2000)
# One purge runs at a time: it holds a lease in the database for this long, extended while it
# works; a purge that died leaves it to others after at most this long.
RETENTION_PURGE_LEASE_SECONDS = env.float("RETENTION_PURGE_LEASE_SECONDS", default=120.0)

# --- KakaoTalk results ---------------------------------------------------------------------
# Each poll of the dealer's results reads from its last window's end less this overlap (the
# dealer's dates have minutes only; a result read twice is recorded once).
KAKAO_RESULTS_OVERLAP_SECONDS = env.int("KAKAO_RESULTS_OVERLAP_SECONDS", default=120)
# How far back the first poll of an application reads (no watermark yet, or the cache lost it).
KAKAO_RESULTS_FIRST_LOOKBACK_SECONDS = env.int("KAKAO_RESULTS_FIRST_LOOKBACK_SECONDS", default=3600)
# A result found by the dealer's request id is looked for among the messages made this long
# before its window (the dealer reports within minutes; retries stretch it).
KAKAO_RESULTS_MATCH_SECONDS = env.int("KAKAO_RESULTS_MATCH_SECONDS", default=86400)
# One poll of an application at a time: a poll still running after this long is taken as dead.
KAKAO_RESULTS_POLL_LOCK_SECONDS = env.int("KAKAO_RESULTS_POLL_LOCK_SECONDS", default=300)

# --- Providers -----------------------------------------------------------------------------
APNS_ENDPOINT = env("APNS_ENDPOINT", default="")  # empty: Apple's host per the app's sandbox flag
APNS_CA_FILE = env("APNS_CA_FILE", default="")
FCM_ENDPOINT = env("FCM_ENDPOINT", default="https://fcm.googleapis.com")
# The service's own external base URL (e.g. https://signal.example.com), used in the links and
# callbacks it hands out: one-click unsubscribe in campaign e-mails, SMS status callbacks.
# Empty: campaign e-mails carry no List-Unsubscribe and SMS are sent without a status callback.
PUBLIC_URL = env("PUBLIC_URL", default="").rstrip("/")
# Twilio's Messages API, or any gateway that speaks it.
SMS_ENDPOINT = env("SMS_ENDPOINT", default="https://api.twilio.com")
# Seconds one SMS request may take before it is retried later (timeouts are temporary).
SMS_TIMEOUT = env.float("SMS_TIMEOUT", default=10.0)
# SMS requests in flight at once per batch (one per recipient), and keep-alive connections kept.
SMS_CONCURRENCY = env.int("SMS_CONCURRENCY", default=50)
# SMTP connections kept open per application's relay, in each worker process.
EMAIL_CONNECTIONS_PER_RELAY = env.int("EMAIL_CONNECTIONS_PER_RELAY", default=4)
# Seconds an SMTP relay may take to connect or to answer one command; a batch ends within 4 of
# them (then what is unsent is retried), inside the delivery task's time limit.
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=20.0)
# CA bundle to verify SMTP relays' TLS (e.g. the fakes' var/fake/ca.pem); empty: the system's.
SMTP_CA_FILE = env("SMTP_CA_FILE", default="")
# Hosts a WebPush endpoint may name (comma-separated names or `.suffix`es): the push services of
# the browsers. Anything else is refused when the subscription is registered, and again before
# sending, so that the service never becomes a way to reach arbitrary hosts.
WEB_PUSH_ALLOWED_HOSTS = env.list(
    "WEB_PUSH_ALLOWED_HOSTS",
    default=[
        "fcm.googleapis.com",  # Chrome, Edge on Android, Opera, Samsung Internet
        ".push.services.mozilla.com",  # Firefox
        ".push.apple.com",  # Safari (web.push.apple.com)
        ".notify.windows.com",  # Edge on Windows (WNS)
    ],
)
# Web Push requests in flight at once per batch, and the seconds one may take.
WEB_PUSH_CONCURRENCY = env.int("WEB_PUSH_CONCURRENCY", default=100)
WEB_PUSH_TIMEOUT = env.float("WEB_PUSH_TIMEOUT", default=10.0)
# NHN Cloud KakaoTalk Bizmessage (AlimTalk v2.3), the "dealer"; its newer published domain is
# https://kakaotalk-bizmessage.api.nhncloudservice.com.
KAKAO_ENDPOINT = env("KAKAO_ENDPOINT", default="https://api-alimtalk.cloud.toast.com")
# Seconds one AlimTalk request (up to 1,000 recipients) may take; a timed-out request is sent
# again later under the same idempotency key, which the dealer recognizes.
KAKAO_TIMEOUT = env.float("KAKAO_TIMEOUT", default=20.0)
# AlimTalk requests in flight at once per batch.
KAKAO_CONCURRENCY = env.int("KAKAO_CONCURRENCY", default=4)
# Each channel's adapter class is its spec's (core.channels.SPECS); this may point a channel at
# another class (a dotted path) or turn it off (None), e.g. {"SMS": "tests.fakes.SMSAdapter"}.
CHANNEL_ADAPTERS: dict[str, str | None] = {}

# The in-app inbox's live stream (messaging.inbox.stream, served by the ASGI app only).
# Redis for its events (streams and pub/sub); REDIS_URL unless set.
INBOX_REDIS_URL = env("INBOX_REDIS_URL", default=REDIS_URL)
# How long an inbox's events stay replayable for a client resuming with Last-Event-ID (at most
# the last 1,000 per inbox); an older Last-Event-ID gets the current counts instead.
INBOX_REPLAY_SECONDS = env.int("INBOX_REPLAY_SECONDS", default=86400)
# Seconds of silence after which an open stream gets a `: keep-alive` comment (proxies and
# load balancers close idle connections, commonly after 60 s).
# The console's per-minute delivery rollups are kept this long (messaging.purge_rollups).
ROLLUP_RETENTION_DAYS = env.int("ROLLUP_RETENTION_DAYS", default=30)
INBOX_HEARTBEAT_SECONDS = env.float("INBOX_HEARTBEAT_SECONDS", default=15.0)
# After an application's identity secret is rotated, hashes made with the previous one are
# still accepted this long, so its backends can switch without a window of 401s.
IDENTITY_SECRET_GRACE_SECONDS = env.int("IDENTITY_SECRET_GRACE_SECONDS", default=86400)

# --- Security: HTTPS behind a proxy, browsers' cross-origin calls, admin login lockouts ------
# TLS ends at a reverse proxy (docs/operations.md, "TLS and the proxy"). Without DEBUG the web
# app assumes its public address is HTTPS; processes serving plain HTTP to people (compose
# without a proxy, `make run`, the tests' servers) turn the redirect and secure cookies off.
# SECURE_PROXY_SSL_HEADER: "HTTP_X_FORWARDED_PROTO,https" makes a request secure when the proxy
# says so. Off by default: without a proxy that sets (and overwrites) the header, a client
# could claim HTTPS itself.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ValueError(
        "SECURE_PROXY_SSL_HEADER is a header and its value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) or None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The probes speak plain HTTP to the processes inside the cluster, past the proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
# On with HSTS, so that `check --deploy` is clean as shipped. Each is a promise beyond this
# host (every subdomain speaks HTTPS; the domain may be put on the browsers' preload list):
# an operator whose subdomains still serve plain HTTP sets them to false.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HSTS_SECONDS > 0
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HSTS_SECONDS > 0)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Origins the admin's forms may be posted from besides the request's own host (a proxy that
# passes another Host header): PUBLIC_URL's by default.
_public = urlsplit(PUBLIC_URL)
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[f"{_public.scheme}://{_public.netloc}"] if _public.scheme and _public.netloc else [],
)

# CORS (django-cors-headers) on the API only; no origin is allowed here: accounts.cors allows a
# browser's call when its client key's application lists the origin (allowed_origins), and a
# preflight, which carries no key, when any application lists it.
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_ALLOW_CREDENTIALS = False  # keys travel in headers; no cookies
CORS_ALLOW_HEADERS = (
    "accept",
    "content-type",
    "x-api-key",
    "x-user-hash",
    "idempotency-key",
    "x-request-id",
    "last-event-id",  # the inbox stream's resume point (messaging.inbox.stream)
)
CORS_EXPOSE_HEADERS = ("retry-after", "x-request-id")
# How long each process keeps the set of origins any application lists (for preflights).
CORS_ORIGINS_CACHE_SECONDS = env.float("CORS_ORIGINS_CACHE_SECONDS", default=5.0)

# The admin login (django-axes; the API uses keys, not passwords): AXES_FAILURE_LIMIT failed
# logins for one username from one address lock that pair out for AXES_COOLOFF_MINUTES;
# `manage.py axes_reset` (or axes_reset_username NAME) lifts lockouts. The address is the
# client's as the proxies report it (operations.admin_login.client_ip, TRUSTED_PROXY_COUNT).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ONLY_ADMIN_SITE = True
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "operations.admin_login.lockout_response"
AXES_CLIENT_IP_CALLABLE = "operations.admin_login.client_ip"
# Failures and lockouts are logged; not the start-up banner and the verbose client strings.
AXES_VERBOSE = False
# Reverse proxies in front of the web processes that append the address they saw to
# X-Forwarded-For: the client is that many entries from the right. 0: REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# --- Logs ----------------------------------------------------------------------------------
# LOG_FORMAT: `console` (lines for people, the default) or `json` (one object a line, for log
# shippers); LOG_LEVEL: the root level. Every library's lines take the same shape (core.logging).
# The periodic maintenance tasks' Celery lines are DEBUG lines: an idle service is quiet.
LOG_FORMAT = env("LOG_FORMAT", default="console")
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING_CONFIG = "core.logging.configure"
LOGGING = build_logging(
    LOG_FORMAT, LOG_LEVEL, quiet_tasks={entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()}
)
