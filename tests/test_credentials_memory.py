"""Hashing passwords in many threads does not leave the process holding scrypt's memory."""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial import unittest

SCRIPT = """
import concurrent.futures
from umoc.credentials import hash_password

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024

before = rss_mb()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    list(pool.map(hash_password, ["password %d" % i for i in range(24)]))
print(rss_mb() - before)
"""


class ScryptMemoryTests(unittest.TestCase):
    def test_memory_of_concurrent_hashes_is_given_back(self) -> None:
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("reads /proc")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": root}
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
        grown = int(subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                                   timeout=60, cwd=root, env=env).stdout)
        # Eight threads each touching 16 MB would keep ~128 MB without the fix.
        self.assertLess(grown, 40)
