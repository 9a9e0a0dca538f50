"""Aegis settings: one module, driven by the environment.

The database is PostgreSQL, always: the ledger's guarantees rest on its row locks, SKIP LOCKED
and LISTEN/NOTIFY (`make demo`, `make run` and `make test` start a throw-away one). Without
REDIS_URL, Aegis runs on the *embedded default*: tasks executed in-process and a local-memory
cache. Production (AEGIS_ENV=production) refuses to start without a secret key, DATABASE_URL
and REDIS_URL.
"""

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

AEGIS_ENV = env.str("AEGIS_ENV", default="development")
if AEGIS_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("AEGIS_ENV must be 'development' or 'production'.")
PRODUCTION = AEGIS_ENV == "production"

DEBUG = env.bool("DEBUG", default=not PRODUCTION)

if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "Set SECRET_KEY to a random string of at least 50 characters in production."
        )
else:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-never-use-in-production")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "desk",  # before the admin: its admin/base_site.html links the desk and shows a HALT
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "market",
    "execution",
    "trading",
    "picks",
    "demo",  # `manage.py demo`
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "aegis.middleware.DisplayTimeZoneMiddleware",
]

ROOT_URLCONF = "aegis.urls"
WSGI_APPLICATION = "aegis.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "desk.context.trading_banner",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# DATABASE_URL points at PostgreSQL (directly or through PgBouncer); DATABASE_DIRECT_URL is the
# session-capable connection that LISTEN needs, never through a transaction pooler.
if PRODUCTION and "DATABASE_URL" not in env:
    raise ImproperlyConfigured("Set DATABASE_URL to a PostgreSQL URL in production.")
# Outside production, a local server's `aegis` database when nothing is set.
DATABASES = {"default": env.db("DATABASE_URL", default="postgres://aegis@127.0.0.1:5432/aegis")}
DATABASE_DIRECT_URL = env.str("DATABASE_DIRECT_URL", default=env.str("DATABASE_URL", default=""))

_default_db = DATABASES["default"]
if _default_db["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must point at PostgreSQL (postgres://...): the ledger's row locks, "
        "SKIP LOCKED and LISTEN/NOTIFY have no equivalent elsewhere."
    )
_default_db.setdefault("OPTIONS", {})
# The new-intent trigger skips connections named "aegis": their intents are enqueued on commit.
_default_db["OPTIONS"].setdefault("application_name", "aegis")
_default_db["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A round trip before each request or task's first query (~0.5 ms here, measured). The
# execution worker turns it off (compose): its tasks retry on a broken connection instead,
# and the connection is dropped after the failed task.
_default_db["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_HEALTH_CHECKS", default=True)
# How long one statement may wait for a lock, and run, before PostgreSQL cancels it
# (0: PostgreSQL's own, no limit). For the hot processes (compose sets them on pricesync
# and worker-execution): a lock left held by a stuck session costs a tick, an intent or
# a route this long, and then an error that is logged and retried, instead of the one
# thread that serves them all. Sent as connection options, which PgBouncer refuses: on
# a pooled connection, set them on the role instead (ALTER ROLE … SET lock_timeout).
_pooled = env.str("DATABASE_POOLING", default="") == "pgbouncer"
_timeouts = {
    name: env.int(variable, default=0)
    for name, variable in (
        ("lock_timeout", "DATABASE_LOCK_TIMEOUT_MS"),
        ("statement_timeout", "DATABASE_STATEMENT_TIMEOUT_MS"),
    )
}
if any(ms < 0 for ms in _timeouts.values()):
    raise ImproperlyConfigured(
        "DATABASE_LOCK_TIMEOUT_MS and DATABASE_STATEMENT_TIMEOUT_MS are milliseconds, 0 or more."
    )
_timeouts = {name: ms for name, ms in _timeouts.items() if ms}
if _timeouts and _pooled:
    raise ImproperlyConfigured(
        "DATABASE_LOCK_TIMEOUT_MS and DATABASE_STATEMENT_TIMEOUT_MS need a direct "
        "connection (PgBouncer refuses connection options): set them on the role "
        "instead, ALTER ROLE … SET lock_timeout = …"
    )
if _timeouts:
    _default_db["OPTIONS"]["options"] = " ".join(
        [_default_db["OPTIONS"].get("options", "")]
        + [f"-c {name}={ms}" for name, ms in _timeouts.items()]
    ).strip()
if _pooled:
    # PgBouncer in transaction mode: no server-side cursors, no prepared statements.
    _default_db["DISABLE_SERVER_SIDE_CURSORS"] = True
    _default_db["OPTIONS"]["prepare_threshold"] = None
else:
    # A direct connection prepares a statement bound server-side (core.rows.bound_cursor,
    # the hot paths' one-statement writes) once it has run this many times: PostgreSQL
    # then skips its parse and, with a generic plan, its planning. Django's other queries
    # bind client-side and are never prepared.
    _default_db["OPTIONS"].setdefault(
        "prepare_threshold", env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and cache -----------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("Set REDIS_URL in production.")
EMBEDDED = not REDIS_URL

CACHES: dict[str, dict[str, Any]]
if EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CACHES = {
        "default": {
            # Django's RedisCache, keeping its redis.Redis clients (aegis/cache.py).
            "BACKEND": "aegis.cache.KeptClientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aegis",
            "TIMEOUT": 300,
            # Every call bounded well below redis-py's own default of 5 s, which a Redis that
            # accepts connections and never answers would cost each tick, route and request.
            "OPTIONS": dict.fromkeys(
                ("socket_timeout", "socket_connect_timeout"),
                env.float("AEGIS_CACHE_TIMEOUT_S", default=0.5),
            ),
        }
    }
# Every Redis client Aegis makes (core/redis_clients.py): connect within this long, each answer
# within this long (plus a blocking read's own wait), else a RedisError and the caller's local
# fallback; after a failure, Redis is asked again this often, not on every call.
REDIS_CONNECT_TIMEOUT_S = env.float("AEGIS_REDIS_CONNECT_TIMEOUT_S", default=0.5)
REDIS_TIMEOUT_S = env.float("AEGIS_REDIS_TIMEOUT_S", default=0.5)
REDIS_RETRY_S = env.float("AEGIS_REDIS_RETRY_S", default=2.0)
# Values are cached as JSON, never pickled (aegis/cache.py): beyond JSON's own types, tuples,
# Decimals, dates, bytes and arrays, only these classes are carried, rebuilt from their data.
CACHE_JSON_TYPES = [
    "market.prices.Px",  # trading:px:<symbol>
    "trading.hot.Book",  # trading:book, trading:book:<symbol>
    "trading.hot.Profiles",  # trading:profiles
    "trading.rules.Rules",
    "trading.rules.Tier",
    "picks.models.PickSource",  # picks:source:<digest> (picks/auth.py)
]

# --- Celery (read by aegis.celery with namespace CELERY) --------------------------------------
CELERY_BROKER_URL = REDIS_URL or "memory://"
# The embedded default runs every task in the calling process, after the commit that made it.
CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Short, latency-sensitive tasks: one message at a time per process, so a slow task never holds
# back a queued exit.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "execution.*": {"queue": "execution"},
    "trading.*": {"queue": "trading"},
    "picks.*": {"queue": "picks"},
}
# Every broker call bounded (kombu's Redis transport passes these to redis-py): a Redis that
# stalls costs a publish this long, then an error the caller handles (the sweeps re-enqueue),
# never a thread for good.
BROKER_TIMEOUT_S = env.float("AEGIS_BROKER_TIMEOUT_S", default=5.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": BROKER_TIMEOUT_S,
    "socket_connect_timeout": BROKER_TIMEOUT_S,
}
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT_S
CELERY_REDIS_SOCKET_TIMEOUT = BROKER_TIMEOUT_S
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = BROKER_TIMEOUT_S
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task events cost a Redis publish per task state, on the hot path. Flower switches them on in
# the workers while it runs (its enable_events option), so they are off by default.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("AEGIS_TASK_EVENTS", default=False)
CELERY_TASK_SEND_SENT_EVENT = env.bool("AEGIS_TASK_EVENTS", default=False)
# django-celery-beat's database schedule plus the exit engine's sub-second market cadence.
CELERY_BEAT_SCHEDULER = "trading.beat:ExitCadenceScheduler"
# Milliseconds between exit passes outside the cadence windows (edited in the admin).
TRADING_EXIT_DEFAULT_INTERVAL_MS = env.int("AEGIS_EXIT_DEFAULT_INTERVAL_MS", default=2000)
# A stop-loss, trailing, time or maximum-holding exit still unfilled this many seconds of the
# session after KIS took it is cancelled, and the engine decides again at the current price.
TRADING_EXIT_ORDER_TIMEOUT_S = env.int("AEGIS_EXIT_ORDER_TIMEOUT_S", default=10)
# While the market trades, a held symbol without a price this fresh (from the WebSocket or a REST
# quote) raises the PRICES alert, once per episode: its exits would be decided on an old price.
TRADING_PRICES_STALE_ALERT_S = env.int("AEGIS_PRICES_STALE_ALERT_S", default=60)
# Celery's Django fixup closes every database connection before and after each task unless
# DB_REUSE_MAX is set: a new PostgreSQL connection per task, about 6 ms here, measured. Workers
# keep their connections instead (CONN_MAX_AGE) and check them before each task the way Django
# does before each request (aegis/celery.py).
CELERY_DB_REUSE_MAX = 10**9
CELERY_TIMEZONE = "Asia/Seoul"

# Send every new intent to the broker when its transaction commits. Off only for runs with no
# broker at all.
EXECUTION_AUTO_SUBMIT = env.bool("AEGIS_AUTO_SUBMIT", default=True)
# Send an order only in a phase of the KRX day that takes regular orders (market.calendar): one
# recorded before the close and not sent by then (workers down across it) is withdrawn at its
# claim, never sent for KIS to refuse. Off only where the clock is not the market's (tests that
# send at whatever hour they run, benchmarks).
EXECUTION_MARKET_HOURS = env.bool("AEGIS_MARKET_HOURS", default=True)
# An entry (a buy) whose order has not left this long after its intent was written is withdrawn
# instead of sent late (KIS unreachable, a refused app key): it was decided on the prices of
# then. Exits always go out. 0: entries never expire.
EXECUTION_ENTRY_MAX_AGE_S = env.int("AEGIS_ENTRY_MAX_AGE_S", default=60)
# A limit order still (partly) unfilled this long after KIS took it is cancelled there.
EXECUTION_LIMIT_ORDER_TIMEOUT_S = env.int("AEGIS_LIMIT_ORDER_TIMEOUT_S", default=60)
# Whether unfilled limit orders may be cancelled now (a callable's dotted path, given the
# Asia/Seoul time and the timeout; empty: whenever their timeout has passed). The default counts
# the timeout in continuous trading only: an order placed before the open waits for it, and the
# closing auction's orders wait for the match.
EXECUTION_ORDERS_DUE = env.str("AEGIS_ORDERS_DUE", default="trading.services.limit_orders_due")
# The doorbell (execution/doorbell.py): a committed intent's id goes straight to lanes (threads)
# in the execution worker, one Redis round trip instead of a Celery hop; the execute task
# serves whenever no lane is listening.
EXECUTION_DOORBELL = env.bool("AEGIS_EXECUTION_DOORBELL", default=True)
EXECUTION_DOORBELL_LANES = env.int("AEGIS_EXECUTION_DOORBELL_LANES", default=4)
# Exactly once (docs/exactly-once.md). A queued order payload older than this (by the
# database's clock) is not sent from the queue: the sweep sends its order from the row.
EXECUTION_PAYLOAD_TTL_S = env.int("AEGIS_PAYLOAD_TTL_S", default=120)
# How far apart the hosts' clocks and KIS's may be: an order in flight is matched against KIS's
# daily orders within this of its send (never less than 30 s).
EXECUTION_CLOCK_SKEW_S = max(30, env.int("AEGIS_CLOCK_SKEW_S", default=30))
# How many times one order may be sent when KIS never shows it; then it is rejected and alerted.
EXECUTION_SEND_ATTEMPTS = env.int("AEGIS_SEND_ATTEMPTS", default=3)

# --- KIS (the broker). Secrets only from the environment. --------------------------------------
KIS = {
    # "real", "paper" or "simulator"
    "ENV": env.str("KIS_ENV", default="simulator"),
    # TR IDs and limits of "real" or "paper"; by default real for KIS_ENV=real, else paper.
    "FLAVOUR": env.str("KIS_FLAVOUR", default=""),
    "BASE_URL": env.str("KIS_BASE_URL", default=""),
    "WS_URL": env.str("KIS_WS_URL", default=""),
    "ACCOUNT": env.str("KIS_ACCOUNT", default=""),
    "QUERY_APP_KEY": env.str("KIS_QUERY_APP_KEY", default=""),
    "QUERY_APP_SECRET": env.str("KIS_QUERY_APP_SECRET", default=""),
    "ORDER_APP_KEY": env.str("KIS_ORDER_APP_KEY", default=""),
    "ORDER_APP_SECRET": env.str("KIS_ORDER_APP_SECRET", default=""),
    "HTS_ID": env.str("KIS_HTS_ID", default=""),
    # Requests per second per app key; 0: KIS's documented rate for the flavour.
    "RATE_PER_SECOND": env.int("KIS_RATE_PER_SECOND", default=0),
    # While Redis (the shared window) does not answer, each process sends at most this share
    # of the rate, counted by itself (kis/ratelimit.py).
    "RATE_FALLBACK_SHARE": env.float("KIS_RATE_FALLBACK_SHARE", default=0.25),
    # The circuit breaker around every REST call, one per app key and use (query, order), its
    # state in Redis: this many failures in a row open it; it lets a trial call through after
    # this many seconds.
    "BREAKER_FAIL_MAX": env.int("AEGIS_BREAKER_FAIL_MAX", default=5),
    "BREAKER_RESET_S": env.float("AEGIS_BREAKER_RESET_S", default=30.0),
}

# /metrics on the web process: open on the internal network, or behind this bearer token.
AEGIS_METRICS_TOKEN = env.str("AEGIS_METRICS_TOKEN", default="")

# --- Alerts (execution/alerts.py): every channel optional, secrets only from the environment ----
ALERTS = {
    "SLACK_WEBHOOK_URL": env.str("AEGIS_ALERT_SLACK_WEBHOOK_URL", default=""),
    "EMAIL_TO": env.list("AEGIS_ALERT_EMAIL_TO", default=[]),
    "SMS_WEBHOOK_URL": env.str("AEGIS_ALERT_SMS_WEBHOOK_URL", default=""),
    "SMS_TO": env.list("AEGIS_ALERT_SMS_TO", default=[]),
}
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="aegis@localhost")

# --- Trader notifications (execution/notify/): fills, exits, refused picks, the day's close ----
# The same channels as the alerts' plus Telegram, each opted into per kind; every channel's
# messages paced, delivered from PostgreSQL's outbox by beat's notify.deliver task.
NOTIFY_CHANNELS = ("slack", "email", "sms", "telegram")
NOTIFY_KINDS = ("fill", "exit", "refusals", "close")
NOTIFY = {
    "TELEGRAM_BOT_TOKEN": env.str("AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN", default=""),
    "TELEGRAM_CHAT_ID": env.str("AEGIS_NOTIFY_TELEGRAM_CHAT_ID", default=""),
    "TELEGRAM_API_URL": (
        env.str("AEGIS_NOTIFY_TELEGRAM_API_URL", default="") or "https://api.telegram.org"
    ).rstrip("/"),
    # What each channel is sent: AEGIS_NOTIFY_KINDS_TELEGRAM=fill,exit,refusals,close
    "KINDS": {
        name: env.list(f"AEGIS_NOTIFY_KINDS_{name.upper()}", default=[]) for name in NOTIFY_CHANNELS
    },
    # The least time between two messages on a channel (what is due meanwhile goes together).
    "INTERVAL_S": {
        name: env.float(f"AEGIS_NOTIFY_INTERVAL_S_{name.upper()}", default=1.0)
        for name in NOTIFY_CHANNELS
    },
    # Refused picks are summed up once per this many seconds.
    "REFUSALS_EVERY_S": env.int("AEGIS_NOTIFY_REFUSALS_EVERY_S", default=300),
    # A failed send is tried again after this long, doubled each time up to RETRY_MAX_S.
    "RETRY_S": env.float("AEGIS_NOTIFY_RETRY_S", default=5.0),
    "RETRY_MAX_S": env.float("AEGIS_NOTIFY_RETRY_MAX_S", default=300.0),
}
# What each channel needs before it can be sent anything.
_NOTIFY_NEEDS = {
    "slack": ("AEGIS_ALERT_SLACK_WEBHOOK_URL", bool(ALERTS["SLACK_WEBHOOK_URL"])),
    "email": ("AEGIS_ALERT_EMAIL_TO", bool(ALERTS["EMAIL_TO"])),
    "sms": (
        "AEGIS_ALERT_SMS_WEBHOOK_URL and AEGIS_ALERT_SMS_TO",
        bool(ALERTS["SMS_WEBHOOK_URL"] and ALERTS["SMS_TO"]),
    ),
    "telegram": (
        "AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN and AEGIS_NOTIFY_TELEGRAM_CHAT_ID",
        bool(NOTIFY["TELEGRAM_BOT_TOKEN"] and NOTIFY["TELEGRAM_CHAT_ID"]),
    ),
}
for _name, _kinds in NOTIFY["KINDS"].items():
    _unknown = sorted(set(_kinds) - set(NOTIFY_KINDS))
    if _unknown:
        raise ImproperlyConfigured(
            f"AEGIS_NOTIFY_KINDS_{_name.upper()} lists {', '.join(_unknown)}: the kinds are "
            f"{', '.join(NOTIFY_KINDS)}."
        )
    if _kinds and not _NOTIFY_NEEDS[_name][1]:
        raise ImproperlyConfigured(
            f"AEGIS_NOTIFY_KINDS_{_name.upper()} needs {_NOTIFY_NEEDS[_name][0]}."
        )
if min(NOTIFY["INTERVAL_S"].values()) < 0 or NOTIFY["REFUSALS_EVERY_S"] < 1:
    raise ImproperlyConfigured(
        "AEGIS_NOTIFY_INTERVAL_S_<CHANNEL> is 0 or more, AEGIS_NOTIFY_REFUSALS_EVERY_S 1 or more."
    )

# A simulated day (core/clock.py, ShiftedClock) is for the simulator alone: a broker that trades
# real or paper money must never see orders stamped with another day's time.
if env.str("AEGIS_CLOCK_START", default="") and (PRODUCTION or KIS["ENV"] != "simulator"):
    raise ImproperlyConfigured(
        "AEGIS_CLOCK_START runs a simulated day: it needs KIS_ENV=simulator and AEGIS_ENV "
        "development."
    )

# --- Auth, i18n, static -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Korean by default, for traders on KRX; each person may switch (the admin's header), and
# AEGIS_LANGUAGE=en makes English the default of pages and of the alerts and notifications
# the processes write. Translations: locale/ko (`manage.py makemessages -l ko`).
LANGUAGE_CODE = env.str("AEGIS_LANGUAGE", default="ko")
LANGUAGES = [("ko", "한국어"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The process runs in UTC, as servers do (Django sets the process's TZ to TIME_ZONE): every
# calendar decision takes the Seoul date and time of the one clock (core/clock.py), never the
# process's local time. Pages show Seoul time (aegis/middleware.py). AEGIS_TIME_ZONE exists for
# CI's second pass in Asia/Seoul, which shows that no decision hangs on the process's zone.
TIME_ZONE = env.str("AEGIS_TIME_ZONE", default="UTC")
DISPLAY_TIME_ZONE = "Asia/Seoul"
USE_I18N = True
USE_TZ = True
# Pages write 2026-12-07 09:02:13 and 1,234,500 in every language (aegis/formats/).
FORMAT_MODULE_PATH = ["aegis.formats"]
USE_THOUSAND_SEPARATOR = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Outside production, serve straight from the apps: no collectstatic needed for a first run.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Picks ingest API ---------------------------------------------------------------------------
# (POST /api/picks/ingest, its OpenAPI schema and docs; see picks/api.py)
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The ingest view names its own authentication (a source's bearer token); nothing else in
    # Aegis is served by DRF, so nothing is allowed by default.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Aegis picks API",
    "DESCRIPTION": "Strategies send picks; Aegis stores them and routes each through three "
    "gates (validity, risk, price) into entry orders.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}
# The docs page (Redoc, read-only: no "try it out" against a live trading API) loads its
# JavaScript from a CDN unless drf-spectacular-sidecar is installed, then serves it locally.
import importlib.util as _importlib_util  # noqa: E402

if _importlib_util.find_spec("drf_spectacular_sidecar") is not None:
    INSTALLED_APPS.append("drf_spectacular_sidecar")
    SPECTACULAR_SETTINGS["REDOC_DIST"] = "SIDECAR"
# Bounds of one request and of a pick's budget (KRW). Bodies above Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) are refused by Django first.


def _rate(name: str, default: str) -> Decimal:
    """A cost rate from the environment: a fraction of the amount from 0 to 0.01."""
    text = env.str(name, default=default)
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal fraction, e.g. {default}") from None
    if not rate.is_finite() or not Decimal(0) <= rate < Decimal("0.01"):
        raise ImproperlyConfigured(f"{name} must lie from 0 to 0.01 (a fraction), not {text}")
    return rate


PICKS_MAX_BODY_BYTES = env.int("AEGIS_PICKS_MAX_BODY_BYTES", default=1024 * 1024)
PICKS_MAX_BATCH = env.int("AEGIS_PICKS_MAX_BATCH", default=1000)
PICKS_BUDGET_MIN_KRW = env.int("AEGIS_PICKS_BUDGET_MIN_KRW", default=10_000)
# What a fill costs (execution/costs.py, which cites the defaults): the broker's fee on every
# fill and the transaction tax on a sell, as fractions of the amount.
AEGIS_FEE_RATE = _rate("AEGIS_FEE_RATE", "0.000140527")
AEGIS_SELL_TAX_RATE = _rate("AEGIS_SELL_TAX_RATE", "0.0020")
AEGIS_ETP_FEE_RATE = _rate("AEGIS_ETP_FEE_RATE", "0.000146527")  # an ETF's or ETN's, no tax
PICKS_BUDGET_MAX_KRW = env.int("AEGIS_PICKS_BUDGET_MAX_KRW", default=100_000_000)
# How far in the future a pick's generated_at may be (clock skew between machines).
PICKS_MAX_CLOCK_SKEW_S = env.int("AEGIS_PICKS_MAX_CLOCK_SKEW_S", default=5)
# Where the per-source rate is counted: Redis, shared by every web process (in-process memory
# in the embedded default), and how long a count may take before the batch is let in anyway.
PICKS_RATE_STORAGE_URL = env.str("AEGIS_PICKS_RATE_STORAGE_URL", default=REDIS_URL or "memory://")
PICKS_RATE_STORAGE_TIMEOUT_S = env.float("AEGIS_PICKS_RATE_STORAGE_TIMEOUT_S", default=0.1)
# The router asks the broker for a symbol's order book at most once per this many seconds.
PICKS_BOOK_CACHE_S = env.float("AEGIS_PICKS_BOOK_CACHE_S", default=1.0)
# Batches of up to this many picks are announced to the routers' lanes before they are stored,
# so that their market is read meanwhile (picks/doorbell.py); 0: never.
PICKS_HEADS_UP_MAX = env.int("AEGIS_PICKS_HEADS_UP_MAX", default=4)
# The routers: PICKS_LANES threads of their own in the worker that consumes the picks queue
# (never the execution bell's threads, picks/doorbell.py). At most PICKS_QUEUE_MAX picks wait
# for them (NEW): an ingest past it answers 503, nothing stored. The default is two full
# batches, so that a full batch is let in while up to another one waits; it is never less than
# one. A pick that waits past its max_pick_age_s is refused at gate 1 without asking KIS. Before
# each route they give way to exits while the KIS rate window has no more free slots than
# PICKS_EXIT_RESERVE_SHARE of the rate (at least one), for at most PICKS_YIELD_MAX_S.
PICKS_LANES = env.int("AEGIS_PICKS_LANES", default=2)
PICKS_QUEUE_MAX = env.int("AEGIS_PICKS_QUEUE_MAX", default=2 * PICKS_MAX_BATCH)
PICKS_EXIT_RESERVE_SHARE = env.float("AEGIS_PICKS_EXIT_RESERVE_SHARE", default=0.25)
PICKS_YIELD_MAX_S = env.float("AEGIS_PICKS_YIELD_MAX_S", default=2.0)
if (
    not 1 <= PICKS_MAX_BATCH <= PICKS_QUEUE_MAX
    or not 0 <= PICKS_EXIT_RESERVE_SHARE < 1
    or PICKS_YIELD_MAX_S < 0
):
    raise ImproperlyConfigured(
        "AEGIS_PICKS_MAX_BATCH is at least 1 and AEGIS_PICKS_QUEUE_MAX at least as large (a "
        "full batch must fit the routers' backlog), AEGIS_PICKS_EXIT_RESERVE_SHARE from 0 to "
        "below 1, AEGIS_PICKS_YIELD_MAX_S 0 or more."
    )
# A new source's rate: KIS takes about 20 requests a second on a real key (2 on paper), and a
# routed pick costs two or three of them.
PICKS_DEFAULT_RATE_LIMIT = env.str("AEGIS_PICKS_DEFAULT_RATE_LIMIT", default="5/second")
# HMAC secrets of sources that must sign: AEGIS_PICKS_HMAC_<CODE>, read per request (picks/auth.py).
# --- End of picks ingest API -------------------------------------------------------------------

# --- Security (production) --------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health/?$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# --- Logging ----------------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line, with every `extra` field (intent_id, order_id, …).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "core.logs.ZonedFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "core.logs.ZonedJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env.str("LOG_FORMAT", default="plain"),
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # urllib3 logs each request's path at DEBUG: a Slack webhook's or a Telegram bot's path is
    # its secret (execution/notify/channels.py).
    "loggers": {"urllib3.connectionpool": {"level": "INFO"}},
}
