"""Observability end to end: `agentd status` against `agentd run` with an AutoGen worker beside
it, the standard gRPC health service asked by grpcio, and `[log] format = json` of both hosts.

`agentd status` asks the host (/agentd.Status/Get) for its workers, then each worker that has a
control channel (an agentd runtime) for its plugins and resident agents; AutoGen's Python worker
has none and shows host-side facts only. AutoGen's own host has no status call: the command says
so and exits 1.

The health check is made with grpcio's generic unary call and hand-encoded bytes
(`HealthCheckRequest{service = 1}`, `HealthCheckResponse{status = 1}`), so that no extra Python
package is needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import grpc
import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type

from conftest import REPO, HostProcess, agentd_path
import interop_support
from interop_support import DEADLINE, InteropAnswer, InteropAsk, run, worker
from runtime_support import AUTOGEN_HOST, ECHO, GREETER, OUR_HOST, RuntimeLauncher, launcher_fixture
from test_host_binary import host_command

# The command itself answers within a few seconds (each runtime has 2 s at most).
CLI_DEADLINE = 20


@dataclass
class Echo:
    """The echo plugin's RPC (answered with the same message)."""

    text: Any


@pytest.fixture(params=(OUR_HOST,))
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


@pytest.fixture(params=(AUTOGEN_HOST,))
def start_runtime_on_autogen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


def status(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``agentd status ARGS``."""
    return subprocess.run(
        [str(agentd_path()), "status", *args], capture_output=True, text=True, timeout=CLI_DEADLINE,
        env={**os.environ, "LC_ALL": "C.UTF-8"}, stdin=subprocess.DEVNULL)


def health_check(address: str, service: str) -> bytes:
    """``grpc.health.v1.Health/Check(service)``: the response's bytes."""
    request = b"" if not service else b"\x0a" + bytes([len(service)]) + service.encode()
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        return check(request, timeout=DEADLINE)


@pytest.mark.agentd_only
def test_status_shows_the_runtime_and_the_python_worker(start_runtime: RuntimeLauncher) -> None:
    """The runtime answers with its plugins and resident agents; AutoGen's worker is shown with
    the host's facts only; text and --json say the same."""
    setup = start_runtime([ECHO, GREETER])

    async def body() -> None:
        async with worker(setup.address) as python:
            python.add_message_serializer(try_get_known_serializers_for_type(Echo))
            await interop_support.Echo.register(python, "py-echo", lambda: interop_support.Echo("python"))
            reply = await asyncio.wait_for(python.send_message(InteropAsk("hi", tag="t"), AgentId("py-echo", "k")), DEADLINE)
            assert isinstance(reply, InteropAnswer)
            # An echo agent resident in the runtime.
            await asyncio.wait_for(python.send_message(Echo(text="x"), AgentId("echo", "resident-key")), DEADLINE)

            done = await asyncio.to_thread(status, "--host", setup.address, "--json")
            assert done.returncode == 0, done.stderr
            report: Dict[str, Any] = json.loads(done.stdout)
            assert report["host"]["address"] == setup.address
            assert report["host"]["serving"] is True
            workers = {w["client_id"]: w for w in report["workers"]}
            runtimes = [w for w in workers.values() if w["control_channel"]]
            others = [w for w in workers.values() if not w["control_channel"]]
            assert len(runtimes) == 1 and len(others) == 1, report
            ours, theirs = runtimes[0], others[0]
            assert ours["runtime_status"] == "answered"
            assert sorted(p["name"] for p in ours["runtime"]["plugins"]) == ["echo-plugin", "greeter-plugin"]
            echo = next(a for a in ours["runtime"]["agents"] if a["agent_type"] == "echo")
            assert echo["resident"] >= 1 and echo["shared"] is False
            assert set(ours["agent_types"]) == {"echo", "greeter"}
            assert theirs["runtime_status"] == "not an agentd runtime" and theirs["runtime"] is None
            assert theirs["agent_types"] == ["py-echo"]

            text = await asyncio.to_thread(status, "--host", setup.address)
            assert text.returncode == 0, text.stderr
            assert f"host {setup.address}, up " in text.stdout
            assert "2 workers" in text.stdout
            assert f"{ours['client_id']}: agentd runtime" in text.stdout
            assert "echo-plugin" in text.stdout and "greeter-plugin" in text.stdout
            assert f"{theirs['client_id']}: not an agentd runtime" in text.stdout

    run(body())


def test_status_against_autogens_host_says_it_has_no_status_call(start_runtime_on_autogen: RuntimeLauncher) -> None:
    setup = start_runtime_on_autogen([ECHO])
    done = status("--host", setup.address)
    assert done.returncode == 1, done
    assert "has no status call" in done.stderr


def test_status_of_an_unreachable_host_exits_2() -> None:
    started = time.monotonic()
    done = status("--host", "127.0.0.1:1")
    assert done.returncode == 2, done
    assert "unreachable" in done.stderr
    assert time.monotonic() - started < CLI_DEADLINE


@pytest.mark.agentd_only
@pytest.mark.parametrize("kind", ["agentd-host", "agentd host"])
def test_health_and_json_logs(kind: str, tmp_path: Path) -> None:
    """grpcio's Check says SERVING (status 1) for '' and agents.AgentRpc, NOT_FOUND for another
    name; with [log] format = json every line the host writes is one JSON object."""
    ini = tmp_path / "host.ini"
    ini.write_text("[log]\nformat = json\n", encoding="utf-8")
    host = HostProcess([*host_command(kind), "--config", str(ini), "--listen", "127.0.0.1:0"], cwd=REPO)
    try:
        assert health_check(host.address, "") == b"\x08\x01"
        assert health_check(host.address, "agents.AgentRpc") == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as refused:
            health_check(host.address, "agents.Other")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        died, _ = host.terminate()
    assert died is None
    lines: List[str] = [line for line in host.stderr().splitlines() if line.strip()]
    assert lines, "the host logged nothing"
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"timestamp", "level", "label", "message", "source"} <= record.keys(), record
    assert any(r["message"] == "host listening" and r["host.address"] == host.address for r in records), records
