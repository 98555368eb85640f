# The contactgraph API. docker-compose.yml sets MONGODB_URI, so no embedded
# database starts inside the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY graph ./graph
COPY resolvers ./resolvers
COPY loaders ./loaders
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app contactgraph

USER contactgraph
EXPOSE 8000
CMD ["contactgraph", "serve", "--host", "0.0.0.0"]
