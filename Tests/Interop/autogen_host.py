"""Run AutoGen's own GrpcWorkerAgentRuntimeHost as a stand-in for agentd.

Usage: python autogen_host.py --listen 127.0.0.1:0

Prints exactly one line, ``listening on HOST:PORT``, to stdout once the server accepts gRPC
connections, then serves until SIGTERM or SIGINT. Port 0 picks a free port. Used by the interop
suite when INTEROP_HOST=autogen, so the suite can be checked against the reference host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

import grpc
from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntimeHost


def free_port(host: str) -> int:
    # GrpcWorkerAgentRuntimeHost does not report the port it bound, so pick one first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any free port)")
    args = parser.parse_args()

    host, _, port_text = args.listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        port = free_port(host)
    address = f"{host}:{port}"

    server = GrpcWorkerAgentRuntimeHost(address=address)
    server.start()

    # Wait until the server really accepts connections before announcing it.
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=15)

    print(f"listening on {address}", flush=True)
    await server.stop_when_signal(grace=1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
