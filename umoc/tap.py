"""``twistd umoc``: command-line options and `makeService`.

What only the process does lives here, not in `UmocService` (which tests
start several times in one process): the log observer chosen by
``logging.level`` and ``logging.format``, and the exit status.

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
import signal
import sys
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorThreads
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

import umoc
from umoc.config import DATA_DIR_ENV, Config, ConfigError, data_dir_override, load_config, with_overrides
from umoc.logs import log_observer
from umoc.service import UmocService
from umoc.transport import readydispatch

__all__ = ["EXIT_START_FAILED", "Options", "TwistdService", "makeService"]

#: The exit status of a node that could not start.
EXIT_START_FAILED = 1

log = Logger()


class Options(usage.Options):
    """``--config`` names the YAML file; ``--listen`` and ``--data-dir`` (or ``UMOC_DATA_DIR``) override it."""

    optParameters = [
        ["config", "c", None, "YAML configuration file (default: built-in defaults)"],
        ["listen", "l", None, 'Endpoint to listen on, e.g. "tcp:8080:interface=127.0.0.1"'],
        [
            "data-dir",
            "d",
            None,
            f"Directory for the SQLite database and uploads (default: ${DATA_DIR_ENV}, else the file's)",
        ],
    ]

    def opt_version(self) -> None:
        """Print UMOC's version (with Twisted's and Python's) and exit."""
        # usage.Options shows this docstring in --help; twistd's own --version (before "umoc") prints Twisted's only.
        import twisted

        print(f"umoc {umoc.__version__} (Twisted {twisted.__version__}, Python {sys.version.split()[0]})")
        sys.exit(0)

    opt_V = opt_version

    def postOptions(self) -> None:
        try:
            config = load_config(self["config"])
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from exc
        overrides: dict[str, Any] = {}
        if self["listen"]:
            overrides["listen"] = self["listen"]
        data_dir = data_dir_override(self["data-dir"])
        if data_dir:
            overrides["data_dir"] = data_dir
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
    """`UmocService` as twistd runs it: with the process's log observer and exit status."""

    settle_gc = True

    def __init__(self, config: Config, reactor: Any, observer: ILogObserver | None) -> None:
        super().__init__(config, reactor)
        self._observer = observer
        self.ready.addErrback(self._start_failed_exit)

    def setServiceParent(self, parent: Any) -> None:
        # twistd parents this service to its Application, then asks the Application for an
        # ILogObserver (AppLogger.start) before it opens its own default log.
        if self._observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self._observer)
        super().setServiceParent(parent)

    def startService(self) -> None:
        # The process's own reactor: its ready sockets dispatched without Twisted's per-event log-context calls.
        readydispatch.install(self._reactor)
        super().startService()

    def _start_failed_exit(self, failure: Any) -> None:
        # Already logged in one line by UmocService._start_failed.
        atexit.register(_exit_now, EXIT_START_FAILED)


def _log_stream(twistd: Any) -> IO[Any] | None:
    """Where twistd would log, or None when it was told how (``--syslog``, ``--logger``): its choice stands."""
    if twistd is None:
        return sys.stdout
    if twistd.get("syslog") or twistd.get("logger"):
        return None
    name = twistd.get("logfile") or ""
    if name == "-" or (twistd.get("nodaemon") and not name):
        return sys.stdout
    # No rotation by size (twistd's LogFile would rotate at 1 MB and keep every old file):
    # logrotate moves the file and sends SIGUSR1, on which the file is reopened.
    logfile = LogFile.fromFullPath(name or "twistd.log", rotateLength=None)
    _reopen_on_sigusr1(logfile)
    return logfile


def _reopen_on_sigusr1(logfile: LogFile) -> None:
    """SIGUSR1 reopens ``--logfile`` (after logrotate moved it), unless something else handles SIGUSR1.

    twistd installs such a handler only for the log it opens itself, which
    it does not when the application brings its own observer, as UMOC does.
    """
    if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, None):
        return

    def reopen(signum: int, frame: Any) -> None:
        from twisted.internet import reactor

        cast(IReactorThreads, reactor).callFromThread(logfile.reopen)

    signal.signal(signal.SIGUSR1, reopen)


def makeService(options: Options) -> Any:
    # Imported here, not at the top: importing the reactor installs it, and
    # twistd must have chosen its reactor first.
    from twisted.internet import reactor

    config = options.config
    stream = _log_stream(getattr(options, "parent", None))
    observer = log_observer(config.logging.level, config.logging.format, stream) if stream is not None else None
    try:
        return TwistdService(config, reactor, observer)
    except OSError as exc:  # the data directory or SQLite file cannot be made
        raise SystemExit(f"UMOC could not start: cannot create {exc.filename}: {exc.strerror}") from None
