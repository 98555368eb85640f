# The contactgraph API for production: MongoDB comes from MONGODB_URI
# (docker-compose.yml sets it), so the embedded database is not in the image.
FROM python:3.11-slim

# Logs: one JSON object per line, for the log system.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONTACTGRAPH_LOG_FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY graph ./graph
COPY resolvers ./resolvers
COPY loaders ./loaders
# The pinned dependencies and the otel extra (tracing, off until
# OTEL_EXPORTER_OTLP_ENDPOINT is set), all but secantusdb: the embedded
# database (`pip install .` on a laptop) is never used with MONGODB_URI.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(d for d in p['dependencies'] + p['optional-dependencies']['otel'] if not d.startswith('secantusdb')))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && pip install --no-deps . \
    && rm /tmp/requirements.txt \
    && useradd --system --uid 10001 --no-create-home --home-dir /app contactgraph

# Not root: the process can change nothing in the image.
USER 10001:10001
EXPOSE 8000
# SIGTERM (docker stop) lets requests in flight finish within CONTACTGRAPH_SHUTDOWN_SECONDS.
STOPSIGNAL SIGTERM
CMD ["contactgraph", "serve", "--host", "0.0.0.0"]
