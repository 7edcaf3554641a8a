"""Reference: python-socketio's AsyncServer on aiohttp running the bench's tiny app.

    python bench/compare/pysio_server.py PORT

The setup python-socketio's documentation recommends for asyncio
(``socketio.AsyncServer(async_mode="aiohttp")`` attached to an aiohttp
``web.Application``).  ``message`` -> ``message-back``, ``message-with-ack``
-> ack with the same arguments, ``broadcast`` -> ``broadcast`` to every
connected socket (one room).  WebSocket only, no compression, default
heartbeat, no logging: the same settings as the other bench servers.
"""

from __future__ import annotations

import sys
from typing import Any

import socketio
from aiohttp import web

sio = socketio.AsyncServer(
    async_mode="aiohttp",
    transports=["websocket"],
    http_compression=False,
    cors_allowed_origins="*",
    logger=False,
    engineio_logger=False,
)


@sio.event
async def connect(sid: str, environ: dict, auth: Any = None) -> None:
    await sio.enter_room(sid, "all")


@sio.on("message")
async def message(sid: str, *args: Any) -> None:
    await sio.emit("message-back", args[0] if len(args) == 1 else list(args), to=sid)


@sio.on("message-with-ack")
async def message_with_ack(sid: str, *args: Any) -> Any:
    return args if len(args) != 1 else args[0]


@sio.on("broadcast")
async def broadcast(sid: str, *args: Any) -> None:
    await sio.emit("broadcast", args[0] if len(args) == 1 else list(args), room="all")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    app = web.Application()
    sio.attach(app)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
