"""A cluster of agentd hosts for the interop suite: a nats-server with JetStream, hosts joined
to it, and `agentd run` runtimes that join those hosts.

- ``NatsServer``: ``nats-server -js -sd DIR -a 127.0.0.1 -p -1`` (the Debian package, or
  ``$NATS_SERVER``) in a temporary folder; ``-p -1`` lets the server pick a free port, which it
  prints ("Listening for client connections on 127.0.0.1:PORT"), so there is no race for a port.
  It logs to stderr, which is read as it comes, like a host's stdout.
- ``ClusterHost``: ``agentd host --config FILE`` (or ``agentd-host --config FILE``) with an INI
  file of its own: ``[host] listen = 127.0.0.1:0``, ``[cluster] nats = ...``, ``name = NAME``,
  ``lease_seconds = 1``. A host joins the cluster before it prints ``listening on HOST:PORT``.
- ``Cluster``: starts NATS and the hosts (the hosts side by side, then waits for each), and
  ``agentd run`` runtimes given the hosts to join (``[runtime] host = A, B``); stops everything
  at the end, runtimes first, then hosts, then NATS (a host whose NATS went away first takes
  15 s to stop: it waits for the NATS client to give up reconnecting), and reports every
  process's output when a test fails.

Agent types and subscriptions cross hosts asynchronously (JetStream key-value watches): a host
learns what another host's workers registered a few milliseconds after the registration was
answered. Tests therefore wait for what they need with ``rpc_when_served`` and ``probe_until_delivered``
below: retried on the event or answer itself, with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import pytest
from autogen_core import AgentId, TopicId

from conftest import LISTENING, REPO, STARTUP_DEADLINE, ChildProcess, agentd_path
from interop_support import DEADLINE, Delivery, InteropNote
from runtime_support import RuntimeProcess, runtime_folder, write_ini

NATS_LISTENING = re.compile(r".*Listening for client connections on (\S+):(\d+)\s*$")
NATS_READY = re.compile(r".*Server is ready\s*$")

#: How long a host that stopped sending heartbeats is still taken for alive (`lease_seconds`).
LEASE_SECONDS = 1

#: The error text of an RPC to an agent type no host of the cluster serves (yet).
NOT_REGISTERED = "is not registered with any host of the cluster"


def nats_server_path() -> str:
    """``$NATS_SERVER``, else nats-server on PATH, else Debian's /usr/sbin/nats-server."""
    found = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not (os.path.isfile(found) and os.access(found, os.X_OK)):
        pytest.fail(f"nats-server not found ({found}): install it (scripts/bootstrap, Debian nats-server) "
                    "or set NATS_SERVER", pytrace=False)
    return found


def agentd_host_path() -> Path:
    """The lean host binary: ``$AGENTD_HOST``, else ``agentd-host`` beside ``$AGENTD``."""
    return Path(os.environ.get("AGENTD_HOST") or agentd_path().parent / "agentd-host")


# --- NATS ------------------------------------------------------------------------------------------


class NatsServer:
    """nats-server with JetStream on a port it picks, storing in ``directory``; ``extra_args``
    go to its command line (e.g. ``("--auth", TOKEN)``)."""

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.argv = [nats_server_path(), "-js", "-sd", str(directory), "-a", "127.0.0.1", "-p", "-1", *extra_args]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        #: Everything the server has logged so far.
        self.log_lines: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        port = self._wait(NATS_LISTENING, "Listening for client connections on HOST:PORT").group(2)
        self._wait(NATS_READY, "Server is ready")
        self.url = f"nats://127.0.0.1:{port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.log_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait(self, pattern: "re.Pattern[str]", what: str) -> "re.Match[str]":
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.001)) if remaining > 0 else None
            except queue.Empty:
                continue
            if line is None:
                self.stop()
                pytest.fail(f"nats-server did not print '{what}' within {STARTUP_DEADLINE:.0f}s (or exited)\n"
                            f"command: {self.argv}\nlog:\n{self.log()}", pytrace=False)
            match = pattern.match(line)
            if match:
                return match

    def log(self) -> str:
        return "\n".join(self.log_lines)

    def stop(self) -> Optional[int]:
        """SIGTERM (SIGKILL after 10 s); returns the status if it had exited by itself."""
        died = self.proc.poll()
        if died is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(timeout=5)
        return died


# --- Hosts -----------------------------------------------------------------------------------------


def write_host_ini(path: Path, *, nats: str, name: str, lease_seconds: int = LEASE_SECONDS,
                   log_level: str = "info", extra: str = "") -> None:
    path.write_text(
        "# a cluster host written by the interop suite\n"
        "[host]\nlisten = 127.0.0.1:0\n\n"
        f"[cluster]\nnats = {nats}\nname = {name}\nlease_seconds = {lease_seconds}\n\n"
        f"[log]\nlevel = {log_level}\n\n"
        f"{extra}\n",
        encoding="utf-8",
    )


class ClusterHost(ChildProcess):
    """``agentd host --config FILE`` (or ``agentd-host``) joined to the cluster as ``cluster_name``."""

    name = "cluster host"

    def __init__(self, argv: List[str], cluster_name: str, ini: Path) -> None:
        super().__init__(argv, cwd=REPO)
        self.cluster_name = cluster_name
        self.ini = ini
        self.address = ""
        #: Set once the test itself stopped or killed the host (its exit is then no failure).
        self.stopped_by_test = False

    def wait_listening(self) -> "ClusterHost":
        match = self.wait_line(LISTENING, "listening on HOST:PORT")
        self.address = f"{match.group(1)}:{match.group(2)}"
        return self

    def kill9(self) -> None:
        """SIGKILL, and wait until it is gone."""
        self.stopped_by_test = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL, self.proc.returncode


class Cluster:
    """NATS, hosts joined to it, and runtimes joining those hosts: as a test asks, stopped at the end."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.nats: Optional[NatsServer] = None
        self.hosts: Dict[str, ClusterHost] = {}
        self.runtimes: List[RuntimeProcess] = []

    def start(self, names: Sequence[str] = ("a", "b"), *, binaries: Optional[Dict[str, str]] = None,
              lease_seconds: int = LEASE_SECONDS) -> List[ClusterHost]:
        """Starts NATS (once) and a host per name, side by side; returns them once each listens.
        ``binaries`` maps a name to ``"agentd-host"`` for the lean binary (default ``agentd host``)."""
        if self.nats is None:
            directory = self.base / "nats"
            directory.mkdir()
            self.nats = NatsServer(directory)
        started: List[ClusterHost] = []
        for name in names:
            if name in self.hosts:
                pytest.fail(f"host {name} started twice", pytrace=False)
            ini = self.base / f"host-{name}.ini"
            write_host_ini(ini, nats=self.nats.url, name=name, lease_seconds=lease_seconds)
            if (binaries or {}).get(name) == "agentd-host":
                binary = agentd_host_path()
                argv = [str(binary), "--config", str(ini)]
            else:
                binary = agentd_path()
                argv = [str(binary), "host", "--config", str(ini)]
            if not (binary.is_file() and os.access(binary, os.X_OK)):
                pytest.fail(f"{binary} not found: build it (swift build) or set AGENTD / AGENTD_HOST", pytrace=False)
            host = ClusterHost(argv, name, ini)
            self.hosts[name] = host
            started.append(host)
        return [host.wait_listening() for host in started]

    def start_runtime(self, hosts: Sequence[str], plugins: Sequence[str], *, ini_extra: str = "",
                      log_level: str = "info") -> RuntimeProcess:
        """``agentd run`` serving copies of ``plugins`` (files in the build folder), given the
        hosts named ``hosts`` in that order as ``[runtime] host = A, B`` (so it prints only
        ``ready: ...``)."""
        agentd = agentd_path()
        directory, _ = runtime_folder(self.base, f"run{len(self.runtimes)}-", plugins)
        addresses = ", ".join(self.hosts[name].address for name in hosts)
        ini = directory / "agentd.ini"
        write_ini(ini, extra=f"[runtime]\nhost = {addresses}\n\n{ini_extra}", log_level=log_level)
        runtime = RuntimeProcess([str(agentd), "run", "--config", str(ini)], cwd=directory, embedded=False)
        self.runtimes.append(runtime)
        if len(runtime.stdout_lines) != 1:
            pytest.fail(f"agentd run printed {runtime.stdout_lines!r}", pytrace=False)
        return runtime

    def report_sections(self) -> Iterable[Tuple[str, str]]:
        """(title, text) for each process, for a failure report."""
        def clip(text: str) -> str:
            return "...\n" + text[-20000:] if len(text) > 20000 else text

        for name, host in self.hosts.items():
            yield (f"host {name} stderr", f"$ {' '.join(host.argv)}\n{clip(host.stderr()) or '(empty)'}")
        for i, runtime in enumerate(self.runtimes):
            yield (f"agentd run #{i} stderr",
                   f"$ {' '.join(runtime.argv)}\nstdout:\n{chr(10).join(runtime.stdout_lines)}\n"
                   f"stderr:\n{clip(runtime.stderr()) or '(empty)'}")
        if self.nats is not None:
            yield ("nats-server log", f"$ {' '.join(self.nats.argv)}\n{clip(self.nats.log())}")

    def stop_all(self) -> List[str]:
        """Stops runtimes, then hosts, then NATS; returns the problems seen (a process that
        exited during the test by itself, one that ignored SIGTERM)."""
        problems: List[str] = []
        for runtime in self.runtimes:
            died, killed = runtime.terminate()
            if died is not None and not runtime.stopped_by_test:
                problems.append(f"agentd run exited during the test with status {died}\nstderr:\n{runtime.stderr()}")
            if killed:
                problems.append("agentd run ignored SIGTERM for 10s and was killed")
        for name, host in self.hosts.items():
            died = host.proc.poll()
            if died is not None and not host.stopped_by_test:
                problems.append(f"host {name} exited during the test with status {died}\nstderr:\n{host.stderr()}")
        # SIGTERM to all hosts at once: each leaves the cluster while NATS is still there.
        for host in self.hosts.values():
            if host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
        for name, host in self.hosts.items():
            try:
                host.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                host.proc.kill()
                problems.append(f"host {name} ignored SIGTERM for 10s and was killed\nstderr:\n{host.stderr()}")
            host.terminate()  # it has exited: ends what it left in its process group
        if self.nats is not None:
            died = self.nats.stop()
            if died is not None:
                problems.append(f"nats-server exited during the test with status {died}\nlog:\n{self.nats.log()}")
        return problems


def cluster_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Body of the ``cluster`` fixture (test_cluster.py)."""
    cluster = Cluster(tmp_path)
    request.node._interop_reports = cluster.report_sections  # read by conftest's report hook
    yield cluster
    problems = cluster.stop_all()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# --- Waiting for what crosses hosts ----------------------------------------------------------------


async def rpc_when_served(caller: Any, message: Any, target: AgentId, *, sender: Optional[AgentId] = None,
                          deadline: float = DEADLINE, attempt_deadline: float = 5.0) -> Any:
    """``caller.send_message(message, target)``, sent again while the answer is the cluster's
    "not registered with any host" error (the caller's host has not learned the type's owner
    yet), until ``deadline``. Any other error is raised."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            return await asyncio.wait_for(caller.send_message(message, target, sender=sender), attempt_deadline)
        except asyncio.TimeoutError:
            raise AssertionError(f"no answer within {attempt_deadline}s to {message!r} sent to {target}") from None
        except Exception as e:  # noqa: BLE001 - AutoGen raises a plain Exception with the host's text
            if NOT_REGISTERED not in str(e) or loop.time() > end:
                raise


async def probe_until_delivered(publishers: Sequence[Tuple[Any, TopicId]], sinks: Sequence["asyncio.Queue[Delivery]"],
                                deadline: float = DEADLINE, wait_each: float = 0.2) -> int:
    """Publishes a probe note (text "probe") from each (publisher, topic) until every sink has
    received one from each publisher, for at most ``deadline`` s; returns the number of rounds.
    Probes put in a sink are kept there (``take_notes`` skips them)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    seen: List[set] = [set() for _ in sinks]
    pending: List[List[Delivery]] = [[] for _ in sinks]
    rounds = 0
    while True:
        rounds += 1
        for index, (publisher, topic) in enumerate(publishers):
            probe = InteropNote(id=f"probe-{index}-{rounds}", text="probe", publisher=f"probe-{index}")
            await publisher.publish_message(probe, topic, message_id=probe.id)
        round_end = min(loop.time() + wait_each, end)
        for i, sink in enumerate(sinks):
            while len(seen[i]) < len(publishers):
                remaining = round_end - loop.time()
                if remaining <= 0:
                    break
                try:
                    delivery = await asyncio.wait_for(sink.get(), remaining)
                except asyncio.TimeoutError:
                    break
                pending[i].append(delivery)
                if isinstance(delivery.message, InteropNote) and delivery.message.text == "probe":
                    seen[i].add(delivery.message.publisher)
        if all(len(s) == len(publishers) for s in seen):
            # Put back what is not a probe (nothing else is published yet, but keep it honest).
            for i, sink in enumerate(sinks):
                for delivery in pending[i]:
                    if not (isinstance(delivery.message, InteropNote) and delivery.message.text == "probe"):
                        sink.put_nowait(delivery)
            return rounds
        if loop.time() > end:
            missing = [i for i, s in enumerate(seen) if len(s) < len(publishers)]
            raise AssertionError(f"probes did not reach sink(s) {missing} within {deadline}s "
                                 f"({rounds} rounds): the subscriptions never crossed hosts")


async def take_notes(sink: "asyncio.Queue[Delivery]", until: str, deadline: float = DEADLINE) -> List[Delivery]:
    """Deliveries from ``sink`` (probes skipped) up to and including the note with id ``until``."""
    got: List[Delivery] = []

    async def gather() -> None:
        while True:
            delivery = await sink.get()
            if isinstance(delivery.message, InteropNote) and delivery.message.text == "probe":
                continue
            got.append(delivery)
            if isinstance(delivery.message, InteropNote) and delivery.message.id == until:
                return

    try:
        await asyncio.wait_for(gather(), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {deadline}s waiting for note {until}: got {len(got)} notes, "
                             f"last {[d.message for d in got[-3:]]!r}") from None
    return got


# --- The agentd command line ------------------------------------------------------------------------


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


def agentd_cli(*args: str, timeout: float = 5.0) -> CliResult:
    """``agentd ARGS --timeout TIMEOUT`` (send, publish, state); the process gets TIMEOUT + 10 s."""
    argv = [str(agentd_path()), *args, "--timeout", str(timeout)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10,
                          env={**os.environ, "LC_ALL": "C.UTF-8"}, stdin=subprocess.DEVNULL)
    return CliResult(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
