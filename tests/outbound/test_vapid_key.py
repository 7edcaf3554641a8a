"""The node's VAPID key: generated once per data directory, even by processes starting together."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial import unittest

from umoc.outbound import load_or_create_vapid_key
from umoc.outbound.webpush import VAPID_FILE

_CREATE = (
    "import sys; from pathlib import Path;"
    " from umoc.outbound import load_or_create_vapid_key as f; f(Path(sys.argv[1]))"
)


class VapidKeyTests(unittest.TestCase):
    def test_the_key_is_made_once_and_read_back(self) -> None:
        folder = Path(tempfile.mkdtemp())
        first = load_or_create_vapid_key(folder)
        again = load_or_create_vapid_key(folder)
        self.assertEqual(first.public_key, again.public_key)
        self.assertEqual(os.stat(folder / VAPID_FILE).st_mode & 0o777, 0o600)
        self.assertEqual(sorted(p.name for p in folder.iterdir()), [VAPID_FILE])

    def test_processes_starting_together_agree_on_one_whole_key(self) -> None:
        """Each writes its own temporary file: none truncates another's, the first link wins."""
        for _ in range(3):
            folder = Path(tempfile.mkdtemp()) / "data"
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            procs = [
                subprocess.Popen([sys.executable, "-c", _CREATE, str(folder)], env=env, stderr=subprocess.PIPE)
                for _ in range(6)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=60)
                self.assertEqual(proc.returncode, 0, err.decode(errors="replace"))
            self.assertEqual(sorted(p.name for p in folder.iterdir()), [VAPID_FILE])
            load_or_create_vapid_key(folder)  # a whole PEM
