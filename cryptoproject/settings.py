"""Django settings, read from the environment (12-factor).

Every variable is listed in ``.env.example``. The defaults match the local stack that ``make services`` starts;
with ``DJANGO_DEBUG=false`` (production) there is no default secret key and the security settings are on.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from cryptoproject.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file at the repository root is read when present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _setting(name: str, cast: Any, default: Any) -> Any:
    """Read one variable, naming it in the error when its value does not parse."""
    try:
        return env(name, cast=cast, default=default)
    except (ValueError, TypeError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name}: invalid value {env.str(name, default='')!r} ({exc})") from exc


# --------------------------------------------------------------------------------------------- core
DEBUG: bool = _setting("DJANGO_DEBUG", bool, True)
_DEV_SECRET = "django-insecure-local-development-key-only-for-make-demo-and-tests"
SECRET_KEY: str = env.str("DJANGO_SECRET_KEY", default="" if not DEBUG else _DEV_SECRET)
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false (production).")
ALLOWED_HOSTS: list[str] = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "ingest",
    "analytics",
    "history",
    "backtest",
    "prediction",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
            ],
        },
    },
]

# --------------------------------------------------------------------------------------------- database
DATABASE_URL: str = env.str("DATABASE_URL", default="postgres://crypto:crypto@127.0.0.1:55432/crypto")
try:
    _db = environ.Env.db_url_config(DATABASE_URL)
except (ValueError, KeyError) as _exc:
    raise ImproperlyConfigured(f"DATABASE_URL: cannot parse {DATABASE_URL!r} ({_exc})") from _exc
if _db.get("ENGINE") != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...); the project needs it.")
_db.setdefault("OPTIONS", {})
# Fail fast when the server is unreachable instead of hanging on TCP retries.
_db["OPTIONS"].setdefault("connect_timeout", _setting("DATABASE_CONNECT_TIMEOUT", int, 5))
_db["CONN_MAX_AGE"] = _setting("DATABASE_CONN_MAX_AGE", int, 60)
_db["CONN_HEALTH_CHECKS"] = True
# Parallel test runs (several developers or CI jobs on one server) need distinct test databases.
_db["TEST"] = {"NAME": env.str("DJANGO_TEST_DB_NAME", default=f"test_{_db.get('NAME', 'crypto')}")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --------------------------------------------------------------------------------------------- Redis, Celery, Channels
REDIS_URL: str = env.str("REDIS_URL", default="redis://127.0.0.1:56379/0")
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
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Alert detection shares the alerts queue with delivery, so a candle backlog never delays an alert.
    "analytics.tasks.detect_whales": {"queue": "alerts"},
    "analytics.tasks.*": {"queue": "analytics"},
    "backtest.tasks.*": {"queue": "analytics"},
    # Training and inference on their own queue: a retraining never delays a candle update.
    "prediction.tasks.*": {"queue": "ml"},
    "dashboard.tasks.*": {"queue": "alerts"},
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
# Replicas of the project's topics: 1 on a single broker; 3 on a production cluster (with min.insync.replicas=2 on
# the brokers, an acknowledged trade survives the loss of any one broker).
KAFKA_REPLICATION_FACTOR: int = _setting("KAFKA_REPLICATION_FACTOR", int, 1)
if KAFKA_REPLICATION_FACTOR < 1:
    raise ImproperlyConfigured(f"KAFKA_REPLICATION_FACTOR: must be at least 1, got {KAFKA_REPLICATION_FACTOR}")
KAFKA_CONSUMER_GROUP: str = env.str("KAFKA_CONSUMER_GROUP", default="analytics")

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
KRAKEN_WS_URL: str = env.str("KRAKEN_WS_URL", default="wss://ws.kraken.com/v2")

# --------------------------------------------------------------------------------------------- history import
# Binance's public data archive (manage.py import_history); the demo and the tests use a local mirror instead.
BINANCE_DATA_URL: str = env.str("BINANCE_DATA_URL", default="https://data.binance.vision")
# Downloads land here in the archive's layout (verified zips, .part files of interrupted downloads).
HISTORY_CACHE_DIR: Path = Path(_setting("HISTORY_CACHE_DIR", str, str(BASE_DIR / ".cache" / "history")))
# Files downloaded at the same time (the archive is a CDN; a handful is polite and saturates a normal link).
HISTORY_DOWNLOAD_CONCURRENCY: int = _setting("HISTORY_DOWNLOAD_CONCURRENCY", int, 4)
if HISTORY_DOWNLOAD_CONCURRENCY < 1:
    raise ImproperlyConfigured("HISTORY_DOWNLOAD_CONCURRENCY: must be at least 1")

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
TRADE_RETENTION_DAYS: int = _setting("TRADE_RETENTION_DAYS", int, 30)
INDICATOR_MA_PERIODS: list[int] = _setting("INDICATOR_MA_PERIODS", list, ["7", "25", "99"])
try:
    INDICATOR_MA_PERIODS = [int(p) for p in INDICATOR_MA_PERIODS]
except ValueError as _exc:
    raise ImproperlyConfigured(f"INDICATOR_MA_PERIODS: expected comma-separated integers ({_exc})") from _exc
if any(p < 1 for p in INDICATOR_MA_PERIODS):
    raise ImproperlyConfigured("INDICATOR_MA_PERIODS: every period must be at least 1")
# While a stats refresh for a symbol was sent within this many seconds, batches skip sending another.
STATS_COALESCE_SECONDS: float = _setting("STATS_COALESCE_SECONDS", float, 1.0)
# At most one "candles" push per symbol per this many seconds (plus one trailing push of the latest candles).
CANDLES_PUSH_INTERVAL: float = _setting("CANDLES_PUSH_INTERVAL", float, 0.25)
# Rows deleted per statement by the retention task (bounded so it never holds long locks).
RETENTION_BATCH_SIZE: int = _setting("RETENTION_BATCH_SIZE", int, 10000)
ANALYTICS_TASK_MAX_RETRIES: int = _setting("ANALYTICS_TASK_MAX_RETRIES", int, 8)
for _name, _value, _least in (
    ("STATS_COALESCE_SECONDS", STATS_COALESCE_SECONDS, 0),
    ("CANDLES_PUSH_INTERVAL", CANDLES_PUSH_INTERVAL, 0),
    ("RETENTION_BATCH_SIZE", RETENTION_BATCH_SIZE, 1),
    ("ANALYTICS_TASK_MAX_RETRIES", ANALYTICS_TASK_MAX_RETRIES, 0),
):
    if _value < _least:
        raise ImproperlyConfigured(f"{_name}: must be at least {_least}, got {_value}")

# --------------------------------------------------------------------------------------------- dashboard, accounts
DASHBOARD_LOGIN_REQUIRED: bool = _setting("DASHBOARD_LOGIN_REQUIRED", bool, not DEBUG)
ALERT_WEBHOOK_ALLOW_PRIVATE: bool = _setting("ALERT_WEBHOOK_ALLOW_PRIVATE", bool, False)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:overview"
LOGOUT_REDIRECT_URL = "login"

EMAIL_BACKEND: str = env.str(
    "DJANGO_EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST: str = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT: int = _setting("EMAIL_PORT", int, 25)
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="alerts@localhost")

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
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
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _setting("DJANGO_SECURE_SSL_REDIRECT", bool, True)
    SECURE_HSTS_SECONDS = _setting("DJANGO_SECURE_HSTS_SECONDS", int, 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --------------------------------------------------------------------------------------------- logging
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: {LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
KAFKA_CLIENT_LOG_LEVEL: str = env.str("KAFKA_CLIENT_LOG_LEVEL", default="CRITICAL").upper()
LOGGING = logging_config(LOG_LEVEL, KAFKA_CLIENT_LOG_LEVEL)
