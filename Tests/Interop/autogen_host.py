"""Run AutoGen's own GrpcWorkerAgentRuntimeHost as a stand-in for agentd.

Usage: python autogen_host.py --listen 127.0.0.1:0 [--max-message-bytes N] [--rpc-timeout SECONDS]

Prints exactly one line, ``listening on HOST:PORT``, to stdout once the server accepts gRPC
connections, then serves until SIGTERM or SIGINT. Port 0 picks a free port. Used by the interop
suite when INTEROP_HOST=autogen, so the suite can be checked against the reference host.

The options after --listen are agentd's, so tests with a ``host_args`` marker can start either host.
--max-message-bytes becomes gRPC's ``grpc.max_receive_message_length`` (AutoGen's host then ends the
stream of a worker that sends more: that is gRPC's behaviour, not agentd's). --rpc-timeout is
accepted and ignored, with a note on stderr: AutoGen's host has no RPC deadline.
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
    parser.add_argument(
        "--max-message-bytes", type=int, default=None,
        help="passed to gRPC as grpc.max_receive_message_length",
    )
    parser.add_argument(
        "--rpc-timeout", type=float, default=None,
        help="ignored: AutoGen's host has no RPC deadline (accepted for agentd compatibility)",
    )
    args = parser.parse_args()
    if args.rpc_timeout is not None:
        print(f"autogen_host: --rpc-timeout {args.rpc_timeout} ignored: AutoGen's host has no RPC deadline",
              file=sys.stderr, flush=True)
    grpc_options = []
    if args.max_message_bytes is not None:
        grpc_options.append(("grpc.max_receive_message_length", args.max_message_bytes))

    host, _, port_text = args.listen.rpartition(":")
    port = int(port_text)
    if port == 0:
        port = free_port(host)
    address = f"{host}:{port}"

    server = GrpcWorkerAgentRuntimeHost(address=address, extra_grpc_config=grpc_options or None)
    server.start()

    # Wait until the server really accepts connections before announcing it.
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=15)

    print(f"listening on {address}", flush=True)
    await server.stop_when_signal(grace=1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
