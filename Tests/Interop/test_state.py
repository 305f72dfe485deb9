"""`agentd state save|load|delete` end to end: the state protocol over the control channel.

The CLI opens a control channel to the host and addresses ``agentid=TYPE/KEY``; the host routes
the request to the control channel of the runtime serving TYPE (``agentd run``), which answers
to the CLI's ``clientid=``. Every test runs in both setups of runtime_support.py: AutoGen's own
GrpcWorkerAgentRuntimeHost (``autogen-host``: the Python host routes the control messages
between the CLI's channel and the runtime's, and forwards agentd's DeleteStateRequest as it
forwards anything) and the runtime's embedded host (``our-host``).

Plugins: the example ``echo`` (binary state: a version byte and a count, saved as a data URL)
and the test plugin's ``memo`` (its state is the bytes it was given, ``null`` when fresh; RPC
``Recall`` answers with it), from Tests/Plugins/TestAgentsPlugin.

The runtime answers from its agents and their state store (issue 12; the default ``[state]``: a
SQLite file next to the test's INI file): what load puts in is what save gives back, and what
the agent runs with; delete starts the agent afresh.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type

from conftest import agentd_path
from interop_support import run, worker
from runtime_support import (
    AUTOGEN_HOST,
    ECHO,
    OUR_HOST,
    RawJson,
    RawJsonSerializer,
    RuntimeLauncher,
    launcher_fixture,
)

TEST_AGENTS = "libTestAgentsPlugin.so"
# How long an answer that should come at once may take.
FAST = 5.0


@pytest.fixture(params=(AUTOGEN_HOST, OUR_HOST))
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


@dataclass
class Echo:
    text: Any


@dataclass
class Recall:
    """Asks a memo agent for its state (answered with a `Memo` whose payload is the state)."""


@dataclass
class CliResult:
    argv: List[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.2f}s\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


def state(*args: str, timeout: float = FAST) -> CliResult:
    """Runs ``agentd state ARGS --timeout TIMEOUT``; the process itself gets TIMEOUT + 10 s."""
    argv = [str(agentd_path()), "state", *args, "--timeout", str(timeout)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10, env={**os.environ, "LC_ALL": "C.UTF-8"})
    return CliResult(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def succeeded(result: CliResult) -> CliResult:
    """``result``, which must have exited 0."""
    assert result.returncode == 0, str(result)
    return result


def data_url(raw: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(raw).decode()


def echo_state(count: int) -> str:
    """The echo plugin's state as save prints it: version 1, then the count (8 bytes, little-endian)."""
    return data_url(bytes([1]) + count.to_bytes(8, "little"))


async def recall(address: str, key: str) -> bytes:
    """The state memo/KEY runs with, asked by an AutoGen worker (RPC Recall -> Memo)."""
    async with worker(address) as caller:
        caller.add_message_serializer(try_get_known_serializers_for_type(Recall))
        caller.add_message_serializer(RawJsonSerializer("Memo"))
        answer = await asyncio.wait_for(caller.send_message(Recall(), AgentId("memo", key)), FAST)
        assert isinstance(answer, RawJson), f"answer not decoded as Memo: {answer!r}"
        return answer.text


# --- Routing, and what is refused before or without an agent ------------------------------------


def test_requests_are_answered_through_the_host(start_runtime: RuntimeLauncher) -> None:
    """save, load and delete for a served agent each come back through the host, fast: the CLI's
    channel and the runtime's both work; so does the runtime's error answer (an agent type
    without snapshot/restore)."""
    setup = start_runtime([ECHO, TEST_AGENTS])
    for args in (["save"], ["load", "--json", '{"a": 1}'], ["delete"]):
        result = succeeded(state(args[0], "--host", setup.address, "--agent", "memo/routed", *args[1:]))
        assert result.seconds < FAST, str(result)
    result = state("save", "--host", setup.address, "--agent", "publisher/p")
    assert result.returncode == 1, str(result)
    assert "the host or the agent's runtime answered with an error: " in result.stderr, str(result)
    assert "keeps no state" in result.stderr, str(result)


def test_unserved_agent_type(start_runtime: RuntimeLauncher) -> None:
    """A request for a type nobody serves: agentd's host answers with an error naming the
    destination (exit 1); AutoGen's host drops it, so the CLI says nothing came back (exit 3)."""
    setup = start_runtime([ECHO])
    result = state("save", "--host", setup.address, "--agent", "nobody/k", timeout=2)
    if setup.kind == OUR_HOST:
        assert result.returncode == 1, str(result)
        assert "no control channel serves destination 'agentid=nobody/k'" in result.stderr, str(result)
    else:
        assert result.returncode == 3, str(result)
        assert f"no answer from the host at {setup.address} within 2 s" in result.stderr, str(result)
        assert result.seconds >= 2, str(result)


def test_malformed_input_is_refused_before_sending(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """--json that is not JSON, and a --file holding a broken data URL, are refused by the CLI
    with the position or the problem named (usage error, exit 64)."""
    setup = start_runtime([ECHO])
    result = state("load", "--host", setup.address, "--agent", "echo/k", "--json", '{"count": 3,}')
    assert result.returncode == 64, str(result)
    assert "--json is not valid JSON: line 1, column 13 (byte 12): expected a member name (a string) after ','" in result.stderr, str(result)
    broken = tmp_path / "broken.state"
    broken.write_text("data:application/octet-stream;base64,AQI\n", encoding="utf-8")
    result = state("load", "--host", setup.address, "--agent", "echo/k", "--file", str(broken))
    assert result.returncode == 64, str(result)
    assert "3 characters long, not a multiple of 4" in result.stderr, str(result)


def test_unreachable_host(start_runtime: RuntimeLauncher) -> None:
    """No host at the address: exit 2, saying it is unreachable."""
    if start_runtime.kind != OUR_HOST:
        pytest.skip("needs no host: one setup is enough")
    result = state("save", "--host", "127.0.0.1:1", "--agent", "echo/k")
    assert result.returncode == 2, str(result)
    assert "the host at 127.0.0.1:1 is unreachable" in result.stderr, str(result)


# --- The agents' state ----------------------------------------------------------------------------------


def test_load_then_save_returns_the_json(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """A JSON state loaded into memo/k is what save prints, byte for byte, and what the agent
    runs with (an AutoGen worker's Recall gets it); save's output loads back with --file."""
    setup = start_runtime([ECHO, TEST_AGENTS])
    document = '{"notes": ["a", "b"], "n": 2, "name": "Ада ✓ \\"quoted\\""}'
    succeeded(state("load", "--host", setup.address, "--agent", "memo/k", "--json", document))
    saved = succeeded(state("save", "--host", setup.address, "--agent", "memo/k"))
    assert saved.stdout == document + "\n", str(saved)
    assert run(recall(setup.address, "k")) == document.encode()

    # What save printed, loaded into another agent from a file.
    path = tmp_path / "memo-k.json"
    path.write_text(saved.stdout, encoding="utf-8")
    succeeded(state("load", "--host", setup.address, "--agent", "memo/copy", "--file", str(path)))
    copied = succeeded(state("save", "--host", setup.address, "--agent", "memo/copy"))
    assert json.loads(copied.stdout) == json.loads(document), str(copied)


def test_binary_state_travels_as_a_data_url(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """echo's state is not JSON: save prints a data URL, and a data URL loaded from a file is
    the state the agent goes on counting from."""
    setup = start_runtime([ECHO])
    path = tmp_path / "echo-k.state"
    path.write_text(echo_state(5) + "\n", encoding="utf-8")
    succeeded(state("load", "--host", setup.address, "--agent", "echo/k", "--file", str(path)))
    assert succeeded(state("save", "--host", setup.address, "--agent", "echo/k")).stdout == echo_state(5) + "\n"

    async def one_echo() -> None:
        async with worker(setup.address) as caller:
            caller.add_message_serializer(try_get_known_serializers_for_type(Echo))
            answer = await asyncio.wait_for(caller.send_message(Echo(text="hi"), AgentId("echo", "k")), FAST)
            assert answer == Echo(text="hi")

    run(one_echo())
    assert succeeded(state("save", "--host", setup.address, "--agent", "echo/k")).stdout == echo_state(6) + "\n"


def test_delete_forgets_the_agent(start_runtime: RuntimeLauncher) -> None:
    """After delete, the agent starts afresh: memo/k saves as `null` again and recalls `null`."""
    setup = start_runtime([TEST_AGENTS])
    succeeded(state("load", "--host", setup.address, "--agent", "memo/k", "--json", "[1, 2, 3]"))
    assert succeeded(state("save", "--host", setup.address, "--agent", "memo/k")).stdout == "[1, 2, 3]\n"
    deleted = succeeded(state("delete", "--host", setup.address, "--agent", "memo/k"))
    assert deleted.stdout == "deleted the state of memo/k\n", str(deleted)
    assert succeeded(state("save", "--host", setup.address, "--agent", "memo/k")).stdout == "null\n"
    assert run(recall(setup.address, "k")) == b"null"


def test_a_plugins_refusal_reaches_the_cli(start_runtime: RuntimeLauncher) -> None:
    """echo's restore refuses a state that is not its 9 bytes: load exits 1 with an error
    answer, and the agent still answers afterwards."""
    setup = start_runtime([ECHO])
    result = state("load", "--host", setup.address, "--agent", "echo/k", "--json", '{"count": 3}')
    assert result.returncode == 1, str(result)
    assert "the host or the agent's runtime answered with an error: " in result.stderr, str(result)

    async def one_echo() -> None:
        async with worker(setup.address) as caller:
            caller.add_message_serializer(try_get_known_serializers_for_type(Echo))
            assert await asyncio.wait_for(caller.send_message(Echo(text="still"), AgentId("echo", "k")), FAST) == Echo(text="still")

    run(one_echo())
