"""A TCP proxy in front of the database that cuts a client's connection at a chosen command.

It reads the MongoDB wire protocol from the client (OP_MSG: a 16-byte
header, flags, then the command document), so it can drop the connection
exactly when, say, the third write of a transaction or its commit goes
out: either before the command reaches the server (it never runs) or
right after (it runs, but its reply is lost). Everything else passes
through untouched. This is a real network failure as the driver sees it,
on the embedded server and on MongoDB alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bson

OP_MSG = 2013
Command = dict[str, Any]


def command_of(message: bytes) -> Command | None:
    """The command document of an OP_MSG (header included), else None."""
    (op_code,) = struct.unpack_from("<i", message, 12)
    if op_code != OP_MSG or message[20] != 0:  # body section first (kind 0)
        return None
    (size,) = struct.unpack_from("<i", message, 21)
    return bson.decode(message[21 : 21 + size])


@dataclass
class Cut:
    """Which command to cut at, how often, and on which side of the server."""

    matches: Callable[[Command], bool]
    times: int = 1
    after_sending: bool = False  # True: the server runs the command, the reply is lost
    seen: list[Command] = field(default_factory=list)


class DroppingProxy:
    def __init__(self, host: str, port: int, cut: Cut) -> None:
        self.target = (host, port)
        self.cut = cut
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: Any) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    def _start(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        server_in, server_out = await asyncio.open_connection(*self.target)
        back = self._start(self._pipe(server_in, client_out))
        try:
            while True:
                header = await client_in.readexactly(16)
                (length,) = struct.unpack_from("<i", header)
                message = header + await client_in.readexactly(length - 16)
                command = command_of(message)
                cut = self.cut.times > 0 and command is not None and self.cut.matches(command)
                if cut:
                    assert command is not None
                    self.cut.times -= 1
                    self.cut.seen.append(command)
                    if self.cut.after_sending:
                        back.cancel()  # the reply must never reach the client
                        server_out.write(message)
                        await server_out.drain()
                        await asyncio.sleep(0.3)  # let the server run it before the line drops
                    break
                server_out.write(message)
                await server_out.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            for writer in (client_out, server_out):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
