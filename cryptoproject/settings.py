"""Django settings, read from the environment (12-factor).

Every variable is listed in ``.env.example``. The defaults fail closed: ``DJANGO_DEBUG`` is false unless set, so
a deployment that forgets a variable runs as production (no default secret key, login required, security settings
on) and refuses to start on a dangerous combination of settings (:func:`cryptoproject.security.production_problems`).
Local runs (``make demo``, ``make test``, the Procfiles, docker-compose) set ``DJANGO_DEBUG=true`` explicitly, and the
git-ignored ``.env`` that ``make setup`` writes says it for commands run from a fresh shell.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from cryptoproject.logging import logging_config
from cryptoproject.queues import CeleryQueue
from cryptoproject.security import LOCAL_HOSTS, production_problems

BASE_DIR = Path(__file__).resolve().parent.parent

# The dotenv file, read when present: the git-ignored .env at the repository root that `make setup` writes for local
# development (scripts/dev_env.sh), or the file DOTENV_FILE names; an empty DOTENV_FILE reads none (the test suite, so
# that its children see only the environment they are given). A deployment has no .env (.dockerignore keeps it out of
# the image). Variables of the real environment always win over the file's.
DEFAULT_DOTENV = BASE_DIR / ".env"
_DOTENV = os.environ.get("DOTENV_FILE", str(DEFAULT_DOTENV))


def _read_dotenv(path: str) -> dict[str, str]:
    """The variables of the dotenv file at ``path`` (none when it is absent), parsed as django-environ parses them.

    Kept apart from ``os.environ``, so that the settings can tell a value the environment gave from one the file gave
    (also when Django imports this module a second time after an error).
    """
    if not path:
        return {}
    if "DOTENV_FILE" in os.environ and not os.path.isfile(path):
        raise ImproperlyConfigured(f"DOTENV_FILE: no such file {path!r}")
    values: dict[str, str] = {}

    class _Reader(environ.Env):
        ENVIRON = values  # read_env sets the file's variables in its class's ENVIRON (os.environ by default)

    _Reader.read_env(path, overwrite=False)
    return values


_DOTENV_VALUES = _read_dotenv(_DOTENV)
env = environ.Env()
env.ENVIRON = {**_DOTENV_VALUES, **os.environ}


def _setting(name: str, cast: Any, default: Any) -> Any:
    """Read one variable, naming it in the error when its value does not parse."""
    try:
        return env(name, cast=cast, default=default)
    except (ValueError, TypeError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name}: invalid value {env.str(name, default='')!r} ({exc})") from exc


# --------------------------------------------------------------------------------------------- core
DEBUG: bool = _setting("DJANGO_DEBUG", bool, False)
_DEV_SECRET = "django-insecure-local-development-key-only-for-make-demo-and-tests"
SECRET_KEY: str = env.str("DJANGO_SECRET_KEY", default="" if not DEBUG else _DEV_SECRET)
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false (production).")
ALLOWED_HOSTS: list[str] = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# The development .env must never turn a deployment that forgot DJANGO_DEBUG into a debug one (a checkout where someone
# ran `make setup`): debug mode from the file serves the local host names only.
if DEBUG and "DJANGO_DEBUG" not in os.environ and (_public := sorted(set(ALLOWED_HOSTS) - LOCAL_HOSTS)):
    raise ImproperlyConfigured(
        f"DJANGO_DEBUG=true comes from {_DOTENV} (local development only) while DJANGO_ALLOWED_HOSTS names "
        f"{', '.join(_public)}: set DJANGO_DEBUG in the environment (false for a deployment, which has no .env)."
    )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "ingest",
    "books",
    "simulator",
    "analytics",
    "history",
    "backtest",
    "prediction",
    "notifications",
    "alerts",
    "accounts",
    "dashboard",
]

MIDDLEWARE = [
    # First: a body over REQUEST_BODY_MAX_BYTES is refused (413) before anything reads it (DRF's parsers included).
    "cryptoproject.body_limit.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response: cryptoproject/csp.py.
    "cryptoproject.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Staff sessions idle longer than STAFF_SESSION_IDLE_SECONDS are logged out (everyone else keeps two weeks).
    "accounts.staff_sessions.StaffIdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A bounded statement time for queries run while serving a request (not the consumer or Celery).
    "cryptoproject.middleware.StatementTimeoutMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

# The largest request body accepted, in bytes (413 beyond it, also for chunked bodies under daphne and for the API's
# JSON, which Django's own DATA_UPLOAD_MAX_MEMORY_SIZE check never sees): cryptoproject/body_limit.py.
REQUEST_BODY_MAX_BYTES: int = _setting("REQUEST_BODY_MAX_BYTES", int, 1_048_576)
if REQUEST_BODY_MAX_BYTES < 1024:
    raise ImproperlyConfigured(f"REQUEST_BODY_MAX_BYTES: must be at least 1024, got {REQUEST_BODY_MAX_BYTES}")
DATA_UPLOAD_MAX_MEMORY_SIZE = REQUEST_BODY_MAX_BYTES

# Added to MIDDLEWARE when DATABASE_REPLICA_URL is set (below).
REPLICA_MIDDLEWARE = "cryptoproject.middleware.ReplicaReadsMiddleware"

ROOT_URLCONF = "cryptoproject.urls"
WSGI_APPLICATION = "cryptoproject.wsgi.application"
ASGI_APPLICATION = "cryptoproject.asgi.application"

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
                "accounts.context_processors.accounts",
            ],
        },
    },
]

# --------------------------------------------------------------------------------------------- database
# Upper bound (ms) for one SQL statement run while serving a web request; 0 disables. Pages and the API read index
# ranges in milliseconds: a statement this slow is a bug or an attack, and must not hold a connection.
DATABASE_WEB_STATEMENT_TIMEOUT_MS: int = _setting("DATABASE_WEB_STATEMENT_TIMEOUT_MS", int, 5000)


def database_config(name: str, url: str) -> dict[str, Any]:
    """One ``DATABASES`` entry from the PostgreSQL URL in setting ``name``, with the project's connection options."""
    try:
        db = environ.Env.db_url_config(url)
    except (ValueError, KeyError) as exc:
        raise ImproperlyConfigured(f"{name}: cannot parse {url!r} ({exc})") from exc
    if db.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"{name} must point at PostgreSQL (postgres://...); the project needs it.")
    db.setdefault("OPTIONS", {})
    # Fail fast when the server is unreachable instead of hanging on TCP retries.
    db["OPTIONS"].setdefault("connect_timeout", _setting("DATABASE_CONNECT_TIMEOUT", int, 5))
    # 0: a connection per request. Under ASGI (daphne) every request runs in a fresh thread-local context, so a
    # persistent connection is never reused and leaks until the server's idle limit; the long-running consumer holds
    # its own connection whatever this says.
    db["CONN_MAX_AGE"] = _setting("DATABASE_CONN_MAX_AGE", int, 0)
    db["CONN_HEALTH_CHECKS"] = True
    return db


def replica_config(url: str) -> dict[str, Any]:
    """The ``replica`` entry (see ``DATABASE_REPLICA_URL``), from a URL the caller vouches for."""
    db = database_config("DATABASE_REPLICA_URL", url)
    # Only web requests read from the replica (cryptoproject/db_router.py), so their statement bound can be the
    # server-side default of its sessions: no per-request SET as on the primary (StatementTimeoutMiddleware).
    if DATABASE_WEB_STATEMENT_TIMEOUT_MS > 0:
        options = db["OPTIONS"].get("options", "")
        db["OPTIONS"]["options"] = f"{options} -c statement_timeout={DATABASE_WEB_STATEMENT_TIMEOUT_MS}".strip()
    # A physical streaming replica serves the primary's databases, the test database too: tests read it by name
    # through the replica's own host and port, and never create or flush it there (it is read-only).
    db["TEST"] = {"MIRROR": "default"}
    return db


# The development stack's database is the default in debug mode only: production names its own (fail closed), never
# the well-known crypto:crypto credentials.
DATABASE_URL: str = env.str("DATABASE_URL", default="postgres://crypto:crypto@127.0.0.1:15432/crypto" if DEBUG else "")
if not DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_URL must be set when DJANGO_DEBUG is false (production).")
_db = database_config("DATABASE_URL", DATABASE_URL)
# Parallel test runs (several developers or CI jobs on one server) need distinct test databases.
_db["TEST"] = {"NAME": env.str("DJANGO_TEST_DB_NAME", default=f"test_{_db.get('NAME', 'crypto')}")}
DATABASES = {"default": _db}
# A streaming read replica of that database (optional): dashboard pages and the REST API read from it (GET/HEAD
# only, and never for a client that wrote within DATABASE_REPLICA_PIN_SECONDS); everything else uses the primary.
DATABASE_REPLICA_URL: str = env.str("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_PIN_SECONDS: float = _setting("DATABASE_REPLICA_PIN_SECONDS", float, 5.0)
if not 0 <= DATABASE_REPLICA_PIN_SECONDS <= 300:
    raise ImproperlyConfigured(
        f"DATABASE_REPLICA_PIN_SECONDS: must be between 0 and 300, got {DATABASE_REPLICA_PIN_SECONDS}"
    )
DATABASE_ROUTERS: list[str] = []
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_config(DATABASE_REPLICA_URL)
    DATABASE_ROUTERS = ["cryptoproject.db_router.ReplicaRouter"]
    # After the session and auth middlewares (their tables stay on the primary anyway), before the views.
    MIDDLEWARE.insert(MIDDLEWARE.index("cryptoproject.middleware.StatementTimeoutMiddleware"), REPLICA_MIDDLEWARE)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --------------------------------------------------------------------------------------------- Redis, Celery, Channels
REDIS_URL: str = env.str("REDIS_URL", default="redis://127.0.0.1:16379/0")
CHANNEL_LAYER_URL: str = env.str("CHANNEL_LAYER_URL", default=REDIS_URL)

CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND: str | None = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# Tasks are idempotent, so acknowledging after the work (and re-running on worker loss) is safe.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = _setting("CELERY_WORKER_PREFETCH_MULTIPLIER", int, 4)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = _setting("CELERY_TASK_SOFT_TIME_LIMIT", int, 120)
CELERY_TASK_TIME_LIMIT = _setting("CELERY_TASK_TIME_LIMIT", int, 180)
CELERY_TASK_DEFAULT_QUEUE = CeleryQueue.DEFAULT.value
CELERY_TASK_ROUTES = {
    # Alert detection on its own queue, so a candle backlog never delays an alert.
    "analytics.tasks.detect_whales": {"queue": CeleryQueue.ALERTS.value},
    "analytics.tasks.*": {"queue": CeleryQueue.ANALYTICS.value},
    "books.tasks.*": {"queue": CeleryQueue.ANALYTICS.value},
    # Backtests users start: a worker of their own, so a queue of long runs never delays a candle update.
    "backtest.tasks.*": {"queue": CeleryQueue.BACKTEST.value},
    # Training and inference on their own queue: a retraining never delays a candle update.
    "prediction.tasks.*": {"queue": CeleryQueue.ML.value},
    # The outbox sender: a slow receiver holds a sender, never an alert evaluation.
    "notifications.tasks.*": {"queue": CeleryQueue.NOTIFY.value},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds before the Redis broker redelivers a message taken by a worker that died without acknowledging it.
# Workers sweep for such messages every 10 s (kombu's default scans only every 10th sweep, i.e. 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _setting("CELERY_VISIBILITY_TIMEOUT", int, 3600),
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 1,
    # Without these a publish (the trades consumer dispatching tasks) can block on a dead socket far longer than
    # Kafka's poll interval, and the consumer is evicted from its group.
    "socket_timeout": _setting("CELERY_BROKER_SOCKET_TIMEOUT", float, 5.0),
    "socket_connect_timeout": _setting("CELERY_BROKER_SOCKET_TIMEOUT", float, 5.0),
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = False

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, the same as channels_redis's 5 s BZPOPMIN:
            # an idle socket then fails with "Timeout reading" (1011 to the browser). Give reads a margin.
            "hosts": [{"address": CHANNEL_LAYER_URL, "socket_timeout": 15}],
            "capacity": 1000,
            "expiry": 30,
            "prefix": env.str("CHANNEL_LAYER_PREFIX", default="asgi"),
        },
    }
}

# --------------------------------------------------------------------------------------------- Kafka
KAFKA_BOOTSTRAP_SERVERS: list[str] = env.list("KAFKA_BOOTSTRAP_SERVERS", default=["127.0.0.1:9092"])
KAFKA_SECURITY_PROTOCOL: str = env.str("KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT").upper()
if KAFKA_SECURITY_PROTOCOL not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
    raise ImproperlyConfigured(
        f"KAFKA_SECURITY_PROTOCOL: {KAFKA_SECURITY_PROTOCOL!r} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
    )
KAFKA_SASL_MECHANISM: str = env.str("KAFKA_SASL_MECHANISM", default="").upper()
KAFKA_SASL_USERNAME: str = env.str("KAFKA_SASL_USERNAME", default="")
KAFKA_SASL_PASSWORD: str = env.str("KAFKA_SASL_PASSWORD", default="")
KAFKA_SSL_CAFILE: str = env.str("KAFKA_SSL_CAFILE", default="")
KAFKA_TRADES_TOPIC: str = env.str("KAFKA_TRADES_TOPIC", default="market.trades")
KAFKA_DLQ_TOPIC: str = env.str("KAFKA_DLQ_TOPIC", default="market.trades.dlq")
KAFKA_TRADES_PARTITIONS: int = _setting("KAFKA_TRADES_PARTITIONS", int, 6)
# Order books (docs/BOOKS.md): the topic of normalised deltas and periodic full snapshots, keyed exchange:symbol.
KAFKA_BOOKS_TOPIC: str = env.str("KAFKA_BOOKS_TOPIC", default="market.books")
# Levels per side of the REST snapshot a Binance book syncs from (1..5000; 5000 costs 250 of the 6000 weight/min).
BOOK_SNAPSHOT_LIMIT: int = _setting("BOOK_SNAPSHOT_LIMIT", int, 1000)
if not 1 <= BOOK_SNAPSHOT_LIMIT <= 5000:
    raise ImproperlyConfigured(f"BOOK_SNAPSHOT_LIMIT: must be 1..5000, got {BOOK_SNAPSHOT_LIMIT}")
# Kraken's v2 book depth ingest subscribes (10, 25, 100, 500 or 1000; docs/BOOKS.md): its checksum covers the top 10.
BOOK_KRAKEN_DEPTH: int = _setting("BOOK_KRAKEN_DEPTH", int, 100)
if BOOK_KRAKEN_DEPTH not in (10, 25, 100, 500, 1000):
    raise ImproperlyConfigured(f"BOOK_KRAKEN_DEPTH: must be 10, 25, 100, 500 or 1000, got {BOOK_KRAKEN_DEPTH}")

# Seconds between the full snapshots published on KAFKA_BOOKS_TOPIC (a consumer can start at any of them).
BOOK_SNAPSHOT_EVERY_S: float = _setting("BOOK_SNAPSHOT_EVERY_S", float, 10.0)
if not 0 < BOOK_SNAPSHOT_EVERY_S <= 3600:
    raise ImproperlyConfigured(f"BOOK_SNAPSHOT_EVERY_S: must be within (0, 3600], got {BOOK_SNAPSHOT_EVERY_S}")
# Levels a side in one market.books snapshot message: a bigger book goes out in parts (a Coinbase BTC-USD book of
# ~46,000 levels is over Kafka's default 1 MB message limit in one piece). 10,000 a side stays near 600 KB.
BOOK_SNAPSHOT_PART_LEVELS: int = _setting("BOOK_SNAPSHOT_PART_LEVELS", int, 5000)
if not 1 <= BOOK_SNAPSHOT_PART_LEVELS <= 10000:
    raise ImproperlyConfigured(f"BOOK_SNAPSHOT_PART_LEVELS: must be 1..10000, got {BOOK_SNAPSHOT_PART_LEVELS}")
# The market page's live book (books/live.py): pushes per second per market (at most 5) and levels a side per push.
BOOK_PUSH_MAX_HZ: float = _setting("BOOK_PUSH_MAX_HZ", float, 5.0)
if not 0 < BOOK_PUSH_MAX_HZ <= 5:
    raise ImproperlyConfigured(f"BOOK_PUSH_MAX_HZ: must be within (0, 5], got {BOOK_PUSH_MAX_HZ}")
BOOK_PUSH_LEVELS: int = _setting("BOOK_PUSH_LEVELS", int, 50)
if not 1 <= BOOK_PUSH_LEVELS <= 500:
    raise ImproperlyConfigured(f"BOOK_PUSH_LEVELS: must be 1..500, got {BOOK_PUSH_LEVELS}")
# Storage of the books (consume_books, docs/BOOKS.md "Storage"): levels a side of each stored top-N snapshot,
# seconds of exchange event time between stored snapshots, days both series are kept (whole daily partitions),
# and the consumer group of consume_books (its own: it reads market.books, never market.trades).
BOOK_DEPTH_LEVELS: int = _setting("BOOK_DEPTH_LEVELS", int, 50)
if not 1 <= BOOK_DEPTH_LEVELS <= 5000:
    raise ImproperlyConfigured(f"BOOK_DEPTH_LEVELS: must be 1..5000, got {BOOK_DEPTH_LEVELS}")
BOOK_STORE_EVERY_S: int = _setting("BOOK_STORE_EVERY_S", int, 10)
if not 1 <= BOOK_STORE_EVERY_S <= 86400 or 86400 % BOOK_STORE_EVERY_S:
    raise ImproperlyConfigured(f"BOOK_STORE_EVERY_S: must divide a day (1..86400), got {BOOK_STORE_EVERY_S}")
BOOK_RETENTION_DAYS: int = _setting("BOOK_RETENTION_DAYS", int, 7)
if BOOK_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"BOOK_RETENTION_DAYS: must be at least 1, got {BOOK_RETENTION_DAYS}")
KAFKA_BOOKS_CONSUMER_GROUP: str = env.str("KAFKA_BOOKS_CONSUMER_GROUP", default="books")
if not KAFKA_BOOKS_CONSUMER_GROUP:
    raise ImproperlyConfigured("KAFKA_BOOKS_CONSUMER_GROUP: must not be empty")
# Replicas of the project's topics: 1 on a single broker; 3 on a production cluster (with min.insync.replicas=2 on
# the brokers, an acknowledged trade survives the loss of any one broker).
KAFKA_REPLICATION_FACTOR: int = _setting("KAFKA_REPLICATION_FACTOR", int, 1)
if KAFKA_REPLICATION_FACTOR < 1:
    raise ImproperlyConfigured(f"KAFKA_REPLICATION_FACTOR: must be at least 1, got {KAFKA_REPLICATION_FACTOR}")
KAFKA_CONSUMER_GROUP: str = env.str("KAFKA_CONSUMER_GROUP", default="analytics")

# Address the ingest processes' Prometheus /metrics endpoints listen on (no authentication: loopback by default;
# 0.0.0.0 to let a scraper on another host in, behind a firewall).
METRICS_BIND_ADDRESS: str = env.str("METRICS_BIND_ADDRESS", default="127.0.0.1")

# --------------------------------------------------------------------------------------------- trades consumer
# How far a trade time may lie beyond its received_at (ingest clock) before the record is refused.
TRADE_MAX_CLOCK_SKEW_MS: int = _setting("TRADE_MAX_CLOCK_SKEW_MS", int, 60_000)
# Prefix of a refused record kept in its dead letter (JSON escaping may grow it six-fold: stay under 1 MB).
DLQ_RAW_MAX_BYTES: int = _setting("DLQ_RAW_MAX_BYTES", int, 64 * 1024)
# The consumer exits (for its supervisor to restart it) after this long without an assignment or without commit
# progress while records wait; /healthz reports such a group as unhealthy.
CONSUMER_STALL_TIMEOUT_S: float = _setting("CONSUMER_STALL_TIMEOUT_S", float, 120.0)
# PostgreSQL statement_timeout of the consumer's batch transaction, well inside Kafka's 30 s poll interval.
CONSUMER_STATEMENT_TIMEOUT_MS: int = _setting("CONSUMER_STATEMENT_TIMEOUT_MS", int, 15_000)
# Invalid-message limit per partition: ratio over a sliding window of records, and a cap on consecutive ones.
CONSUMER_MAX_INVALID_RATIO: float = _setting("CONSUMER_MAX_INVALID_RATIO", float, 0.5)
CONSUMER_INVALID_WINDOW: int = _setting("CONSUMER_INVALID_WINDOW", int, 1000)
CONSUMER_MAX_CONSECUTIVE_INVALID: int = _setting("CONSUMER_MAX_CONSECUTIVE_INVALID", int, 1000)
for _name, _value, _least, _most in (
    ("TRADE_MAX_CLOCK_SKEW_MS", TRADE_MAX_CLOCK_SKEW_MS, 0, 86_400_000),
    ("DLQ_RAW_MAX_BYTES", DLQ_RAW_MAX_BYTES, 256, 128 * 1024),
    ("CONSUMER_STALL_TIMEOUT_S", CONSUMER_STALL_TIMEOUT_S, 1, 86_400),
    ("CONSUMER_STATEMENT_TIMEOUT_MS", CONSUMER_STATEMENT_TIMEOUT_MS, 100, 25_000),
    ("CONSUMER_MAX_INVALID_RATIO", CONSUMER_MAX_INVALID_RATIO, 0.01, 1),
    ("CONSUMER_INVALID_WINDOW", CONSUMER_INVALID_WINDOW, 10, 1_000_000),
    ("CONSUMER_MAX_CONSECUTIVE_INVALID", CONSUMER_MAX_CONSECUTIVE_INVALID, 1, 1_000_000),
    ("CELERY_BROKER_SOCKET_TIMEOUT", CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"], 0.1, 25),
):
    if not _least <= _value <= _most:
        raise ImproperlyConfigured(f"{_name}: must be between {_least} and {_most}, got {_value}")

# --------------------------------------------------------------------------------------------- exchanges
BINANCE_WS_URL: str = env.str("BINANCE_WS_URL", default="wss://stream.binance.com:9443")
BINANCE_REST_URL: str = env.str("BINANCE_REST_URL", default="https://api.binance.com")
COINBASE_WS_URL: str = env.str("COINBASE_WS_URL", default="wss://advanced-trade-ws.coinbase.com")
# Gap backfill reads the Coinbase Exchange REST (trades paged by id); the Advanced Trade REST cannot page by id.
COINBASE_REST_URL: str = env.str("COINBASE_REST_URL", default="https://api.exchange.coinbase.com")
KRAKEN_WS_URL: str = env.str("KRAKEN_WS_URL", default="wss://ws.kraken.com/v2")
KRAKEN_REST_URL: str = env.str("KRAKEN_REST_URL", default="https://api.kraken.com")
# The base URL: ingest connects to <OKX_WS_URL>/ws/v5/public.
OKX_WS_URL: str = env.str("OKX_WS_URL", default="wss://ws.okx.com:8443")
OKX_REST_URL: str = env.str("OKX_REST_URL", default="https://www.okx.com")
# The base URL: ingest connects to <BYBIT_WS_URL>/v5/public/spot.
BYBIT_WS_URL: str = env.str("BYBIT_WS_URL", default="wss://stream.bybit.com")
BYBIT_REST_URL: str = env.str("BYBIT_REST_URL", default="https://api.bybit.com")

# --------------------------------------------------------------------------------------------- history import
# Binance's public data archive (manage.py import_history); the demo and the tests use a local mirror instead.
BINANCE_DATA_URL: str = env.str("BINANCE_DATA_URL", default="https://data.binance.vision")
# Downloads land here in the archive's layout (verified zips, .part files of interrupted downloads).
HISTORY_CACHE_DIR: Path = Path(_setting("HISTORY_CACHE_DIR", str, str(BASE_DIR / ".cache" / "history")))
# Files downloaded at the same time (the archive is a CDN; a handful is polite and saturates a normal link).
HISTORY_DOWNLOAD_CONCURRENCY: int = _setting("HISTORY_DOWNLOAD_CONCURRENCY", int, 4)
if HISTORY_DOWNLOAD_CONCURRENCY < 1:
    raise ImproperlyConfigured("HISTORY_DOWNLOAD_CONCURRENCY: must be at least 1")

# --------------------------------------------------------------------------------------------- ingest
# Trades accepted but not yet acknowledged by Kafka that one ingest process holds (for re-sending after a
# broker outage). When full, ingest stops reading the WebSocket (back-pressure); REST backfill covers the rest.
INGEST_BUFFER_TRADES: int = _setting("INGEST_BUFFER_TRADES", int, 200_000)
# What one ingest process holds in memory until Kafka acknowledges it, in bytes of serialised records (+64 each):
# the bound on its memory during a Kafka outage (docs/RELIABILITY.md). Beyond it, records spill to the journal.
INGEST_BUFFER_BYTES: int = _setting("INGEST_BUFFER_BYTES", int, 32 * 1024 * 1024)
# Where ingest spills records past INGEST_BUFFER_BYTES (a folder per exchange and symbol set, replayed in order when
# Kafka is back and at the next start after a crash), and the bytes it may hold there; 0: no journal (back-pressure).
INGEST_JOURNAL_DIR: Path = Path(_setting("INGEST_JOURNAL_DIR", str, str(BASE_DIR / "var" / "ingest-journal")))
INGEST_JOURNAL_BYTES: int = _setting("INGEST_JOURNAL_BYTES", int, 2 * 1024 * 1024 * 1024)
if INGEST_JOURNAL_BYTES < 0:
    raise ImproperlyConfigured("INGEST_JOURNAL_BYTES: must not be negative (0 turns the journal off)")
# kafka-python's delivery timeout: a batch not acknowledged within it is re-sent by a fresh producer.
INGEST_DELIVERY_TIMEOUT_MS: int = _setting("INGEST_DELIVERY_TIMEOUT_MS", int, 120_000)
# On SIGTERM, seconds to wait for Kafka to acknowledge what was accepted; then exit 1 naming how many were not.
INGEST_SHUTDOWN_TIMEOUT: float = _setting("INGEST_SHUTDOWN_TIMEOUT", float, 20.0)
# A trade-id gap larger than this is not backfilled over REST (counted and logged as abandoned).
INGEST_BACKFILL_MAX_TRADES: int = _setting("INGEST_BACKFILL_MAX_TRADES", int, 100_000)
# Gaps waiting for the backfill worker; more are abandoned (counted and logged).
INGEST_BACKFILL_QUEUE: int = _setting("INGEST_BACKFILL_QUEUE", int, 1000)
# A symbol without trades for this many seconds is probed over REST for trades after its last id (then twice as
# long each time nothing is found, up to 5 minutes): a gap at a quiet symbol's tail is filled without waiting for
# its next trade. 0 turns it off.
INGEST_QUIET_PROBE_S: float = _setting("INGEST_QUIET_PROBE_S", float, 10.0)
if INGEST_QUIET_PROBE_S < 0:
    raise ImproperlyConfigured("INGEST_QUIET_PROBE_S: must not be negative")
# Seconds between two REST backfill requests of one ingest process; unset: the exchange's published public limit
# (Coinbase 0.1 s, Kraken 1 s; Binance is paced by its request weight). Rate-limit answers are backed off anyway.
INGEST_BACKFILL_MIN_INTERVAL_S: float | None = (
    _setting("INGEST_BACKFILL_MIN_INTERVAL_S", float, None) if env.str("INGEST_BACKFILL_MIN_INTERVAL_S", "") else None
)
if INGEST_BACKFILL_MIN_INTERVAL_S is not None and not 0 <= INGEST_BACKFILL_MIN_INTERVAL_S <= 60:
    raise ImproperlyConfigured("INGEST_BACKFILL_MIN_INTERVAL_S: must be between 0 and 60")
for _name in (
    "INGEST_BUFFER_TRADES",
    "INGEST_BUFFER_BYTES",
    "INGEST_DELIVERY_TIMEOUT_MS",
    "INGEST_BACKFILL_MAX_TRADES",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}: must be at least 1")
if INGEST_BACKFILL_QUEUE < 1:
    raise ImproperlyConfigured("INGEST_BACKFILL_QUEUE: must be at least 1")
if INGEST_SHUTDOWN_TIMEOUT < 0:
    raise ImproperlyConfigured("INGEST_SHUTDOWN_TIMEOUT: must not be negative")

# --------------------------------------------------------------------------------------------- price prediction
# Trained models (joblib files), one per PredictionModel row (docs/PREDICTION.md).
PREDICTION_ARTIFACT_DIR: Path = Path(_setting("PREDICTION_ARTIFACT_DIR", str, str(BASE_DIR / ".cache" / "prediction")))
# The series the beat schedule retrains (and live inference predicts), as exchange:symbol:interval.
PREDICTION_SERIES: list[str] = _setting("PREDICTION_SERIES", list, ["binance:BTCUSDT:1h"])
# Retraining: a crontab "minute hour day-of-month month day-of-week" in UTC; empty disables it.
PREDICTION_RETRAIN_CRON: str = _setting("PREDICTION_RETRAIN_CRON", str, "17 3 * * 0")
# Days of stored candles a scheduled retraining uses (up to yesterday).
PREDICTION_TRAIN_DAYS: int = _setting("PREDICTION_TRAIN_DAYS", int, 1700)
# Long when P(up) is above this (the trading evaluation of the out-of-sample signals).
PREDICTION_THRESHOLD: float = _setting("PREDICTION_THRESHOLD", float, 0.5)
# How many of the latest scored live predictions the realised accuracy covers.
PREDICTION_LIVE_WINDOW: int = _setting("PREDICTION_LIVE_WINDOW", int, 100)
if not 0 < PREDICTION_THRESHOLD < 1:
    raise ImproperlyConfigured("PREDICTION_THRESHOLD: must be between 0 and 1")
if PREDICTION_TRAIN_DAYS < 30 or PREDICTION_LIVE_WINDOW < 1:
    raise ImproperlyConfigured("PREDICTION_TRAIN_DAYS must be >= 30 and PREDICTION_LIVE_WINDOW >= 1")

# --------------------------------------------------------------------------------------------- analytics
WHALE_THRESHOLD_USD: Decimal = _setting("WHALE_THRESHOLD_USD", Decimal, Decimal("100000"))
# 0 or less would raise an alert on every trade: refused, like a retention that would empty the trade table.
if not WHALE_THRESHOLD_USD.is_finite() or WHALE_THRESHOLD_USD <= 0:
    raise ImproperlyConfigured(f"WHALE_THRESHOLD_USD: must be a number greater than 0, got {WHALE_THRESHOLD_USD}")
TRADE_RETENTION_DAYS: int = _setting("TRADE_RETENTION_DAYS", int, 30)
# The trades table's partitions (analytics/partitions.py): days per partition, and how many days ahead the beat
# task keeps them made. Retention drops whole partitions, so it keeps up to one partition more than the days above.
TRADE_PARTITION_DAYS: int = _setting("TRADE_PARTITION_DAYS", int, 1)
TRADE_PARTITIONS_AHEAD: int = _setting("TRADE_PARTITIONS_AHEAD", int, 3)
INDICATOR_MA_PERIODS: list[int] = _setting("INDICATOR_MA_PERIODS", list, ["7", "25", "99"])
try:
    INDICATOR_MA_PERIODS = [int(p) for p in INDICATOR_MA_PERIODS]
except ValueError as _exc:
    raise ImproperlyConfigured(f"INDICATOR_MA_PERIODS: expected comma-separated integers ({_exc})") from _exc
if any(p < 1 for p in INDICATOR_MA_PERIODS):
    raise ImproperlyConfigured("INDICATOR_MA_PERIODS: every period must be at least 1")
# A hole of more than this many missing bars between consecutive stored candles (an outage longer than the REST
# backfill, live candles resuming years after the imported history, two archive ranges months apart) restarts every
# indicator's warm-up, live and imported, in backtests and in the prediction features (analytics/segments.py).
INDICATOR_MAX_GAP_BARS: int = _setting("INDICATOR_MAX_GAP_BARS", int, 24)
if INDICATOR_MAX_GAP_BARS < 1:
    raise ImproperlyConfigured(f"INDICATOR_MAX_GAP_BARS: must be at least 1, got {INDICATOR_MAX_GAP_BARS}")
# While a stats refresh for a symbol was sent within this many seconds, batches skip sending another.
STATS_COALESCE_SECONDS: float = _setting("STATS_COALESCE_SECONDS", float, 1.0)
# At most one "candles" push per symbol per this many seconds (plus one trailing push of the latest candles).
CANDLES_PUSH_INTERVAL: float = _setting("CANDLES_PUSH_INTERVAL", float, 0.25)
# Rows deleted per statement by the retention task (bounded so it never holds long locks).
RETENTION_BATCH_SIZE: int = _setting("RETENTION_BATCH_SIZE", int, 10000)
ANALYTICS_TASK_MAX_RETRIES: int = _setting("ANALYTICS_TASK_MAX_RETRIES", int, 8)
# A worker consuming the analytics queue recomputes this many minutes (of trade time, up to each market's last
# trade) of every market's candles when it starts: a message it was taking when its predecessor was SIGKILLed can be
# lost (see analytics/apps.py). 0: never.
CANDLE_RECONCILE_MINUTES: int = _setting("CANDLE_RECONCILE_MINUTES", int, 15)
for _name, _value, _least in (
    ("CANDLE_RECONCILE_MINUTES", CANDLE_RECONCILE_MINUTES, 0),
    ("STATS_COALESCE_SECONDS", STATS_COALESCE_SECONDS, 0),
    ("CANDLES_PUSH_INTERVAL", CANDLES_PUSH_INTERVAL, 0),
    ("RETENTION_BATCH_SIZE", RETENTION_BATCH_SIZE, 1),
    ("ANALYTICS_TASK_MAX_RETRIES", ANALYTICS_TASK_MAX_RETRIES, 0),
    ("TRADE_RETENTION_DAYS", TRADE_RETENTION_DAYS, 1),
    ("TRADE_PARTITION_DAYS", TRADE_PARTITION_DAYS, 1),
    ("TRADE_PARTITIONS_AHEAD", TRADE_PARTITIONS_AHEAD, 1),
    ("DATABASE_CONN_MAX_AGE", _db["CONN_MAX_AGE"], 0),
    ("DATABASE_WEB_STATEMENT_TIMEOUT_MS", DATABASE_WEB_STATEMENT_TIMEOUT_MS, 0),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name}: must be at least {_least}, got {_value}")

# --------------------------------------------------------------------------------------------- dashboard, accounts
DASHBOARD_LOGIN_REQUIRED: bool = _setting("DASHBOARD_LOGIN_REQUIRED", bool, not DEBUG)
# The explicit opt-in for a production dashboard without login (refused otherwise): anonymous visitors may read the
# pages, the API and the sockets, and every write (starting a backtest) still needs a signed-in user.
DASHBOARD_PUBLIC_READONLY: bool = _setting("DASHBOARD_PUBLIC_READONLY", bool, False)
ALERT_WEBHOOK_ALLOW_PRIVATE: bool = _setting("ALERT_WEBHOOK_ALLOW_PRIVATE", bool, False)
# Ports a webhook URL may name (Slack, Discord and most receivers use 443).
ALERT_WEBHOOK_ALLOWED_PORTS: list[int] = _setting("ALERT_WEBHOOK_ALLOWED_PORTS", list, ["80", "443"])
try:
    ALERT_WEBHOOK_ALLOWED_PORTS = [int(p) for p in ALERT_WEBHOOK_ALLOWED_PORTS]
except ValueError as _exc:
    raise ImproperlyConfigured(f"ALERT_WEBHOOK_ALLOWED_PORTS: expected comma-separated port numbers ({_exc})") from _exc
if not ALERT_WEBHOOK_ALLOWED_PORTS or any(not 1 <= p <= 65535 for p in ALERT_WEBHOOK_ALLOWED_PORTS):
    raise ImproperlyConfigured("ALERT_WEBHOOK_ALLOWED_PORTS: every port must be in 1..65535")
# Alert rules one user may have (the API answers 429 beyond it).
ALERTS_MAX_RULES_PER_USER: int = _setting("ALERTS_MAX_RULES_PER_USER", int, 100)
if ALERTS_MAX_RULES_PER_USER < 1:
    raise ImproperlyConfigured(f"ALERTS_MAX_RULES_PER_USER: must be at least 1, got {ALERTS_MAX_RULES_PER_USER}")
# Accounts (docs/ACCOUNTS.md): self sign-up is open in development only unless set (fail closed); staff invitations
# work either way. Invitation and sign-up links expire; quotas bound what one user may keep.
ACCOUNTS_SIGNUP_OPEN: bool = _setting("ACCOUNTS_SIGNUP_OPEN", bool, DEBUG)
ACCOUNTS_INVITATION_DAYS: int = _setting("ACCOUNTS_INVITATION_DAYS", int, 7)
ACCOUNTS_SIGNUP_LINK_HOURS: int = _setting("ACCOUNTS_SIGNUP_LINK_HOURS", int, 24)
ACCOUNTS_MAX_WATCHLIST: int = _setting("ACCOUNTS_MAX_WATCHLIST", int, 50)
ACCOUNTS_MAX_API_TOKENS: int = _setting("ACCOUNTS_MAX_API_TOKENS", int, 10)
ACCOUNTS_TOKEN_MAX_DAYS: int = _setting("ACCOUNTS_TOKEN_MAX_DAYS", int, 365)
for _name, _value, _least, _most in (
    ("ACCOUNTS_INVITATION_DAYS", ACCOUNTS_INVITATION_DAYS, 1, 90),
    ("ACCOUNTS_SIGNUP_LINK_HOURS", ACCOUNTS_SIGNUP_LINK_HOURS, 1, 168),
    ("ACCOUNTS_MAX_WATCHLIST", ACCOUNTS_MAX_WATCHLIST, 1, 1000),
    ("ACCOUNTS_MAX_API_TOKENS", ACCOUNTS_MAX_API_TOKENS, 1, 1000),
    ("ACCOUNTS_TOKEN_MAX_DAYS", ACCOUNTS_TOKEN_MAX_DAYS, 1, 3650),
):
    if not _least <= _value <= _most:
        raise ImproperlyConfigured(f"{_name}: must be between {_least} and {_most}, got {_value}")
# Seconds a staff or superuser session may stay idle before its next request is logged out (the admin asks for the
# password again); other users keep SESSION_COOKIE_AGE (two weeks). accounts/staff_sessions.py.
STAFF_SESSION_IDLE_SECONDS: int = _setting("STAFF_SESSION_IDLE_SECONDS", int, 1800)
if not 60 <= STAFF_SESSION_IDLE_SECONDS <= 86400:
    raise ImproperlyConfigured(
        f"STAFF_SESSION_IDLE_SECONDS: must be between 60 and 86400, got {STAFF_SESSION_IDLE_SECONDS}"
    )
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

# Reverse proxies in front of daphne that append to X-Forwarded-For (and set X-Forwarded-Proto). 0, the default:
# the app faces clients directly, so those headers are the client's own words and are ignored.
TRUSTED_PROXY_COUNT: int = _setting("DJANGO_TRUSTED_PROXY_COUNT", int, 0)
if not 0 <= TRUSTED_PROXY_COUNT <= 5:
    raise ImproperlyConfigured(f"DJANGO_TRUSTED_PROXY_COUNT: must be in 0..5, got {TRUSTED_PROXY_COUNT}")

# Login lockout (django-axes): after AXES_FAILURE_LIMIT failures for one username from one address, that pair is
# locked out for AXES_COOLOFF_MINUTES (HTTP 429), on /accounts/login/ and /admin/login/ alike; after
# AXES_ADDRESS_FAILURE_LIMIT failures from one address whatever the usernames, that address is locked out for every
# name (cryptoproject/lockout.py). An IPv6 client counts by its /64 (cryptoproject.security.lockout_address).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.CaseInsensitiveModelBackend",  # usernames (e-mail addresses) in any case
]
AXES_FAILURE_LIMIT: int = _setting("AXES_FAILURE_LIMIT", int, 5)
AXES_COOLOFF_MINUTES: int = _setting("AXES_COOLOFF_MINUTES", int, 15)
AXES_ADDRESS_FAILURE_LIMIT: int = _setting("AXES_ADDRESS_FAILURE_LIMIT", int, 30)
for _name, _value in (("AXES_FAILURE_LIMIT", AXES_FAILURE_LIMIT), ("AXES_COOLOFF_MINUTES", AXES_COOLOFF_MINUTES)):
    if _value < 1:
        raise ImproperlyConfigured(f"{_name}: must be at least 1, got {_value}")
# Higher than the pair's limit: an office or a carrier NAT shares one address among many honest users.
if AXES_ADDRESS_FAILURE_LIMIT < AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured(
        f"AXES_ADDRESS_FAILURE_LIMIT: must be at least AXES_FAILURE_LIMIT ({AXES_FAILURE_LIMIT}), "
        f"got {AXES_ADDRESS_FAILURE_LIMIT}"
    )
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "cryptoproject.security.lockout_address"
AXES_USERNAME_CALLABLE = "cryptoproject.lockout.lockout_username"  # case variants: one count
AXES_HANDLER = "cryptoproject.lockout.AddressLockoutHandler"
AXES_VERBOSE = False

EMAIL_BACKEND: str = env.str(
    "DJANGO_EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST: str = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT: int = _setting("EMAIL_PORT", int, 25)
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="alerts@localhost")

# Backtests: bars one run may read (the range's days times the bars a day of its interval holds), runs one user may
# have waiting or running at once (anonymous visitors of an open dashboard share one budget), and runs one user may
# start per period (a DRF rate; per address when anonymous). Runs go to their own Celery queue (backtest).
BACKTEST_MAX_BARS: int = _setting("BACKTEST_MAX_BARS", int, 500_000)
BACKTEST_MAX_CONCURRENT_PER_USER: int = _setting("BACKTEST_MAX_CONCURRENT_PER_USER", int, 3)
API_THROTTLE_BACKTEST: str = env.str("API_THROTTLE_BACKTEST", default="10/min")
if not re.fullmatch(r"[0-9]+/[smhd][a-z]*", API_THROTTLE_BACKTEST):  # DRF's rate form, checked before a request
    raise ImproperlyConfigured(f"API_THROTTLE_BACKTEST: expected a rate like 10/min, got {API_THROTTLE_BACKTEST!r}")
for _name, _value in (
    ("BACKTEST_MAX_BARS", BACKTEST_MAX_BARS),
    ("BACKTEST_MAX_CONCURRENT_PER_USER", BACKTEST_MAX_CONCURRENT_PER_USER),
):
    if _value < 1:
        raise ImproperlyConfigured(f"{_name}: must be at least 1, got {_value}")
# --------------------------------------------------------------------------------------------- notifications (outbox)
# docs/ALERTS.md. Every attempt has a TOTAL deadline (connect + send + read); the sender gives up on a
# delivery after NOTIFY_MAX_ATTEMPTS attempts (dead, shown to its owner).
NOTIFY_ATTEMPT_DEADLINE_SECONDS: float = _setting("NOTIFY_ATTEMPT_DEADLINE_SECONDS", float, 10.0)
NOTIFY_MAX_ATTEMPTS: int = _setting("NOTIFY_MAX_ATTEMPTS", int, 10)
NOTIFY_BACKOFF_BASE_SECONDS: float = _setting("NOTIFY_BACKOFF_BASE_SECONDS", float, 2.0)
NOTIFY_BACKOFF_MAX_SECONDS: float = _setting("NOTIFY_BACKOFF_MAX_SECONDS", float, 900.0)
NOTIFY_BATCH_SIZE: int = _setting("NOTIFY_BATCH_SIZE", int, 32)
NOTIFY_SEND_THREADS: int = _setting("NOTIFY_SEND_THREADS", int, 8)
NOTIFY_RUN_SECONDS: float = _setting("NOTIFY_RUN_SECONDS", float, 50.0)
NOTIFY_BREAKER_FAILURES: int = _setting("NOTIFY_BREAKER_FAILURES", int, 5)
NOTIFY_BREAKER_COOLDOWN_SECONDS: float = _setting("NOTIFY_BREAKER_COOLDOWN_SECONDS", float, 30.0)
# Sent and dead deliveries older than this are deleted by the hourly beat task (alerts are kept).
NOTIFICATIONS_DELIVERY_RETENTION_DAYS: int = _setting("NOTIFICATIONS_DELIVERY_RETENTION_DAYS", int, 30)
for _name, _value, _least in (
    ("NOTIFY_ATTEMPT_DEADLINE_SECONDS", NOTIFY_ATTEMPT_DEADLINE_SECONDS, 0.5),
    ("NOTIFY_MAX_ATTEMPTS", NOTIFY_MAX_ATTEMPTS, 1),
    ("NOTIFY_BACKOFF_BASE_SECONDS", NOTIFY_BACKOFF_BASE_SECONDS, 0.1),
    ("NOTIFY_BACKOFF_MAX_SECONDS", NOTIFY_BACKOFF_MAX_SECONDS, NOTIFY_BACKOFF_BASE_SECONDS),
    ("NOTIFY_BATCH_SIZE", NOTIFY_BATCH_SIZE, 1),
    ("NOTIFY_SEND_THREADS", NOTIFY_SEND_THREADS, 1),
    ("NOTIFY_BREAKER_FAILURES", NOTIFY_BREAKER_FAILURES, 1),
    ("NOTIFY_BREAKER_COOLDOWN_SECONDS", NOTIFY_BREAKER_COOLDOWN_SECONDS, 1.0),
    ("NOTIFICATIONS_DELIVERY_RETENTION_DAYS", NOTIFICATIONS_DELIVERY_RETENTION_DAYS, 1),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name}: must be at least {_least}, got {_value}")
# One sender run must end well inside Celery's soft limit, its last attempts included.
if NOTIFY_RUN_SECONDS + 2 * NOTIFY_ATTEMPT_DEADLINE_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "NOTIFY_RUN_SECONDS + 2 x NOTIFY_ATTEMPT_DEADLINE_SECONDS must stay below CELERY_TASK_SOFT_TIME_LIMIT"
    )
EMAIL_TIMEOUT: float = _setting("EMAIL_TIMEOUT", float, 10.0)
# SMS through Twilio's Programmable Messaging API; Telegram through the Bot API. Empty credentials: the channel fails
# its deliveries (permanent, "not configured"). The API URLs may point at the local stand-ins (manage.py
# run_standins) only over http with NOTIFY_ALLOW_INSECURE_APIS=true, or with DJANGO_DEBUG=true.
TWILIO_ACCOUNT_SID: str = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN: str = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM: str = env.str("TWILIO_FROM", default="")
TWILIO_API_URL: str = env.str("TWILIO_API_URL", default="https://api.twilio.com").rstrip("/")
TELEGRAM_BOT_TOKEN: str = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_API_URL: str = env.str("TELEGRAM_API_URL", default="https://api.telegram.org").rstrip("/")
NOTIFY_ALLOW_INSECURE_APIS: bool = _setting("NOTIFY_ALLOW_INSECURE_APIS", bool, False)
for _name, _url in (("TWILIO_API_URL", TWILIO_API_URL), ("TELEGRAM_API_URL", TELEGRAM_API_URL)):
    if not _url.startswith(("https://", "http://")):
        raise ImproperlyConfigured(f"{_name}: expected an http(s) URL, got {_url!r}")
    if _url.startswith("http://") and not (DEBUG or NOTIFY_ALLOW_INSECURE_APIS):
        raise ImproperlyConfigured(
            f"{_name}={_url} is not https: credentials would cross the network in clear text "
            "(NOTIFY_ALLOW_INSECURE_APIS=true allows it for the local stand-ins)"
        )

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "accounts.authentication.ApiTokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # DRF's throttles, failing open (and logging) when the cache (Redis) is down: the API degrades, never 500s.
    "DEFAULT_THROTTLE_CLASSES": [
        "dashboard.api.throttling.AnonRateThrottle",
        "dashboard.api.throttling.UserRateThrottle",
    ],
    # Client identity for anonymous throttling: REMOTE_ADDR unless proxies are trusted (DJANGO_TRUSTED_PROXY_COUNT).
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
        "backtest_start": API_THROTTLE_BACKTEST,
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cryptoproject market-data API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI / Redoc from the pinned sidecar package's static files: the docs render offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
        # JSON, not Django's pickle: whoever can write to Redis must not run code in the web processes by it
        # (throttle histories and claims are JSON). The prefix keeps pickled entries of earlier releases unread.
        "OPTIONS": {"serializer": "cryptoproject.cache_serializer.JSONSerializer"},
        "KEY_PREFIX": "json",
    }
}

# --------------------------------------------------------------------------------------------- i18n, static
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".stack" / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --------------------------------------------------------------------------------------------- production security
# Error reports (debug page, admin mails) hide every URL, DSN and credential setting.
DEFAULT_EXCEPTION_REPORTER_FILTER = "cryptoproject.security.SensitiveSettingsFilter"
# X-Forwarded-Proto is believed only from a trusted proxy: otherwise any client could claim https.
if TRUSTED_PROXY_COUNT > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = _setting("DJANGO_SECURE_SSL_REDIRECT", bool, True)
    SECURE_HSTS_SECONDS = _setting("DJANGO_SECURE_HSTS_SECONDS", int, 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

_problems = production_problems(
    debug=DEBUG,
    secret_key=SECRET_KEY,
    allowed_hosts=ALLOWED_HOSTS,
    webhook_allow_private=ALERT_WEBHOOK_ALLOW_PRIVATE,
    email_backend=EMAIL_BACKEND,
    login_required=DASHBOARD_LOGIN_REQUIRED,
    public_readonly=DASHBOARD_PUBLIC_READONLY,
)
if _problems:
    raise ImproperlyConfigured("refusing to start: " + "; ".join(_problems))

# --------------------------------------------------------------------------------------------- logging
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: {LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
KAFKA_CLIENT_LOG_LEVEL: str = env.str("KAFKA_CLIENT_LOG_LEVEL", default="CRITICAL").upper()
LOGGING = logging_config(LOG_LEVEL, KAFKA_CLIENT_LOG_LEVEL)
