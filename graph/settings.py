"""Settings read once from the environment; a bad value stops the process at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


class SettingsError(ValueError):
    pass


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


# The embedded server's WiredTiger cache, in MB. A shop whose data outgrows it
# stalls the server (it spins evicting), so it is sized for about 100,000
# contacts with a few orders each; memory grows with the data, not up front.
EMBEDDED_CACHE_MB = 2048


def embedded_cache_mb(env: dict[str, str] | None = None) -> int:
    """CONTACTGRAPH_EMBEDDED_CACHE_MB, checked: the embedded server's cache in MB."""
    env = dict(os.environ if env is None else env)
    return _int(env, "CONTACTGRAPH_EMBEDDED_CACHE_MB", EMBEDDED_CACHE_MB, 64, 1_048_576)


def _origins(env: dict[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated origins as browsers send them (`https://admin.example.com`), or `*`."""
    origins: list[str] = []
    for raw in (env.get(name) or "").split(","):
        value = raw.strip()
        if not value:
            continue
        if value == "*":
            origins.append(value)
            continue
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise SettingsError(f"{name}: {value!r} is not an origin") from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or parts.username
        ):
            raise SettingsError(
                f"{name}: {value!r} is not an origin (scheme://host[:port], e.g. https://admin.example.com)"
            )
        # As browsers send it: lower case, no trailing slash, no default port.
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None and port != (443 if parts.scheme == "https" else 80):
            host = f"{host}:{port}"
        origin = f"{parts.scheme}://{host}"
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _public_url(env: dict[str, str], name: str) -> str | None:
    """The base of links in e-mail: it goes into a mail header as it is, so plain ASCII."""
    value = (env.get(name) or "").strip().rstrip("/")
    if not value:
        return None
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or not value.isascii()
        or any(c in value for c in ' <>"\\')
        or not value.isprintable()
        or parts.query
        or parts.fragment
    ):
        raise SettingsError(
            f"{name} must be an http(s) URL in plain ASCII (e.g. https://shop.example), got {value!r}"
        )
    return value


def _flag(env: dict[str, str], name: str) -> bool:
    value = (env.get(name) or "0").strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise SettingsError(f"{name} must be 1 or 0, got {value!r}")
    return value in ("1", "true")


def _seconds(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    """A duration in seconds; fractions allowed (tests shrink the webhook windows to moments)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def _log_format(env: dict[str, str], name: str) -> str:
    value = (env.get(name) or "plain").strip().lower()
    if value not in ("plain", "json"):
        raise SettingsError(f"{name} must be plain or json, got {value!r}")
    return value


def _metrics_token(env: dict[str, str], name: str) -> str | None:
    value = env.get(name) or None
    if value is not None and (
        len(value) < 16 or not value.isascii() or not value.isprintable() or " " in value
    ):
        # It guards the metrics of every shop: a short one could be guessed.
        raise SettingsError(f"{name} must be at least 16 printable ASCII characters, no spaces")
    return value


@dataclass(frozen=True)
class Settings:
    mongodb_uri: str | None = None
    database: str = "contactgraph"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=lambda: Path(".contactgraph"))
    smtp_url: str | None = None
    mail_from: str = "contactgraph <no-reply@localhost>"
    public_url: str | None = None
    max_body_bytes: int = 1_000_000
    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 5_000
    form_rate_per_minute: int = 10
    key_cache_seconds: int = 5
    # Browser apps on these origins may call the API (CORS); empty: none may.
    cors_origins: tuple[str, ...] = ()
    # Operations in one batched request (a JSON array body).
    max_batch: int = 10
    # Query cost (graph/cost.py): the most one operation may cost, and each
    # key's budget, a bucket of points restoring so many per second.
    cost_limit: int = 1_000
    throttle_bucket: int = 2_000
    throttle_restore: int = 100
    # The outbox (SMTP delivery): how often it looks for due messages, the
    # first retry delay (doubling up to the maximum), and when it gives up.
    outbox_poll_seconds: float = 5.0
    outbox_retry_first_seconds: float = 2.0
    outbox_retry_max_seconds: float = 300.0
    outbox_give_up_hours: float = 72.0
    # Operating it: log lines as plain text or JSON, the bearer token of
    # /metrics (unset: no /metrics), and how long a stopping server lets
    # requests in flight finish.
    log_format: str = "plain"
    metrics_token: str | None = None
    shutdown_grace_seconds: int = 20
    # Run the data migrations and build the indexes at start (`contactgraph
    # migrate`'s work) instead of only checking that they are done.
    migrate_on_start: bool = False
    # The embedded server's cache (MB); unused with MONGODB_URI.
    embedded_cache_mb: int = EMBEDDED_CACHE_MB
    # Outbound events (resolvers/event_delivery.py): plain http:// to localhost
    # allowed (development, tests), how often the worker looks, how long a claim
    # holds, one attempt's timeout, the retry delays, when a delivery is FAILED,
    # when an endpoint failing all along is disabled, how long a rotated-out
    # secret still signs, and how many deliveries one process sends at once.
    allow_insecure_webhooks: bool = False
    webhook_delivery: bool = True  # off: this process only records events, others send them
    webhook_poll_seconds: float = 2.0
    webhook_lease_seconds: float = 60.0
    webhook_timeout_seconds: float = 10.0
    webhook_retry_first_seconds: float = 5.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_give_up_seconds: float = 3 * 86_400.0
    webhook_disable_after_seconds: float = 5 * 86_400.0
    webhook_secret_overlap_seconds: float = 86_400.0
    webhook_concurrency: int = 8

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {
            "mongodb_uri": env.get("MONGODB_URI") or None,
            "database": env.get("CONTACTGRAPH_DATABASE") or "contactgraph",
            "host": env.get("CONTACTGRAPH_HOST") or "127.0.0.1",
            "port": _int(env, "CONTACTGRAPH_PORT", 8000, 0, 65535),
            "data_dir": Path(env.get("CONTACTGRAPH_DATA_DIR") or ".contactgraph"),
            "smtp_url": env.get("SMTP_URL") or None,
            "mail_from": env.get("CONTACTGRAPH_MAIL_FROM") or "contactgraph <no-reply@localhost>",
            "public_url": _public_url(env, "CONTACTGRAPH_PUBLIC_URL"),
            "form_rate_per_minute": _int(env, "CONTACTGRAPH_FORM_RATE", 10, 1, 100_000),
            "key_cache_seconds": _int(env, "CONTACTGRAPH_KEY_CACHE_SECONDS", 5, 0, 3600),
            "cors_origins": _origins(env, "CONTACTGRAPH_CORS_ORIGINS"),
            "max_batch": _int(env, "CONTACTGRAPH_MAX_BATCH", 10, 1, 100),
            "cost_limit": _int(env, "CONTACTGRAPH_COST_LIMIT", 1_000, 1, 1_000_000),
            "throttle_bucket": _int(env, "CONTACTGRAPH_THROTTLE_BUCKET", 2_000, 1, 100_000_000),
            "throttle_restore": _int(env, "CONTACTGRAPH_THROTTLE_RESTORE", 100, 1, 100_000_000),
            "log_format": _log_format(env, "CONTACTGRAPH_LOG_FORMAT"),
            "metrics_token": _metrics_token(env, "CONTACTGRAPH_METRICS_TOKEN"),
            "shutdown_grace_seconds": _int(env, "CONTACTGRAPH_SHUTDOWN_SECONDS", 20, 1, 3600),
            "migrate_on_start": _flag(env, "CONTACTGRAPH_MIGRATE_ON_START"),
            "embedded_cache_mb": embedded_cache_mb(env),
            "allow_insecure_webhooks": _flag(env, "CONTACTGRAPH_ALLOW_INSECURE_WEBHOOKS"),
            # On unless set to 0.
            "webhook_delivery": _flag(
                {"CONTACTGRAPH_WEBHOOK_DELIVERY": env.get("CONTACTGRAPH_WEBHOOK_DELIVERY") or "1"},
                "CONTACTGRAPH_WEBHOOK_DELIVERY",
            ),
            "webhook_poll_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_POLL_SECONDS", 2, 0.05, 3600
            ),
            "webhook_lease_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_LEASE_SECONDS", 60, 1, 3600
            ),
            "webhook_timeout_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_TIMEOUT_SECONDS", 10, 0.1, 300
            ),
            "webhook_retry_first_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_RETRY_FIRST_SECONDS", 5, 0.01, 3600
            ),
            "webhook_retry_max_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_RETRY_MAX_SECONDS", 3600, 0.01, 86_400
            ),
            "webhook_give_up_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_GIVE_UP_SECONDS", 3 * 86_400, 1, 30 * 86_400
            ),
            "webhook_disable_after_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 86_400, 1, 60 * 86_400
            ),
            "webhook_secret_overlap_seconds": _seconds(
                env, "CONTACTGRAPH_WEBHOOK_SECRET_OVERLAP_SECONDS", 86_400, 0, 30 * 86_400
            ),
            "webhook_concurrency": _int(env, "CONTACTGRAPH_WEBHOOK_CONCURRENCY", 8, 1, 64),
        }
        if values["cost_limit"] > values["throttle_bucket"]:  # type: ignore[operator]
            # An operation costing more than the whole bucket could never run.
            raise SettingsError(
                "CONTACTGRAPH_COST_LIMIT must not exceed CONTACTGRAPH_THROTTLE_BUCKET, "
                f"got {values['cost_limit']} > {values['throttle_bucket']}"
            )
        if values["smtp_url"] and not str(values["smtp_url"]).startswith(("smtp://", "smtps://")):
            raise SettingsError("SMTP_URL must start with smtp:// or smtps://")
        values["outbox_retry_max_seconds"] = float(
            _int(env, "CONTACTGRAPH_OUTBOX_RETRY_MAX_SECONDS", 300, 1, 86_400)
        )
        values["outbox_give_up_hours"] = float(
            _int(env, "CONTACTGRAPH_OUTBOX_GIVE_UP_HOURS", 72, 1, 24 * 30)
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def base_url(self) -> str:
        """Where links in e-mail point; the bound address unless a public URL is set."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"
