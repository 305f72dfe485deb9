"""An AutoGen worker in its own process, for tests that need a worker to die abruptly.

Usage: python worker_proc.py HOST:PORT AGENT_TYPE

Registers AGENT_TYPE with an RPC handler that never returns, prints ``READY`` once registered and
``HANDLING <request id>`` when a request reaches the handler, then waits forever. The test kills
the process (SIGKILL) while a caller's RPC is pending, as a crashed worker would.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from autogen_core import MessageContext, RoutedAgent, rpc  # noqa: E402
from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime  # noqa: E402

from interop_support import InteropAnswer, InteropAsk, add_json_serializers  # noqa: E402


class Hanging(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("never answers")

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        print(f"HANDLING {ctx.message_id}", flush=True)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def main(address: str, agent_type: str) -> None:
    runtime = GrpcWorkerAgentRuntime(host_address=address)
    await runtime.start()
    add_json_serializers(runtime)
    await Hanging.register(runtime, agent_type, Hanging)
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
