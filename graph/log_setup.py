"""How the process logs: plain lines on a terminal, or one JSON object per line for a log system.

Every line written while a request is handled carries that request's id
(`X-Request-Id`, graph/http/request_log.py): the id lives in a context
variable, and a filter on the handler copies it into each record, whatever
logger wrote it (ours, uvicorn's, the driver's).

Nothing personal belongs in a log line. Our own lines are built from ids,
codes and numbers only; as a last guard, e-mail addresses are masked in
whatever else reaches the handler (exception messages, tracebacks: a
duplicate-key error quotes the key it collided on).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from contextvars import ContextVar
from typing import Any

import orjson

FORMATS = ("plain", "json")
# The id of the request being handled in this task, None outside requests.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
# The structured fields of a record (the request line's), kept apart from its message.
FIELDS = "fields"

_EMAIL = re.compile(r"[\w.+%-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_PLAIN = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def mask_emails(text: str) -> str:
    return _EMAIL.sub("<email>", text) if "@" in text else text


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get() or "-"
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_PLAIN)

    def format(self, record: logging.LogRecord) -> str:
        return mask_emails(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_emails(record.getMessage()),
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            line["requestId"] = request_id
        fields = getattr(record, FIELDS, None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = mask_emails(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = mask_emails(record.exc_text)
        return orjson.dumps(line, default=str).decode()


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for the whole process, uvicorn's loggers included (uvicorn applies it in every worker).

    uvicorn's access log is off: the request line (graph/http/request_log.py)
    replaces it, and it would log the query string (`GET /graphql?query=…`,
    variables with e-mail addresses in them) and the unsubscribe token in the path.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    formatter = (
        "graph.log_setup.JsonFormatter"
        if log_format == "json"
        else "graph.log_setup.PlainFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "graph.log_setup.RequestIdFilter"}},
        "formatters": {"contactgraph": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "contactgraph",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own loggers write through the root handler, not handlers of their own.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # The driver's DEBUG command log holds whole commands, the shop's data in them.
            "pymongo": {"level": "WARNING"},
        },
    }


def configure_logging(log_format: str, level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(logging_config(log_format, level))
    skip_unused_record_fields()


def skip_unused_record_fields() -> None:
    """No caller frame, thread or process look-up for each record: no line shows them.

    That look-up is half of what a log line costs, and every request writes one.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
