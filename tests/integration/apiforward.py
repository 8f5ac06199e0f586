"""A byte forwarder between a TCP address and a unix socket, one direction per process.

The vendor-mode harness (``vendorkit.ApiOnlyRunner``) runs two of them to let a network
namespace that has nothing but a loopback interface reach the kind API server, and only it:

* on the host: ``apiforward.py unix-to-tcp SOCKET 127.0.0.1:APIPORT`` listens on a unix
  socket on the filesystem and connects each client to the API server's published port;
* in the namespace: ``ip netns exec NS python3 apiforward.py tcp-to-unix 127.0.0.1:APIPORT SOCKET``
  listens on the namespace's own ``127.0.0.1:APIPORT`` and connects each client to that socket
  (a filesystem socket is reachable from every network namespace; TCP is not).

Bytes pass through untouched (TLS ends at the API server, so the kubeconfig is unchanged).
Bounded: at most ``--max-connections`` at once (more are closed at once), the process exits
after ``--lifetime`` seconds or on SIGTERM/SIGINT, and removes the unix socket it listened on.
Prints ``ready`` on stdout once it listens.  Standard library only: it runs under any python3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

CHUNK = 64 * 1024


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side so it sees the EOF too."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Forwarder:
    def __init__(self, mode: str, listen: str, connect: str, max_connections: int) -> None:
        self.mode, self.listen, self.connect = mode, listen, connect
        self.slots = max_connections
        self.active = 0

    async def open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.mode == "unix-to-tcp":
            host, port = parse_hostport(self.connect)
            return await asyncio.open_connection(host, port)
        return await asyncio.open_unix_connection(self.connect)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.slots:
            writer.close()
            return
        self.active += 1
        upstream_writer = None
        try:
            up_reader, upstream_writer = await asyncio.wait_for(self.open_upstream(), timeout=10)
            await asyncio.gather(pipe(reader, upstream_writer), pipe(up_reader, writer))
        except OSError as exc:  # TimeoutError included
            print(f"apiforward: {self.connect}: {exc}", file=sys.stderr, flush=True)
        finally:
            self.active -= 1
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def serve(self, lifetime: float) -> None:
        if self.mode == "unix-to-tcp":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen)
            server = await asyncio.start_unix_server(self.handle, path=self.listen)
            os.chmod(self.listen, 0o600)
        else:
            host, port = parse_hostport(self.listen)
            server = await asyncio.start_server(self.handle, host, port, reuse_address=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("ready", flush=True)
        try:
            async with server:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=lifetime)
        finally:
            if self.mode == "unix-to-tcp":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.listen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("unix-to-tcp", "tcp-to-unix"))
    ap.add_argument("listen", help="unix socket path (unix-to-tcp) or HOST:PORT (tcp-to-unix)")
    ap.add_argument("connect", help="HOST:PORT (unix-to-tcp) or unix socket path (tcp-to-unix)")
    ap.add_argument("--max-connections", type=int, default=128,
                    help="concurrent connections; more are closed at once (default 128)")
    ap.add_argument("--lifetime", type=float, default=4 * 3600,
                    help="exit after this many seconds (default 4 h: a full suite run is ~1 h)")
    args = ap.parse_args(argv)
    if args.mode == "unix-to-tcp":
        parse_hostport(args.connect)
    else:
        parse_hostport(args.listen)
    asyncio.run(Forwarder(args.mode, args.listen, args.connect, args.max_connections).serve(args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
