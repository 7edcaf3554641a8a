"""The garbage collector's policy for a long-running node: what never dies is not scanned again.

A node holds many long-lived objects: the modules it imported (Twisted,
Autobahn, psycopg2, the route table: about 57,000 container objects once
started) and every connected socket's state (a few hundred objects each).
CPython's cyclic collector runs a young collection every 700 allocations of
container objects, and from time to time a full one that walks everything
alive.  Measured on the connect path (``bench/bench_wire.py``, 5,000
sockets connected in turn), the collector was 23-34% of the CPU: young
collections every two connects, and full ones whose cost grows with every
socket already connected.

Two standard remedies, both in the ``gc`` module:

* ``gc.freeze()`` once start-up is done moves everything alive into a
  permanent generation that no collection walks again (Instagram's use in
  its Django servers is the usual reference).  The garbage of start-up is
  collected first.
* A young threshold of `YOUNG_THRESHOLD` instead of 700: a connect or a
  burst of events allocates hundreds of containers that die within the
  reactor turn, so a larger nursery collects far fewer times for the same
  survivors.  It costs at most that many young objects of memory, a few
  megabytes.

Reference cycles are still collected, only less often.  Only the process
twistd runs (`umoc.tap.TwistdService`) settles, once it listens; tests,
which start many nodes in one process, keep Python's defaults.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle"]

#: Container allocations (less deallocations) between two young collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Collect start-up's garbage, freeze what is left, and widen the nursery (idempotent)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
