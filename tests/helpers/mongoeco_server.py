"""Start a mongoeco wire server (a MongoDB wire-protocol server) for the test suite.

Runs under Python >= 3.13 with mongoeco[wire] installed (see tests/helpers/mongo_server.py).
Usage: mongoeco_server.py [--port N] [--sqlite PATH] [--user NAME:PASSWORD]

Prints the server's URI on one line once it accepts connections, then serves until SIGTERM or
until its standard input closes (the parent died), so a crashed test run leaves no server behind.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


async def serve(args: argparse.Namespace) -> None:
    from mongoeco.wire import AsyncMongoEcoProxyServer, WireAuthUser

    if args.sqlite:
        from mongoeco.engines.sqlite import SQLiteEngine

        engine = SQLiteEngine(args.sqlite)
    else:
        from mongoeco.engines.memory import MemoryEngine

        engine = MemoryEngine()
    users = ()
    if args.user:
        name, _, password = args.user.partition(":")
        users = (WireAuthUser(name, password),)
    server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=args.port, auth_users=users)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(65536) else None)
    async with server:
        address = server.address
        print(f"mongodb://{address.host}:{address.port}/?directConnection=true", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sqlite", default=None)
    parser.add_argument("--user", default=None)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
