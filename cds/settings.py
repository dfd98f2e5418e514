"""Django settings, read from the environment (docs/style.md G8).

Every variable is listed with a comment in ``deploy/.env.example``. Defaults give the embedded
quick-start (SQLite, file-based Celery transport); production sets ``DATABASE_URL`` and
``CELERY_BROKER_URL``.
"""

from __future__ import annotations

from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from cds.core.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CDS_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
_secret = env_secret("SECRET_KEY")
if not _secret:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is false")
    _secret = "insecure-development-key-only-for-debug-mode"  # noqa: S105 - DEBUG only
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8080").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "cds.core",
    "cds.oauth",
    "cds.fhir",
    "cds.ecg",
    "cds.analysis",
    "cds.hooks",
    "cds.writeback",
    "cds.pipeline",
    # --- review (issue 6): audit trail, login lockout, optional TOTP ---
    "auditlog",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "cds.review",
    # --- end review ---
    "cds.smart",  # SMART EHR launch of the review page from CDS cards (issue 15)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # operations (issue 16): static files without a separate server
    "cds.core.middleware.SecurityHeadersMiddleware",  # security (issue 7): CSP; no-store on API responses
    "cds.core.middleware.RejectNulMiddleware",  # security (issue 7): 400, not a DB error, for NUL in URLs
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # review (issue 6): request.user.is_verified()
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",  # review (issue 6): the actor of each LogEntry
    "axes.middleware.AxesMiddleware",  # review (issue 6): answers locked-out logins; keep last
]

ROOT_URLCONF = "cds.urls"
WSGI_APPLICATION = "cds.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'demo.sqlite3'}"), base_dir=BASE_DIR)
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Clinical timestamps are compared across systems: store and reason in UTC (system check cds.E002).
TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# --- Operations (issue 16): static files served by WhiteNoise from gunicorn ----------------------
# Production serves STATIC_ROOT as filled by `collectstatic` (the image build, make up), compressed
# and with hashed names (cacheable forever); STATIC_MANIFEST=false serves the files under their own
# names, for processes that render admin pages without a collectstatic (the test suite, make demo).
# WHITENOISE_USE_FINDERS serves straight from the apps instead of STATIC_ROOT (DEBUG default).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("STATIC_MANIFEST", True)
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)
# --- end static files ------------------------------------------------------------------------------

# Django's 2.5 MiB default is too small for multi-ECG Bundles (a 12-lead 10 s 500 Hz ECG is ~0.4 MB
# of JSON); the FHIR parser enforces this limit itself and answers 413 with an OperationOutcome.
FHIR_MAX_BODY_BYTES = env_int("FHIR_MAX_BODY_BYTES", 32 * 1024 * 1024)
# security (issue 13): a single resource (POST /fhir/{type}) is held to a lower limit. The largest ECG
# the ECG_* limits accept (60 s at 1000 Hz, 12 leads: 720,000 samples of ~7 characters) is ~5 MB.
FHIR_MAX_RESOURCE_BYTES = env_int("FHIR_MAX_RESOURCE_BYTES", 8 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FHIR_MAX_BODY_BYTES
FHIR_DEFAULT_PAGE_SIZE = env_int("FHIR_DEFAULT_PAGE_SIZE", 20)
FHIR_MAX_PAGE_SIZE = env_int("FHIR_MAX_PAGE_SIZE", 200)

# ECG acceptance limits (issue 2): recordings outside them are rejected with an OperationOutcome.
ECG_MIN_SECONDS = env_float("ECG_MIN_SECONDS", 2.5)
ECG_MAX_SECONDS = env_float("ECG_MAX_SECONDS", 60.0)
ECG_MIN_RATE_HZ = env_float("ECG_MIN_RATE_HZ", 100.0)
ECG_MAX_RATE_HZ = env_float("ECG_MAX_RATE_HZ", 1000.0)
ECG_MAX_ABS_MV = env_float("ECG_MAX_ABS_MV", 20.0)

# /readyz: name -> a function returning whether that dependency answers (cds/core/apis.py).
READINESS_CHECKS = {"models": "cds.analysis.analyzer.models_ready"}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cds.oauth.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "cds.core.exception_handler.handle_exception",
    "UNAUTHENTICATED_USER": None,
    # security (issue 13): JSON bodies are checked for NUL when parsed, i.e. after authentication.
    "DEFAULT_PARSER_CLASSES": [
        "cds.core.nul.NulRejectingJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

# OAuth2 client credentials (issue 2); tokens are short-lived JWTs signed with this key.
OAUTH_TOKEN_SIGNING_KEY = env_secret("OAUTH_TOKEN_SIGNING_KEY") or SECRET_KEY
OAUTH_TOKEN_LIFETIME_SECONDS = env_int("OAUTH_TOKEN_LIFETIME_SECONDS", 300)

# CDS Hooks 2.0 client trust (issue 15): EHR JWKS fetching and the fhirServer fallback.
CDS_HOOKS_JWKS_TIMEOUT_S = env_float("CDS_HOOKS_JWKS_TIMEOUT_S", 3.0)
# Fetched key sets are reused this long; an unknown kid refetches at most once per
# CDS_HOOKS_JWKS_REFETCH_MIN_S per client, so a flood of bad kids cannot hammer the EHR.
CDS_HOOKS_JWKS_CACHE_S = env_int("CDS_HOOKS_JWKS_CACHE_S", 300)
CDS_HOOKS_JWKS_REFETCH_MIN_S = env_int("CDS_HOOKS_JWKS_REFETCH_MIN_S", 30)
CDS_HOOKS_FHIR_TIMEOUT_S = env_float("CDS_HOOKS_FHIR_TIMEOUT_S", 5.0)

# Celery. The default is kombu's file-system transport so the demo needs no broker process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
CELERY_TASK_ACKS_LATE = True  # a job whose worker dies mid-run is redelivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "analysis")
# Periodic recovery (celery beat): re-enqueue lost jobs, reset jobs whose worker died mid-run.
ANALYSIS_SWEEP_PENDING_AFTER_S = env_int("ANALYSIS_SWEEP_PENDING_AFTER_S", 300)
ANALYSIS_MAX_ATTEMPTS = env_int("ANALYSIS_MAX_ATTEMPTS", 3)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "analysis-sweep": {"task": "analysis.sweep", "schedule": env_float("ANALYSIS_SWEEP_INTERVAL_S", 60.0)},
}

# --- Inference (issue 5): how analysis jobs reach the models. ---
# triton: production and the default everywhere Triton runs (make demo/up start a local one);
# inprocess: the same checkpoints with torch inside the worker, where Triton cannot run.
INFERENCE_BACKEND = env_str("INFERENCE_BACKEND", "triton")
TRITON_URL = env_str("TRITON_URL", "127.0.0.1:8101")  # host:port, no scheme (tritonclient's form)
TRITON_PROTOCOL = env_str("TRITON_PROTOCOL", "grpc")  # what TRITON_URL speaks: grpc | http
TRITON_HTTP_URL = env_str("TRITON_HTTP_URL", "127.0.0.1:8100")  # HTTP fallback; empty = none
TRITON_TIMEOUT_S = env_float("TRITON_TIMEOUT_S", 10.0)
# Pins such as "ecg_detector=1": the client then refuses any other served version.
TRITON_MODEL_VERSIONS = dict(item.split("=", 1) for item in env_list("TRITON_MODEL_VERSIONS", []) if "=" in item)
INFERENCE_DETECTOR_CHECKPOINT = env_str(
    "INFERENCE_DETECTOR_CHECKPOINT", str(BASE_DIR / "ecg_models" / "weights" / "detector.pt")
)
# The foundation model (probabilities, report text, re-annotation value) runs beside the detector
# unless switched off (a deployment that serves only the detector).
INFERENCE_FOUNDATION_ENABLED = env_bool("INFERENCE_FOUNDATION_ENABLED", True)
INFERENCE_FOUNDATION_CHECKPOINT = env_str(
    "INFERENCE_FOUNDATION_CHECKPOINT", str(BASE_DIR / "ecg_models" / "weights" / "foundation.pt")
)
# Celery-level retries of a job whose inference failed transiently (Triton down or slow), after
# the client's own quick retries, for a time budget (operations, issue 16: a job waits out an hour's
# outage); then the job is visibly failed.
ANALYSIS_RETRY_BUDGET_S = env_int("ANALYSIS_RETRY_BUDGET_S", 2 * 3600)
ANALYSIS_RETRY_BACKOFF_MAX_S = env_int("ANALYSIS_RETRY_BACKOFF_MAX_S", 120)

# --- EHR write-back (issue 5; cds/writeback, checks cds.E010-E012) ------------------------------
# One transaction Bundle per analysed ECG through an outbox with retries; off unless an EHR is set.
WRITEBACK_ENABLED = env_bool("WRITEBACK_ENABLED", False)
WRITEBACK_FHIR_BASE_URL = env_str("WRITEBACK_FHIR_BASE_URL", "").rstrip("/")
WRITEBACK_AUTH = env_str("WRITEBACK_AUTH", "none")  # none | client_secret | private_key_jwt
WRITEBACK_TOKEN_URL = env_str("WRITEBACK_TOKEN_URL", "")
WRITEBACK_CLIENT_ID = env_str("WRITEBACK_CLIENT_ID", "")
WRITEBACK_CLIENT_SECRET = env_secret("WRITEBACK_CLIENT_SECRET")
WRITEBACK_PRIVATE_KEY = env_secret("WRITEBACK_PRIVATE_KEY")  # PEM; WRITEBACK_PRIVATE_KEY_FILE for a mounted key
WRITEBACK_KEY_ID = env_str("WRITEBACK_KEY_ID", "")  # the kid of the key that signs now (cds/writeback/keys.py)
# Key rotation (issue 15): a directory of <kid>.pem private keys, all published at /.well-known/jwks.json;
# WRITEBACK_KEY_ID picks the one that signs. WRITEBACK_JWKS_URL, when set, goes in each assertion's
# ``jku`` header (set it only where the EHR registered that URL: some servers refuse unknown members).
WRITEBACK_PRIVATE_KEYS_DIR = env_str("WRITEBACK_PRIVATE_KEYS_DIR", "")
WRITEBACK_JWKS_URL = env_str("WRITEBACK_JWKS_URL", "")
WRITEBACK_ALGORITHM = env_str("WRITEBACK_ALGORITHM", "RS384")  # RS384 | ES384 (SMART Backend Services)
WRITEBACK_SCOPE = env_str("WRITEBACK_SCOPE", "system/*.crus")
WRITEBACK_TIMEOUT_S = env_float("WRITEBACK_TIMEOUT_S", 30.0)
WRITEBACK_MAX_ATTEMPTS = env_int("WRITEBACK_MAX_ATTEMPTS", 8)
WRITEBACK_BACKOFF_BASE_S = env_float("WRITEBACK_BACKOFF_BASE_S", 30.0)
WRITEBACK_BACKOFF_MAX_S = env_float("WRITEBACK_BACKOFF_MAX_S", 3600.0)
# Operations (issue 16): retries due later than this are enqueued by the sweep, not as delayed messages.
WRITEBACK_COUNTDOWN_MAX_S = env_float("WRITEBACK_COUNTDOWN_MAX_S", 60.0)
# A message "sending" longer than this lost its worker; it must exceed a full delivery (token + POST + retry).
WRITEBACK_SENDING_TIMEOUT_S = env_int("WRITEBACK_SENDING_TIMEOUT_S", 600)
WRITEBACK_SWEEP_INTERVAL_S = env_float("WRITEBACK_SWEEP_INTERVAL_S", 60.0)
CELERY_BEAT_SCHEDULE["writeback-sweep"] = {"task": "writeback.sweep", "schedule": WRITEBACK_SWEEP_INTERVAL_S}
# Write-back identity (issue 13): the system of every identifier we write to the EHR. One per
# installation (two installations writing to one EHR must differ); values are per-job UUIDs, so
# they survive a pg_restore (sequences reset) and never collide with another ECG's results.
WRITEBACK_IDENTIFIER_SYSTEM = env_str("WRITEBACK_IDENTIFIER_SYSTEM", f"{PUBLIC_BASE_URL}/identifiers/ecg-analysis")
# --- end EHR write-back ----------------------------------------------------------------------------

# --- Review and audit (issue 6; cds/review) ----------------------------------------------------
# Admin login lockout (django-axes; docs/security.md "Clinician login"). A username is locked after
# AXES_FAILURE_LIMIT failures from anywhere (a distributed guess at one account), and a client address
# after as many failures across usernames (password spraying); each further lockout of the same
# username doubles the cool-off (cds.review.login.progressive_cool_off, at most a day).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_HOURS = env_float("AXES_COOLOFF_HOURS", 1.0)
AXES_COOLOFF_TIME = "cds.review.login.progressive_cool_off"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# The client address behind reverse proxies (django-ipware): TRUSTED_PROXY_COUNT is how many proxies
# in front of gunicorn append to X-Forwarded-For (1 for the Kubernetes ingress). Only that many
# right-most entries are believed, so a client cannot pick its own address by sending the header;
# 0 (the default) ignores the header and keys on the peer address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_IPWARE_PROXY_ORDER = "right-most"
# ipware counts the proxies listed in the header; the last proxy is the peer (REMOTE_ADDR), not listed.
AXES_IPWARE_PROXY_COUNT = max(TRUSTED_PROXY_COUNT - 1, 0)
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if TRUSTED_PROXY_COUNT > 0 else ("REMOTE_ADDR",)
)
# TOTP second factor for the admin and review pages (django-otp): required unless DEBUG. Turning it
# off outside DEBUG is a system check error (cds.E030) unless ADMIN_OTP_LOCAL_OPT_OUT is set, which
# local stacks on loopback (make up, the live test stacks) do and a deployment must not.
ADMIN_OTP_REQUIRED = env_bool("ADMIN_OTP_REQUIRED", not DEBUG)
ADMIN_OTP_LOCAL_OPT_OUT = env_bool("ADMIN_OTP_LOCAL_OPT_OUT", False)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "ecg-cds")
# SMART EHR launch (issue 15; docs/security.md "SMART launch"): a clinician launched from a registered
# EHR signed in there, so by default that sign-in counts as the second factor and the review opens
# without our TOTP. False: the launched session still needs TOTP (the admin asks for it).
SMART_LAUNCH_SATISFIES_OTP = env_bool("SMART_LAUNCH_SATISFIES_OTP", True)
SMART_HTTP_TIMEOUT_S = env_float("SMART_HTTP_TIMEOUT_S", 10.0)
AUDITLOG_INCLUDE_ALL_MODELS = False
# ECGs with a normal verdict whose re-annotation value (active learning) reaches this go to the
# re-annotation queue.
REVIEW_REANNOTATION_MIN_PRIORITY = env_float("REVIEW_REANNOTATION_MIN_PRIORITY", 0.5)
# --- end review and audit ----

# --- Clinician login (issue 13; docs/security.md "Clinician login") ----------------------------------
# Passwords: at least 12 characters, not a common password, not like the username or name.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sessions end after 30 minutes without a request (each request renews the cookie), not two weeks.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_TIMEOUT_S", 30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
# --- end clinician login ---------------------------------------------------------------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Security (issue 7; docs/security.md, cds/core/middleware.py, checks cds.W020-W023) -----------
# Shared-secret client authentication at /auth/token (client_secret_basic/post). Off outside DEBUG:
# production clients use SMART Backend Services (private_key_jwt with a registered JWKS).
OAUTH_ALLOW_CLIENT_SECRET = env_bool("OAUTH_ALLOW_CLIENT_SECRET", DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HTTPS only outside DEBUG. TLS ends at a proxy (ingress, load balancer) in front of gunicorn: trust
# its X-Forwarded-Proto only when it sets that header itself (a client could forge it otherwise).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER_TRUSTED", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Kubelet and load-balancer probes speak plain HTTP to the pod (patterns omit the leading slash).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Defence in depth: every log line the console handler writes passes the PHI redaction filter.
LOGGING["filters"] = {"redact_phi": {"()": "cds.core.logging.RedactPhiFilter"}}
LOGGING["handlers"]["console"]["filters"] = ["redact_phi"]  # type: ignore[index]
# --- end security ---------------------------------------------------------------------------------

# --- Operations (issue 16; docs/operations.md): queues ----------------------------------------------
# Four queues, each with its own workers, so a slow EHR or a long sweep never holds analysis slots:
# analysis (CELERY_TASK_DEFAULT_QUEUE: analysis.job_run), write-back deliveries, the periodic
# sweeps, and shadow candidates' runs. A test or bench stack points all at its one private queue
# (deploy/livestack.py).
CELERY_WRITEBACK_QUEUE = env_str("CELERY_WRITEBACK_QUEUE", "writeback")
CELERY_MAINTENANCE_QUEUE = env_str("CELERY_MAINTENANCE_QUEUE", "maintenance")
# Shadow candidates (issue 19): their own queue and workers, so a candidate's runs can never hold
# an analysis slot or delay the sweeps that recover served jobs.
CELERY_SHADOW_QUEUE = env_str("CELERY_SHADOW_QUEUE", "shadow")
CELERY_TASK_ROUTES = {
    "shadow.run": {"queue": CELERY_SHADOW_QUEUE},
    "writeback.deliver": {"queue": CELERY_WRITEBACK_QUEUE},
    "writeback.sweep": {"queue": CELERY_MAINTENANCE_QUEUE},
    "analysis.sweep": {"queue": CELERY_MAINTENANCE_QUEUE},
    "quality.check_drift": {"queue": CELERY_MAINTENANCE_QUEUE},  # quality (issue 19)
    "fhir.bulk_export_run": {"queue": CELERY_MAINTENANCE_QUEUE},  # bulk export (issue 15)
    "fhir.bulk_export_sweep": {"queue": CELERY_MAINTENANCE_QUEUE},
}
# --- end operations: queues -------------------------------------------------------------------------

# --- Quality (issue 19; docs/quality.md): the daily drift check of the day just ended (UTC). ---
CELERY_BEAT_SCHEDULE["quality-check-drift"] = {
    "task": "quality.check_drift",
    "schedule": crontab(minute=30, hour=0),
}
# --- end quality ---

# --- Bulk Data export (issue 15; docs/fhir.md "Bulk export") ---------------------------------------
# NDJSON files on disk, shared by the web (downloads) and the maintenance workers (writes): in a
# deployment this directory must be one volume mounted in both.
BULK_EXPORT_DIR = Path(env_str("BULK_EXPORT_DIR", str(VAR_DIR / "bulk-export")))
BULK_EXPORT_FILE_MAX_RESOURCES = env_int("BULK_EXPORT_FILE_MAX_RESOURCES", 10_000)  # then a new part
BULK_EXPORT_EXPIRES_AFTER_S = env_int("BULK_EXPORT_EXPIRES_AFTER_S", 24 * 3600)  # files kept after completion
BULK_EXPORT_RETRY_AFTER_S = env_int("BULK_EXPORT_RETRY_AFTER_S", 10)  # the status URL's Retry-After
# The export task's own limits (the default 120 s soft limit is for analysis jobs, not a full export).
BULK_EXPORT_SOFT_TIME_LIMIT_S = env_int("BULK_EXPORT_SOFT_TIME_LIMIT_S", 3600)
# An export whose task has not written progress for this long lost its worker: the sweep fails it.
BULK_EXPORT_STALE_AFTER_S = env_int("BULK_EXPORT_STALE_AFTER_S", 2 * 3600)
CELERY_BEAT_SCHEDULE["bulk-export-sweep"] = {
    "task": "fhir.bulk_export_sweep",
    "schedule": env_float("BULK_EXPORT_SWEEP_INTERVAL_S", 600.0),
}
# --- end bulk export ---

# --- Operations (issue 16; docs/operations.md): metrics, logs, request ids --------------------------
# The request id first, so every later middleware's log lines and the enqueued tasks carry it.
MIDDLEWARE.insert(0, "cds.core.request_context.RequestContextMiddleware")
# /metrics (Prometheus text): event metrics of this deployment's processes (PROMETHEUS_MULTIPROC_DIR)
# plus state read at scrape time by these collectors (core imports no app: named here).
METRICS_COLLECTORS = [
    "cds.pipeline.metrics.DatabaseCollector",
    "cds.pipeline.metrics.BrokerCollector",
    "cds.review.drift.DriftCollector",  # quality (issue 19): open drift alarms
]
METRICS_TOKEN = env_secret("METRICS_TOKEN")  # set: scrapers send "Authorization: Bearer <token>"
METRICS_FLAG_RATE_WINDOW_S = env_int("METRICS_FLAG_RATE_WINDOW_S", 86400)
METRICS_BROKER_TIMEOUT_S = env_float("METRICS_BROKER_TIMEOUT_S", 2.0)
# Workers serve their own event metrics (task counts and run times, stage latencies, Triton calls)
# on this port from the Celery main process; 0 = off.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
# Prometheus scrapes over plain HTTP inside the cluster (like the probes).
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]
# Logs: one JSON object per line (json; the default outside DEBUG) or the plain format, both with
# the request id and, in workers, the task and job ids (cds.core.logging). Celery keeps this config
# instead of installing its own handler on the root logger.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING["formatters"] = {
    "plain": {"format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s job=%(job_id)s] %(message)s"},
    "json": {"()": "cds.core.logging.JsonFormatter"},
}
LOGGING["filters"]["context"] = {"()": "cds.core.logging.ContextFilter"}  # type: ignore[index]
LOGGING["handlers"]["console"]["filters"] = [*LOGGING["handlers"]["console"]["filters"], "context"]  # type: ignore[index]
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # type: ignore[index]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# --- end operations: metrics, logs ------------------------------------------------------------------

# --- Operations (issue 16): OpenTelemetry traces (cds/core/tracing.py) -----------------------------
# Off by default. On: spans by OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (read by the exporter itself,
# like every OTEL_* variable), service names "<TRACING_SERVICE_NAME>-web" and "-worker".
TRACING_ENABLED = env_bool("TRACING_ENABLED", False)
TRACING_SERVICE_NAME = env_str("TRACING_SERVICE_NAME", "ecg-cds")
# --- end operations: traces ---------------------------------------------------------------------------
