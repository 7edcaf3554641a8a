"""``twistd umoc``: command-line options over the config file, and a makeService that only wires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from twisted.internet import defer, reactor, task
from twisted.python import usage
from twisted.trial import unittest

import umoc
from tests.support.daemon import TWISTD
from umoc.tap import Options, _log_stream, makeService

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "etc", "umoc.yaml")


class OptionsTests(unittest.TestCase):
    def test_overrides_replace_config_values(self) -> None:
        options = Options()
        options.parseOptions(["--config", EXAMPLE, "--listen", "tcp:0", "--data-dir", "/tmp/x"])
        self.assertEqual(options.config.server.listen, "tcp:0")
        self.assertEqual(options.config.server.data_dir, "/tmp/x")

    def test_umoc_data_dir_overrides_the_file_and_data_dir_overrides_both(self) -> None:
        """The same precedence as ``umoc-admin``'s (`umoc.config.data_dir_override`): both find one database."""
        self.patch(os, "environ", {**os.environ, "UMOC_DATA_DIR": "/srv/umoc"})
        options = Options()
        options.parseOptions(["--config", EXAMPLE])
        self.assertEqual(options.config.server.data_dir, "/srv/umoc")
        options = Options()
        options.parseOptions(["--config", EXAMPLE, "--data-dir", "/tmp/x"])
        self.assertEqual(options.config.server.data_dir, "/tmp/x")

    def test_bad_config_is_a_usage_error_naming_the_key(self) -> None:
        path = os.path.join(tempfile.mkdtemp(), "bad.yaml")
        with open(path, "w") as f:
            f.write("sessions:\n  ttl: forever\n")
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--config", path])
        self.assertIn("sessions.ttl", str(caught.exception))

    def test_make_service_only_wires(self) -> None:
        options = Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--data-dir", tempfile.mkdtemp()])
        service = makeService(options)
        self.addCleanup(service.node.services.storage.close)
        self.assertFalse(service.running)
        self.assertIsNone(service.port)

    def test_the_twistd_service_gives_its_reactor_the_light_dispatch_before_starting(self) -> None:
        """`umoc.transport.readydispatch` on the reactor the service runs, as it starts (never at wiring)."""
        from umoc import tap
        from umoc.service import UmocService

        installed: list[object] = []
        started: list[bool] = []
        self.patch(tap.readydispatch, "install", installed.append)
        self.patch(UmocService, "startService", lambda service: started.append(bool(installed)))
        options = Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--data-dir", tempfile.mkdtemp()])
        service = makeService(options)
        self.addCleanup(service.node.services.storage.close)
        self.assertEqual(installed, [])
        service.startService()
        self.assertEqual((installed, started), ([reactor], [True]))

    def test_plugin_is_discoverable_by_twistd(self) -> None:
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins

        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("umoc", names)

    def test_twistd_umoc_version_prints_umocs_version(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run(
            [sys.executable, "-c", TWISTD, "umoc", "--version"], cwd=root, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, rf"^umoc {umoc.__version__} \(Twisted \d+\.\d+\.\d+, Python 3\.")


class LogFileTests(unittest.TestCase):
    def test_logfile_is_not_rotated_by_size_and_sigusr1_reopens_it_for_logrotate(self) -> defer.Deferred[None]:
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        path = os.path.join(tempfile.mkdtemp(), "umoc.log")
        stream = _log_stream({"logfile": path})
        assert stream is not None
        self.addCleanup(stream.close)
        self.assertIsNone(getattr(stream, "rotateLength", 0))
        stream.write("before\n")
        stream.flush()
        os.rename(path, path + ".1")  # what logrotate does, then it signals
        handler = signal.getsignal(signal.SIGUSR1)
        assert callable(handler)
        handler(signal.SIGUSR1, None)

        def written() -> None:
            stream.write("after\n")
            stream.flush()
            with open(path) as new, open(path + ".1") as old:
                self.assertEqual((old.read(), new.read()), ("before\n", "after\n"))

        return task.deferLater(reactor, 0.01, written)
