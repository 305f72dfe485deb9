"""A plugin that segfaults in a handler, next to healthy ones, under AutoGen Python workers on
`agentd run`'s embedded host: only the runtime process dies and is restarted; the host, the Python
workers' connections and their own agents keep serving; the crashing RPC is answered with an
error naming the plugin and the signal (AutoGen's worker would wait forever for an answer if the
host's process died with it)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type

from interop_support import Echo as PythonEcho
from interop_support import InteropAnswer, InteropAsk, run, worker
from runtime_support import ECHO, OUR_HOST, RuntimeLauncher, launcher_fixture

CRASHER = "libHandlerCrashPlugin.so"
FAST = 10.0


@pytest.fixture(params=[OUR_HOST])
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


@dataclass
class Echo:
    text: str


@dataclass
class Crash:
    pass


@pytest.mark.agentd_only
def test_segfaulting_plugin_under_python_load(start_runtime: RuntimeLauncher) -> None:
    """Two Python workers: one serves a Python agent and calls the C echo agent in a loop; the
    other calls the crashing plugin. The crashing RPC raises at once with the plugin's name and
    SIGSEGV; the echo loop is answered again after the restart; the Python agent answers across
    the crash (its worker's connection never broke); the host's process is the same."""
    setup = start_runtime([ECHO, CRASHER])
    supervisor_pid = setup.runtime.proc.pid

    async def body() -> None:
        async with worker(setup.address) as server, worker(setup.address) as caller:
            for runtime in (server, caller):
                runtime.add_message_serializer(try_get_known_serializers_for_type(Echo))
                runtime.add_message_serializer(try_get_known_serializers_for_type(Crash))
            await PythonEcho.register(server, "py-echo", lambda: PythonEcho("server"))
            stop = asyncio.Event()
            answered: List[float] = []
            failed: List[str] = []

            async def load() -> None:
                while not stop.is_set():
                    try:
                        reply = await asyncio.wait_for(server.send_message(Echo(text="load"), AgentId("echo", "k")), FAST)
                        assert reply == Echo(text="load")
                        answered.append(time.monotonic())
                    except asyncio.TimeoutError:
                        failed.append("timeout")
                    except Exception as error:  # the runtime restarting: answered with an error
                        failed.append(str(error))
                        await asyncio.sleep(0.01)

            loader = asyncio.create_task(load())
            await asyncio.wait_for(caller.send_message(Echo(text="warm"), AgentId("echo", "k")), FAST)

            started = time.monotonic()
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(caller.send_message(Crash(), AgentId("segfault", "x")), FAST)
            assert not isinstance(caught.value, asyncio.TimeoutError), "the crashing RPC was never answered"
            text = str(caught.value)
            assert "handler-crash" in text and "SIGSEGV" in text and "not redelivered" in text, text
            crash_answered = time.monotonic()
            assert crash_answered - started < FAST

            # The Python agent answers across the crash: its worker never lost the host.
            answer = await asyncio.wait_for(caller.send_message(InteropAsk(text="hi"), AgentId("py-echo", "a")), FAST)
            assert isinstance(answer, InteropAnswer) and answer.answered_by == "server:a", answer

            # The C echo agent answers again (a new runtime process registered it again).
            deadline = time.monotonic() + 30
            while not answered or answered[-1] <= crash_answered:
                assert time.monotonic() < deadline, f"echo not answered since the crash; errors: {failed[-3:]}"
                await asyncio.sleep(0.05)
            stop.set()
            await loader
            assert "timeout" not in failed, f"an echo RPC hung: {failed}"
            assert setup.runtime.proc.poll() is None and setup.runtime.proc.pid == supervisor_pid

    run(body())
    assert "crashed with SIGSEGV while handling RPC 'Crash' to segfault/x" in setup.runtime.stderr()
