#!/bin/sh
# Entrypoint of the ecg-cds image (deploy/Dockerfile). The first argument picks the role:
#
#   web          gunicorn on 0.0.0.0:$PORT, $WEB_CONCURRENCY workers
#   worker       Celery worker on $WORKER_QUEUES (default: the analysis queue), $WORKER_CONCURRENCY processes
#   beat         Celery beat (periodic analysis.sweep); run exactly one
#   migrate      apply database migrations, then exit (one-shot)
#   wait-for-migrations   block until the database has every migration (Kubernetes init container)
#   healthcheck  exit 0 when /healthz answers 200 (web only)
#   worker-ping  exit 0 when this container's Celery worker answers a ping over the broker
#   beat-alive   exit 0 when beat wrote its schedule file recently
#   manage ...   any manage.py command, e.g. `manage createsuperuser`
#
# Every role replaces this shell (exec) so that SIGTERM reaches gunicorn/Celery directly and they
# shut down gracefully (Celery finishes or, with late acks, hands back its running tasks).
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift

# Beat keeps its schedule state here; /tmp is the only writable path when the root filesystem is
# read-only (an emptyDir in Kubernetes, a tmpfs in compose).
BEAT_SCHEDULE="${BEAT_SCHEDULE:-/tmp/celerybeat-schedule}"
# The queues this worker consumes: analysis by default; the write-back and maintenance workers set
# WORKER_QUEUES=writeback / maintenance (cds/settings.py CELERY_*_QUEUE), each its own deployment.
QUEUE="${WORKER_QUEUES:-${CELERY_TASK_DEFAULT_QUEUE:-analysis}}"

# Prometheus multiprocess mode (issue 16): the forked children of this container's gunicorn or
# Celery write their metrics here; start empty (files of a previous process would be added in).
# Only the serving roles reset it: probes exec'd into a running container must leave it alone.
reset_metrics_dir() {
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        rm -rf "$PROMETHEUS_MULTIPROC_DIR"
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    fi
}

case "$role" in
web)
    reset_metrics_dir
    # --worker-tmp-dir: gunicorn's heartbeat files on tmpfs, not on a (read-only or slow) disk.
    # --timeout: a worker silent for this long is killed and restarted (large FHIR Bundles take
    # seconds to validate, never a minute). --max-requests recycles workers to bound memory growth.
    # The access log names the path only (%(U)s, no query string): a search such as
    # ?identifier=...|MRN would otherwise write patient identifiers to the log.
    exec gunicorn cds.wsgi:application \
        --bind "0.0.0.0:${PORT:-8080}" \
        --workers "${WEB_CONCURRENCY:-2}" \
        --timeout "${GUNICORN_TIMEOUT:-60}" \
        --graceful-timeout 30 \
        --keep-alive 5 \
        --max-requests 1000 \
        --max-requests-jitter 100 \
        --worker-tmp-dir /dev/shm \
        --access-logfile - \
        --access-logformat '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s' \
        "$@"
    ;;
worker)
    reset_metrics_dir
    # Late acks and prefetch 1 come from settings (CELERY_TASK_ACKS_LATE, ..._PREFETCH_MULTIPLIER).
    # --max-tasks-per-child bounds memory growth of the preprocessing stack (scipy, neurokit2).
    exec celery -A cds worker \
        --queues "$QUEUE" \
        --concurrency "${WORKER_CONCURRENCY:-1}" \
        --max-tasks-per-child "${WORKER_MAX_TASKS_PER_CHILD:-200}" \
        --hostname "worker@%h" \
        --loglevel "${LOG_LEVEL:-INFO}" \
        "$@"
    ;;
beat)
    exec celery -A cds beat \
        --schedule "$BEAT_SCHEDULE" \
        --loglevel "${LOG_LEVEL:-INFO}" \
        "$@"
    ;;
migrate)
    exec python manage.py migrate --no-input "$@"
    ;;
wait-for-migrations)
    # `migrate --check` exits non-zero while migrations are unapplied (or the database is down).
    until python manage.py migrate --check >/dev/null 2>&1; do
        echo "waiting for database migrations ..."
        sleep 5
    done
    ;;
healthcheck)
    # Host: localhost must be in ALLOWED_HOSTS (deploy/.env.example says so); Django answers 400
    # to a Host it does not know, which would make a healthy container look dead.
    exec python -c '
import os, sys, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:%s/healthz" % os.environ.get("PORT", "8080"), headers={"Host": "localhost"}
)
with urllib.request.urlopen(request, timeout=4) as response:
    sys.exit(0 if response.status == 200 else 1)
'
    ;;
worker-ping)
    exec celery -A cds inspect ping --destination "worker@$(cat /proc/sys/kernel/hostname)" --timeout 10
    ;;
beat-alive)
    # Beat syncs its schedule file at least every few minutes while the 60 s sweep runs.
    exec python -c '
import glob, os, sys, time
files = glob.glob(sys.argv[1] + "*")
sys.exit(0 if files and time.time() - max(os.path.getmtime(f) for f in files) < 600 else 1)
' "$BEAT_SCHEDULE"
    ;;
manage)
    exec python manage.py "$@"
    ;;
*)
    exec "$role" "$@"
    ;;
esac
