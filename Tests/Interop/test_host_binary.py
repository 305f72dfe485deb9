"""agentd-host, the lean deployable host: it serves AutoGen's workers like ``agentd host``, shuts
down on SIGTERM with status 0, and fails the way ``agentd host`` does (same messages, same exit
statuses) on a bad INI file and a taken port; its hand-written option parsing names what is wrong.

The binary is ``$AGENTD_HOST``, by default ``agentd-host`` beside ``$AGENTD`` (``.build/debug``).
Skipped with INTEROP_HOST=autogen (these are agentd's own binaries).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import List

import pytest
from autogen_core import AgentId

from conftest import REPO, HostProcess, agentd_path
from interop_support import DEADLINE, Echo, InteropAnswer, InteropAsk, run, worker

pytestmark = pytest.mark.agentd_only

EXIT_TIMEOUT = 20


def agentd_host_path() -> Path:
    return Path(os.environ.get("AGENTD_HOST") or agentd_path().parent / "agentd-host")


def host_command(kind: str) -> List[str]:
    """The host command line of ``kind``: the lean binary, or ``agentd host``."""
    binary = agentd_host_path() if kind == "agentd-host" else agentd_path()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"{binary} not found: build it (swift build) or set AGENTD_HOST / AGENTD", pytrace=False)
    return [str(binary)] if kind == "agentd-host" else [str(binary), "host"]


def run_to_exit(argv: List[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=EXIT_TIMEOUT, cwd=REPO, stdin=subprocess.DEVNULL)


def test_serves_workers_and_exits_zero_on_sigterm() -> None:
    """agentd-host prints `listening on`, relays an RPC between two AutoGen workers, and a SIGTERM
    ends it gracefully with status 0."""
    host = HostProcess([*host_command("agentd-host"), "--listen", "127.0.0.1:0"], cwd=REPO)
    try:

        async def body() -> None:
            agent_type = f"echo-{uuid.uuid4().hex[:12]}"
            async with worker(host.address) as b, worker(host.address) as a:
                await Echo.register(b, agent_type, lambda: Echo("worker-b"))
                reply = await asyncio.wait_for(a.send_message(InteropAsk("hi", tag="t"), AgentId(agent_type, "k")), DEADLINE)
                assert isinstance(reply, InteropAnswer), f"reply not decoded: {reply!r}"
                assert (reply.text, reply.tag, reply.answered_by) == ("hi", "t", "worker-b:k")

        run(body())
    finally:
        died, killed = host.terminate()
    assert died is None, f"agentd-host exited by itself with status {died}:\n{host.stderr()}"
    assert not killed, f"agentd-host ignored SIGTERM:\n{host.stderr()}"
    assert host.proc.returncode == 0, f"status {host.proc.returncode} after SIGTERM:\n{host.stderr()}"
    assert "host stopped" in host.stderr()


def test_sigint_also_shuts_down_gracefully() -> None:
    host = HostProcess([*host_command("agentd-host"), "--listen", "127.0.0.1:0"], cwd=REPO)
    host.proc.send_signal(signal.SIGINT)
    try:
        status = host.proc.wait(timeout=EXIT_TIMEOUT)
    finally:
        host.terminate()
    assert status == 0, host.stderr()
    assert "host stopped" in host.stderr()


@pytest.mark.parametrize("kind", ["agentd-host", "agentd host"])
def test_bad_config_exits_2_naming_file_and_line(kind: str, tmp_path: Path) -> None:
    """The same message as `agentd host` (prefixed with the program's name) and status 2."""
    config = tmp_path / "bad-host.ini"
    config.write_text("[host]\nlisten = 127.0.0.1:0\nmax_message_bytes = lots\n")
    done = run_to_exit([*host_command(kind), "--config", str(config)])
    assert done.returncode == 2, done.stderr
    program = "agentd-host" if kind == "agentd-host" else "agentd"
    first = done.stderr.splitlines()[0] if done.stderr else ""
    assert first.startswith(f"{program}: "), done.stderr
    assert "bad-host.ini:3:" in first and "max_message_bytes" in first, done.stderr
    assert done.stdout == ""


def test_bad_config_message_matches_agentd_host(tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text("[host]\nrpc_timeout = abc\n")
    lean = run_to_exit([*host_command("agentd-host"), "--config", str(config)])
    full = run_to_exit([*host_command("agentd host"), "--config", str(config)])
    assert (lean.returncode, full.returncode) == (2, 2)
    assert lean.stderr.removeprefix("agentd-host: ") == full.stderr.removeprefix("agentd: ")


@pytest.mark.parametrize("kind", ["agentd-host", "agentd host"])
def test_taken_port_exits_1(kind: str) -> None:
    first = HostProcess([*host_command("agentd-host"), "--listen", "127.0.0.1:0"], cwd=REPO)
    try:
        done = run_to_exit([*host_command(kind), "--listen", first.address])
    finally:
        first.terminate()
    assert done.returncode == 1, done.stderr
    assert "cannot start the host" in done.stderr and first.address in done.stderr, done.stderr
    assert "listening on" not in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen"], "agentd-host: --listen needs a value"),
        (["--config"], "agentd-host: --config needs a value"),
        (["--listen", "--log-level", "debug"], "agentd-host: --listen needs a value"),
        (["--bogus"], "agentd-host: unknown option '--bogus'"),
        (["--bogus=1"], "agentd-host: unknown option '--bogus'"),
        (["stray"], "agentd-host: unexpected argument 'stray'"),
        (["--max-message-bytes", "x"], "agentd-host: --max-message-bytes: 'x' is not a whole number of bytes"),
        (["--max-message-bytes", "0"], "agentd-host: --max-message-bytes must be positive"),
        (["--max-message-bytes=-5"], "agentd-host: --max-message-bytes must be positive"),
        (["--rpc-timeout", "soon"], "agentd-host: --rpc-timeout: 'soon' is not a number of seconds"),
        (["--rpc-timeout", "0"], "agentd-host: --rpc-timeout must be positive"),
        (["--rpc-timeout", "nan"], "agentd-host: --rpc-timeout must be positive"),
        (["--rpc-timeout", "inf"], "agentd-host: --rpc-timeout must be at most"),
        (["--log-level", "loud"], "agentd-host: --log-level: 'loud' is not one of trace, debug, info"),
    ],
)
def test_bad_command_line_exits_64_naming_the_problem(args: List[str], message: str) -> None:
    done = run_to_exit([*host_command("agentd-host"), *args])
    assert done.returncode == 64, (done.returncode, done.stderr)
    assert done.stderr.splitlines()[0].startswith(message), done.stderr
    assert "agentd-host --help" in done.stderr
    assert done.stdout == ""


def test_help_lists_the_options_of_agentd_host() -> None:
    done = run_to_exit([*host_command("agentd-host"), "--help"])
    assert done.returncode == 0, done.stderr
    for option in ("--config", "--listen", "--max-message-bytes", "--rpc-timeout", "--log-level"):
        assert option in done.stdout
    full = run_to_exit([*host_command("agentd host"), "--help"])
    for option in ("--config", "--listen", "--max-message-bytes", "--rpc-timeout", "--log-level"):
        assert option in full.stdout, f"agentd host --help lacks {option}: the two commands' options drifted apart"


def test_options_are_applied() -> None:
    """Both --name=value and --name value forms; --log-level reaches the logger."""
    host = HostProcess(
        [*host_command("agentd-host"), "--listen=127.0.0.1:0", "--log-level", "warning", "--rpc-timeout=5",
         "--max-message-bytes", "1048576"],
        cwd=REPO,
    )
    try:
        assert host.address.startswith("127.0.0.1:")
    finally:
        host.terminate()
    assert host.proc.returncode == 0, host.stderr()
    # At warning, neither the info line "host listening" nor the plaintext notice is logged.
    assert "host listening" not in host.stderr(), host.stderr()
