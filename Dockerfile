# moodtrack API: gunicorn serving api:create_app(), migrations applied at start.
# The same image runs the delivery worker: `docker run --env-file moodtrack.env moodtrack
# moodtrack worker` (one or more; alerts, escalations and reminders leave through it).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md openapi.yaml ./
COPY api ./api
COPY models ./models
COPY schemas ./schemas
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MOODTRACK_ENV=production \
    MOODTRACK_INSTANCE_PATH=/var/lib/moodtrack \
    GUNICORN_BIND=0.0.0.0:8000 \
    GUNICORN_WORKERS=4 \
    GUNICORN_THREADS=4
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && useradd --system --uid 10001 --home-dir /var/lib/moodtrack --create-home moodtrack
USER moodtrack
WORKDIR /var/lib/moodtrack
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['GUNICORN_BIND'].rsplit(':', 1)[1] + '/healthz', timeout=2)"
# No access log: gunicorn's would record query strings. The app logs JSON lines itself.
# --preload: the app is loaded before the port opens, so a restarting instance refuses
# connections (the proxy sends them elsewhere) rather than holding them while its workers
# load the app (17 s under load in `python -m bench.topology`). create_app opens no
# connection, so nothing is shared across the fork.
CMD ["sh", "-c", "moodtrack db upgrade && exec gunicorn 'api:create_app()' --bind \"$GUNICORN_BIND\" --workers \"$GUNICORN_WORKERS\" --threads \"$GUNICORN_THREADS\" --worker-tmp-dir /dev/shm --graceful-timeout 20 --timeout 30 --preload"]
