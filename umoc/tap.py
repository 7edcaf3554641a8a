"""``twistd umoc``: command-line options and `makeService`."""

from __future__ import annotations

from typing import Any

from twisted.python import usage

from umoc.config import Config, ConfigError, load_config, with_overrides
from umoc.service import UmocService

__all__ = ["Options", "makeService"]


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


def makeService(options: Options) -> Any:
    # Imported here, not at the top: importing the reactor installs it, and
    # twistd must have chosen its reactor first.
    from twisted.internet import reactor

    return UmocService(options.config, reactor)
