"""Every setting of the project, read from the environment with safe local defaults.

Production differences are environment values, not a separate module. With DEBUG off, a missing
secret, key or Smartcar credential stops start-up with one line naming it (see `_require`).
The Smartcar block lives in `config/settings/smartcar.py`.
"""

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR, env, env_first

DEBUG = env.bool("DEBUG", default=False)

# Values used only when DEBUG is on and the variable is unset, so that `make run` works on a fresh
# machine. They are public, so the production checks refuse them.
DEV_ONLY_SECRET_KEY = "django-insecure-dev-only-do-not-use-in-production-0123456789abcdef"
DEV_ONLY_TOKEN_ENCRYPTION_KEY = "dev-only-token-key-do-not-use-in-production-0123456789"
DEV_ONLY_JWT_SECRET = "dev-only-jwt-secret-do-not-use-in-production-0123456789"

_missing: list[str] = []


def _require(name: str, dev_default: str) -> str:
    """The variable's value; with DEBUG off, remember it as missing instead of inventing one."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    _missing.append(name)
    return ""


SECRET_KEY = _require("SECRET_KEY", DEV_ONLY_SECRET_KEY)
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "core",
    "vehicles",
    "oauth_smartcar",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of failing with
    # "database is locked" halfway through a transaction; WAL lets readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    # Server-side binding lets psycopg prepare a statement it has run five times on a
    # connection, so PostgreSQL stops planning the hot reads' joins on every request (0.2 ms of
    # planning against 0.03 ms of execution for a vehicle read, a round trip the request waits
    # for). On by default, as psycopg's own default and Rails' on PostgreSQL are; Django's is
    # off. Behind a pooler in transaction mode, prepared statements need PgBouncer 1.21+ with
    # max_prepared_statements set: below that, DATABASE_PREPARED_STATEMENTS=false.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {"server_side_binding": True, "prepare_threshold": 5}
        )
# Reusing a connection across requests saves a connect per request: on SQLite that is opening
# the file and running the PRAGMAs above (about 0.6 ms, a third of a cheap read's CPU).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
# A reused connection is checked before a request's first query: after a database restart no
# request fails on a dead connection. On PostgreSQL that is one `SELECT 1` round trip a request
# (the bare ceiling view ran 7 % faster without it, docs/performance.md); Django's default is off.
DATABASES["default"].setdefault(
    "CONN_HEALTH_CHECKS", env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

# --- HTTP security (secure defaults when DEBUG is off; each can be overridden) -------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env.bool("TRUST_X_FORWARDED_PROTO", default=False)
    else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# same-origin, not no-referrer, site-wide: under no-referrer browsers send `Origin: null` on
# same-origin form POSTs and Django's CSRF check refuses every admin form. The pages that carry
# OAuth codes or states (the Connect views) send no-referrer themselves (core.api.browser_view).
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
X_FRAME_OPTIONS = "DENY"
# HSTS preload is a one-way commitment for the whole domain; the operator opts in with
# SECURE_HSTS_PRELOAD=true. Our one documented silence of `check --deploy`.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# --- API --------------------------------------------------------------------------------------------
API_PREFIX = "/" + env.str("API_PREFIX", default="/api/v1").strip("/")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["core.renderers.OrjsonRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Smartcar EV backend API",
    "DESCRIPTION": "Link electric vehicles through Smartcar Connect and read their telemetry.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Bearer JWT issued by the product's own login -------------------------------------------------
JWT_ALGORITHMS = env.list("JWT_ALGORITHMS", default=["HS256"])
JWT_SECRET = env.str("JWT_SECRET", default="")
JWT_PUBLIC_KEY = env.str("JWT_PUBLIC_KEY", default="").replace("\\n", "\n")
JWT_JWKS_URL = env.str("JWT_JWKS_URL", default="")
JWT_AUDIENCE = env.str("JWT_AUDIENCE", default="")
JWT_ISSUER = env.str("JWT_ISSUER", default="")
JWT_LEEWAY_SECONDS = env.int("JWT_LEEWAY_SECONDS", default=30)
JWT_USER_CLAIM = env.str("JWT_USER_CLAIM", default="sub")
JWT_JWKS_CACHE_SECONDS = env.int("JWT_JWKS_CACHE_SECONDS", default=300)
# When set (e.g. "at+jwt"), tokens must carry this `typ` header, so ID tokens are refused.
JWT_TYP = env.str("JWT_TYP", default="")
if not JWT_PUBLIC_KEY and not JWT_JWKS_URL and not JWT_SECRET:
    JWT_SECRET = _require("JWT_SECRET", DEV_ONLY_JWT_SECRET)

# --- Token encryption at rest (never SECRET_KEY) ---------------------------------------------------
TOKEN_ENCRYPTION_KEYS = env.list("TOKEN_ENCRYPTION_KEYS", default=[]) or (
    [DEV_ONLY_TOKEN_ENCRYPTION_KEY] if DEBUG else []
)
if not TOKEN_ENCRYPTION_KEYS:
    _missing.append("TOKEN_ENCRYPTION_KEYS")

# --- Telemetry polling (intervals in seconds) ---------------------------------------------------
POLL_INTERVAL_CHARGING = env.int("POLL_INTERVAL_CHARGING", default=300)
POLL_INTERVAL_PLUGGED_IN = env.int("POLL_INTERVAL_PLUGGED_IN", default=1800)
POLL_INTERVAL_DEFAULT = env.int("POLL_INTERVAL_DEFAULT", default=900)
POLL_INTERVAL_ASLEEP = env.int("POLL_INTERVAL_ASLEEP", default=3600)
POLL_BACKOFF_MAX = env.int("POLL_BACKOFF_MAX", default=21600)
POLL_LEASE_SECONDS = env.int("POLL_LEASE_SECONDS", default=300)
TELEMETRY_LATEST_MAX_AGE = env.int("TELEMETRY_LATEST_MAX_AGE", default=60)
TELEMETRY_MANUAL_REFRESH_SECONDS = env.int("TELEMETRY_MANUAL_REFRESH_SECONDS", default=60)
TELEMETRY_RETENTION_DAYS = env.int("TELEMETRY_RETENTION_DAYS", default=0) or None

# --- Where the browser goes after Connect (settings only, never the request) ----------------------
SMARTCAR_APP_HANDOFF_URL = env.str("SMARTCAR_APP_HANDOFF_URL", default="")
SMARTCAR_OAUTH_FAILURE_URL = env.str("SMARTCAR_OAUTH_FAILURE_URL", default="")
APP_HOME_URL = env_first("APP_HOME_URL", "TANK_TRACK_APP_HOME_URL")
APP_DEEPLINK = env_first("APP_DEEPLINK", "TANK_TRACK_APP_DEEPLINK")
FRONTEND_URL = env.str("FRONTEND_URL", default="")

from config.settings.smartcar import *  # noqa: E402

if not DEBUG:
    for _name in ("SMARTCAR_CLIENT_ID", "SMARTCAR_CLIENT_SECRET", "SMARTCAR_REDIRECT_URI"):
        if not globals()[_name]:
            _missing.append(_name)

if SMARTCAR_EMULATOR:
    # The local stand-in for Smartcar (DEBUG only), configured to accept exactly our client.
    INSTALLED_APPS.append("smartcar_emulator")
    INSTALLED_APPS.append("demo")
    SMARTCAR_EMULATOR_CLIENT_ID = SMARTCAR_CLIENT_ID
    SMARTCAR_EMULATOR_CLIENT_SECRET = SMARTCAR_CLIENT_SECRET
    SMARTCAR_EMULATOR_REDIRECT_URIS = [SMARTCAR_REDIRECT_URI]
    SMARTCAR_EMULATOR_SEED = env.int("SMARTCAR_EMULATOR_SEED", default=42)
    SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL = env.int("SMARTCAR_EMULATOR_ACCESS_TOKEN_TTL", default=7200)
    SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS = env.int(
        "SMARTCAR_EMULATOR_REFRESH_GRACE_SECONDS", default=0
    )

# The public origin of this API, for absolute URLs we hand out (the Connect start link, the webhook
# URL). It is configuration, never read from Host or X-Forwarded-* headers.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/") or (
    "{0.scheme}://{0.netloc}".format(urlsplit(SMARTCAR_REDIRECT_URI))
    if SMARTCAR_REDIRECT_URI
    else ""
)

if SMARTCAR_EMULATOR and not SMARTCAR_APP_HANDOFF_URL:
    # Connect hands back to the demo page at / (DEBUG with the emulator only).
    SMARTCAR_APP_HANDOFF_URL = f"{PUBLIC_BASE_URL}/"

if SMARTCAR_EMULATOR:
    SMARTCAR_EMULATOR_WEBHOOK_URL = f"{PUBLIC_BASE_URL}{API_PREFIX}/smartcar/webhook"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "core.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # The dev server logs request lines, which carry `code` and `state` on the OAuth redirect.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

if _missing:
    raise ImproperlyConfigured(
        "Missing required setting(s) with DEBUG off: " + ", ".join(dict.fromkeys(_missing))
    )
