"""The log observer of ``twistd umoc``: ``logging.level`` and ``logging.format``.

``text`` is Twisted's own line format.  ``json`` writes one JSON object per
line for log shippers (journald, Loki, Elasticsearch), with four keys that
are always there and never renamed::

    {"time": "2026-05-01T12:00:00.123+00:00", "level": "info",
     "namespace": "umoc.web.auth", "message": "Login succeeded for alice from 203.0.113.7",
     "event": "login", "username": "alice", "client": "203.0.113.7", ...}

and after them the event's structured fields (the keyword arguments of the
``log.info(...)`` call) as they are, or as text when JSON has no type for
them.  A field that would shadow one of the four keys is written as
``_<name>``; a failure's traceback is ``traceback``.  Fields named like a
secret (``token``, ``password``) are written as ``[redacted]``, a last
line of defence: the code never logs them in the first place.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)

__all__ = ["json_line", "log_observer"]

#: The keys every JSON line starts with.
STABLE_KEYS = ("time", "level", "namespace", "message")
#: Keys of legacy (``twisted.python.log``) events that repeat what the stable keys say.
_LEGACY_KEYS = frozenset({"message", "time", "system", "isError", "format", "why", "failure", "printed"})
_SECRET_WORDS = ("token", "password", "secret")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and len(value) <= 100:
        return [_jsonable(v) for v in value]
    return str(value)


def json_line(event: LogEvent) -> str:
    """One event as one line of JSON (see the module docstring)."""
    level = event.get("log_level", LogLevel.info)
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), UTC).isoformat(timespec="milliseconds"),
        "level": getattr(level, "name", str(level)),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS:
            continue
        name = f"_{key}" if key in record else key
        lowered = key.lower()
        record[name] = "[redacted]" if any(w in lowered for w in _SECRET_WORDS) else _jsonable(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def log_observer(level: str, format: str, stream: IO[Any]) -> ILogObserver:
    """An observer writing ``stream`` in ``format`` (text or json), dropping events below ``level``."""
    writer: ILogObserver = textFileLogObserver(stream) if format == "text" else FileLogObserver(stream, json_line)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(writer, [predicate])
