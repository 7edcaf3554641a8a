"""UMOC: a self-hosted chat server speaking Socket.IO over WebSocket.

``__version__`` is the one place the release is written: setup.py reads it
from this file's text (without importing anything), ``twistd umoc
--version``, ``/healthz``, the ``umoc_build_info`` metric and the client contract
(docs/asyncapi.yaml, docs/umoc.d.ts) show it.  The
CHANGELOG's compatibility table maps each release to its schema version.
"""

__version__ = "0.3.0"
