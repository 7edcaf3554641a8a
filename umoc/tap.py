"""``twistd umoc``: command-line options and `makeService`.

What only the process does lives here, not in `UmocService` (which tests
start several times in one process): the exit status.

twistd exits 0 whenever its reactor stops, so a node that cannot start
would look like a clean stop to systemd's ``Restart=on-failure``.
`TwistdService` therefore ends the process with status 1 once twistd has
finished its own shutdown (pid file removed, logs flushed), through an
``atexit`` hook: twistd offers no exit status of its own, and an exception
raised in a shutdown trigger is only logged.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from twisted.logger import Logger
from twisted.python import usage

from umoc.config import Config, ConfigError, load_config, with_overrides
from umoc.service import UmocService

__all__ = ["EXIT_START_FAILED", "Options", "TwistdService", "makeService"]

#: The exit status of a node that could not start.
EXIT_START_FAILED = 1

log = Logger()


class Options(usage.Options):
    """``--config`` names the YAML file; ``--listen`` and ``--data-dir`` override it."""

    optParameters = [
        ["config", "c", None, "YAML configuration file (default: built-in defaults)"],
        ["listen", "l", None, 'Endpoint to listen on, e.g. "tcp:8080:interface=127.0.0.1"'],
        ["data-dir", "d", None, "Directory for the SQLite database and uploads"],
    ]

    def postOptions(self) -> None:
        try:
            config = load_config(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from exc
        overrides: dict[str, Any] = {}
        if self["listen"]:
            overrides["listen"] = self["listen"]
        if self["data-dir"]:
            overrides["data_dir"] = self["data-dir"]
        self.config: Config = with_overrides(config, server=overrides)


def _exit_now(status: int) -> None:
    """The last exit hook: flush what twistd left unflushed, then leave with ``status``."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


class TwistdService(UmocService):
    """`UmocService` as twistd runs it: with the process's exit status."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__(config, reactor)
        self.ready.addErrback(self._start_failed_exit)

    def _start_failed_exit(self, failure: Any) -> None:
        # Already logged in one line by UmocService._start_failed.
        atexit.register(_exit_now, EXIT_START_FAILED)


def makeService(options: Options) -> Any:
    # Imported here, not at the top: importing the reactor installs it, and
    # twistd must have chosen its reactor first.
    from twisted.internet import reactor

    try:
        return TwistdService(options.config, reactor)
    except OSError as exc:  # the data directory or SQLite file cannot be made
        raise SystemExit(f"UMOC could not start: cannot create {exc.filename}: {exc.strerror}") from None
