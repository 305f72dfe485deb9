"""`agentd run` for the interop suite: the runtime process, its two host setups, and helpers.

The runtime loads the example plugins (``libEchoAgent.so``, ``libGreeterAgent.so``,
``libProtoAgent.so``, built by ``swift build`` next to agentd) from a fresh plugin directory
per test, and serves them through one of two hosts:

- ``our-host``: the runtime's embedded host (no ``[runtime] host``); it listens on
  ``[host] listen = 127.0.0.1:0`` and prints ``listening on HOST:PORT``, then ``ready: ...``.
  Python workers connect to the printed address.
- ``autogen-host``: AutoGen's own ``GrpcWorkerAgentRuntimeHost`` (autogen_host.py) on a free
  port; the runtime joins it with ``--host`` and prints only ``ready: ...``. Python workers
  connect to AutoGen's host.

The plugin directory is never ``.build/debug`` itself: that folder also holds the ABI test
plugins, which the runtime refuses on purpose.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import pytest
from autogen_core import MessageSerializer, try_get_known_serializers_for_type

from conftest import HERE, LISTENING, REPO, STARTUP_DEADLINE, ChildProcess, HostProcess, agentd_path, host_kind

OUR_HOST = "our-host"
AUTOGEN_HOST = "autogen-host"
SETUPS = (OUR_HOST, AUTOGEN_HOST)

READY = re.compile(r"^ready:\s*(.*)$")

# The example plugins: the file swift build makes, and the plugin name it declares.
ECHO = "libEchoAgent.so"
GREETER = "libGreeterAgent.so"
PROTO = "libProtoAgent.so"
ALL_PLUGINS = (ECHO, GREETER, PROTO)

# How long `agentd run` may take to exit after SIGTERM.
SHUTDOWN_DEADLINE = 5.0


def plugin_build_dir() -> Path:
    """Where swift build put the plugins: next to the agentd binary under test."""
    return Path(os.environ.get("AGENTD_PLUGIN_DIR") or agentd_path().parent)


# --- The runtime process ---------------------------------------------------------------------------


class RuntimeProcess(ChildProcess):
    """``agentd run`` as a subprocess: its stdout lines as they come, and its stderr."""

    name = "agentd run"

    def __init__(self, argv: List[str], cwd: Path, embedded: bool) -> None:
        super().__init__(argv, cwd)
        self.embedded = embedded
        self.address: Optional[str] = None
        #: Set once the test itself stopped the process (its exit is then no failure).
        self.stopped_by_test = False
        if embedded:
            match = self.wait_line(LISTENING, "listening on HOST:PORT")
            self.address = f"{match.group(1)}:{match.group(2)}"
        match = self.wait_line(READY, "ready: <plugins>")
        self.ready_line = match.group(0)
        #: The plugins the ready line lists, as "name version".
        self.plugins = [p.strip() for p in match.group(1).split(",") if p.strip()]

    def plugin_names(self) -> List[str]:
        """The names of the plugins in service (from the ready line)."""
        return [p.split()[0] for p in self.plugins]

    def sigterm(self, deadline: float = SHUTDOWN_DEADLINE) -> Tuple[Optional[int], float]:
        """SIGTERM; returns (exit status or None if still running after ``deadline``, seconds taken)."""
        self.stopped_by_test = True
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: Optional[int] = self.proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - start

    def signal_all(self, signo: int) -> None:
        """Send ``signo`` to ``agentd run`` and to its runtime process: the plugins run in a child
        of the process started (README: Crash isolation), so freezing the runtime (SIGSTOP,
        SIGCONT) takes both."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signo)
            except ProcessLookupError:
                pass

    def catches_sigterm(self) -> bool:
        """Whether the process has a SIGTERM handler installed now (Linux: /proc/PID/status)."""
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
        except FileNotFoundError:
            pass
        return False

    def wait_catching_sigterm(self, deadline: float = STARTUP_DEADLINE) -> None:
        """Wait until the process handles SIGTERM (polled: there is nothing to wait on)."""
        end = time.monotonic() + deadline
        while not self.catches_sigterm():
            if self.proc.poll() is not None or time.monotonic() > end:
                pytest.fail(f"agentd run never installed a SIGTERM handler within {deadline:.0f}s", pytrace=False)
            time.sleep(0.005)


@dataclass
class RuntimeSetup:
    """One test's runtime and host: ``address`` is where Python workers connect."""

    kind: str
    address: str
    runtime: RuntimeProcess
    host: Optional[HostProcess]
    directory: Path
    plugin_dir: Path
    ini: Path


def runtime_folder(base: Path, prefix: str, plugins: Sequence[str]) -> Tuple[Path, Path]:
    """A fresh folder under ``base`` for one runtime, with a ``plugins`` folder holding copies of
    ``plugins`` (file names in the build folder); returns (folder, plugin folder)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    plugin_dir = directory / "plugins"
    plugin_dir.mkdir()
    for name in plugins:
        source = plugin_build_dir() / name
        if not source.is_file():
            pytest.fail(f"{source} not found: build the plugins first (swift build)", pytrace=False)
        shutil.copy2(source, plugin_dir / name)
    return directory, plugin_dir


def write_ini(path: Path, *, plugin_dir: str = "plugins", extra: str = "", log_level: str = "info") -> None:
    """The runtime's INI file: an embedded host on a free port (ignored with --host), the
    plugin folder (relative to the file), logging at ``log_level``, and ``extra`` verbatim at
    the end."""
    path.write_text(
        "# agentd run configuration written by the interop suite\n"
        "[host]\nlisten = 127.0.0.1:0\n\n"
        f"[plugins]\ndirectory = {plugin_dir}\n\n"
        f"[log]\nlevel = {log_level}\n\n"
        f"{extra}\n",
        encoding="utf-8",
    )


class RuntimeLauncher:
    """Starts ``agentd run`` in one of the two setups, as often as a test asks; stops them all."""

    def __init__(self, kind: str, base: Path) -> None:
        self.kind = kind
        self.base = base
        self.started: List[RuntimeSetup] = []
        self.hosts: List[HostProcess] = []

    def __call__(
        self,
        plugins: Sequence[str] = ALL_PLUGINS,
        *,
        ini_extra: str = "",
        extra_files: Optional[Dict[str, bytes]] = None,
        host_in_ini: bool = False,
        log_level: str = "info",
    ) -> RuntimeSetup:
        """Start a runtime serving ``plugins`` (file names in the build folder), with
        ``ini_extra`` appended to its INI file and ``extra_files`` (name -> bytes) put into its
        plugin folder as well, logging at ``log_level``. With AutoGen's host, the runtime is
        given the host's address with ``--host``, or with ``[runtime] host`` in the INI file if
        ``host_in_ini``."""
        agentd = agentd_path()
        if not (agentd.is_file() and os.access(agentd, os.X_OK)):
            pytest.fail(f"agentd binary not found at {agentd}: build it (swift build) or set AGENTD", pytrace=False)
        directory, plugin_dir = runtime_folder(self.base, f"run{len(self.started)}-", plugins)
        for name, content in (extra_files or {}).items():
            (plugin_dir / name).write_bytes(content)
        ini = directory / "agentd.ini"
        argv = [str(agentd), "run", "--config", str(ini)]
        host: Optional[HostProcess] = None
        if self.kind == AUTOGEN_HOST:
            host = HostProcess([sys.executable, str(HERE / "autogen_host.py"), "--listen", "127.0.0.1:0"], cwd=REPO)
            self.hosts.append(host)
            if host_in_ini:
                ini_extra = f"[runtime]\nhost = {host.address}\n\n{ini_extra}"
            else:
                argv += ["--host", host.address]
        write_ini(ini, extra=ini_extra, log_level=log_level)
        runtime = RuntimeProcess(argv, cwd=directory, embedded=self.kind == OUR_HOST)
        setup = RuntimeSetup(self.kind, "", runtime, host, directory, plugin_dir, ini)
        self.started.append(setup)
        if self.kind == OUR_HOST:
            assert runtime.address is not None
            setup.address = runtime.address
            expected_stdout = 2  # listening on ..., ready: ...
        else:
            assert host is not None
            setup.address = host.address
            expected_stdout = 1  # ready: ... (no host of its own, so no "listening on")
        if len(runtime.stdout_lines) != expected_stdout:
            pytest.fail(f"agentd run ({self.kind}) printed {runtime.stdout_lines!r}", pytrace=False)
        return setup

    def report_sections(self) -> Iterable[Tuple[str, str]]:
        """(title, text) for each process, for a failure report."""
        for i, setup in enumerate(self.started):
            text = setup.runtime.stderr()
            if len(text) > 20000:
                text = "...\n" + text[-20000:]
            stdout = "\n".join(setup.runtime.stdout_lines)
            yield (
                f"agentd run #{i} ({setup.kind}) stderr",
                f"$ {' '.join(setup.runtime.argv)}\n(in {setup.directory})\nstdout:\n{stdout}\nstderr:\n{text or '(empty)'}",
            )
        for i, host in enumerate(self.hosts):
            yield (f"AutoGen host #{i} stderr", f"$ {' '.join(host.argv)}\n{host.stderr() or '(empty)'}")

    def stop_all(self) -> List[str]:
        """Stops everything; returns the problems seen (a process that exited during the test,
        a runtime that ignored SIGTERM).

        AutoGen's hosts go first, killed outright: the reference is not under test, and a
        runtime still connected to AutoGen's host takes 2 s to stop (it waits that long for the
        host to end the half-closed stream, which AutoGen's host never does; test_sigterm_exits_zero
        covers that path). Then each runtime gets SIGTERM."""
        problems: List[str] = []
        for host in self.hosts:
            died = host.proc.poll()
            if died is not None:
                problems.append(f"AutoGen's host exited during the test with status {died}\nstderr:\n{host.stderr()}")
            host.proc.kill()
            host.terminate()
        for setup in self.started:
            died, killed = setup.runtime.terminate()
            if died is not None and not setup.runtime.stopped_by_test:
                problems.append(
                    f"agentd run ({setup.kind}) exited during the test with status {died}\n"
                    f"stderr:\n{setup.runtime.stderr()}"
                )
            if killed:
                problems.append(f"agentd run ({setup.kind}) ignored SIGTERM for 10s and was killed")
        return problems


def launcher_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    """Body of the ``start_runtime`` fixture (test_runtime.py), parametrized over SETUPS."""
    kind = request.param
    if kind == OUR_HOST and host_kind() == "autogen":
        pytest.skip("INTEROP_HOST=autogen: only the setup with AutoGen's host runs")
    launcher = RuntimeLauncher(kind, tmp_path)
    request.node._interop_reports = launcher.report_sections  # read by conftest's report hook
    yield launcher
    problems = launcher.stop_all()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# --- The runtime's log -------------------------------------------------------------------------------

# How long a wait for a log line takes at most, unless the caller says otherwise.
LOG_DEADLINE = 5.0

# swift-log's stream handler: "TIMESTAMP LEVEL LABEL: key=value key=value [Source] message".
LOG_LINE = re.compile(r"^\S+ (?P<level>\w+) [^:]+: (?P<meta>.*?) ?\[(?P<source>\w+)\] (?P<message>.*)$")
LOG_META = re.compile(r"([\w.]+)=(.*?)(?= [\w.]+=|$)")


@dataclass
class LogEntry:
    text: str
    level: str
    message: str
    meta: Dict[str, str]

    def __str__(self) -> str:
        return self.text


class RuntimeLog:
    """The runtime's stderr as parsed lines, read as it grows.

    ``pread`` leaves the file offset alone: the runtime's stderr shares it (RuntimeProcess.stderr()
    seeks to 0 to read, and a line written at that moment would overwrite the file's start)."""

    def __init__(self, runtime: RuntimeProcess) -> None:
        self._runtime = runtime
        self._fd = runtime._stderr.fileno()  # noqa: SLF001
        self._offset = 0
        self._partial = b""
        self.entries: List[LogEntry] = []
        self.lines: List[str] = []

    def poll(self) -> List[LogEntry]:
        while True:
            chunk = os.pread(self._fd, 1 << 16, self._offset)
            if not chunk:
                break
            self._offset += len(chunk)
            self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            text = raw.decode("utf-8", "replace")
            self.lines.append(text)
            match = LOG_LINE.match(text)
            if match:
                meta = dict(LOG_META.findall(match.group("meta")))
                self.entries.append(LogEntry(text, match.group("level"), match.group("message"), meta))
        return self.entries

    def find(self, message: str, **meta: str) -> List[LogEntry]:
        """Lines with this message whose metadata has these values (``plugin_version`` stands
        for ``plugin.version``)."""
        wanted = {k.replace("_", "."): v for k, v in meta.items()}
        return [
            e for e in self.poll()
            if e.message == message and all(e.meta.get(k) == v for k, v in wanted.items())
        ]

    def tail(self, count: int = 40) -> str:
        self.poll()
        return "\n".join(self.lines[-count:])

    async def wait_for(self, message: str, count: int = 1, deadline: float = LOG_DEADLINE, **meta: str) -> List[LogEntry]:
        """Waits until ``count`` lines match (see ``find``); returns them all."""
        end = time.monotonic() + deadline
        while True:
            found = self.find(message, **meta)
            if len(found) >= count:
                return found
            if self._runtime.proc.poll() is not None:
                raise AssertionError(
                    f"agentd run exited (status {self._runtime.proc.returncode}) while waiting for "
                    f"{count} '{message}' line(s) {meta}\nlog:\n{self.tail()}"
                )
            if time.monotonic() > end:
                raise AssertionError(
                    f"{len(found)} of {count} '{message}' line(s) {meta} within {deadline}s\nlog:\n{self.tail()}"
                )
            await asyncio.sleep(0.01)


# --- Protobuf: Plugins/ProtoAgent/proto/sample.proto -----------------------------------------------

SAMPLE_PROTO = REPO / "Plugins" / "ProtoAgent" / "proto" / "sample.proto"


def compile_sample_pb2(out_dir: Path) -> ModuleType:
    """sample.proto compiled with the system protoc and imported as ``sample_pb2``."""
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.fail("need the system protoc (Debian protobuf-compiler): run scripts/bootstrap", pytrace=False)
    result = subprocess.run(
        [protoc, f"-I{SAMPLE_PROTO.parent}", f"--python_out={out_dir}", str(SAMPLE_PROTO)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"protoc failed on {SAMPLE_PROTO}:\n{result.stderr}", pytrace=False)
    spec = importlib.util.spec_from_file_location("sample_pb2", out_dir / "sample_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_pb2"] = module
    spec.loader.exec_module(module)
    return module


class ProtobufJsonSerializer(MessageSerializer[Any]):
    """A protobuf class in protobuf's JSON mapping (google.protobuf.json_format), registered as
    ``application/json`` under the message's full name: what AutoGen's send_message needs for a
    protobuf class, since it encodes every RPC payload as JSON (README.md, "Protobuf from
    Python", registers the same)."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    @property
    def data_content_type(self) -> str:
        return "application/json"

    @property
    def type_name(self) -> str:
        return str(self.cls.DESCRIPTOR.full_name)

    def serialize(self, message: Any) -> bytes:
        from google.protobuf import json_format

        return json_format.MessageToJson(message, indent=None).encode("utf-8")

    def deserialize(self, payload: bytes) -> Any:
        from google.protobuf import json_format

        return json_format.Parse(payload, self.cls())


# --- Raw JSON payloads ----------------------------------------------------------------------------


@dataclass
class RawJson:
    """A message whose JSON text is given verbatim (``RawJsonSerializer`` sends it as is)."""

    text: bytes


class RawJsonSerializer(MessageSerializer[RawJson]):
    """Sends a RawJson's bytes as an ``application/json`` payload of type ``type_name``.

    AutoGen's own serializers only ever produce valid JSON; this is the same worker sending a
    payload a buggy or hostile peer could send. The message's class must also be named
    ``type_name`` for ``send_message`` to pick this serializer (it looks up the class name).
    """

    def __init__(self, type_name: str) -> None:
        self._type_name = type_name

    @property
    def data_content_type(self) -> str:
        return "application/json"

    @property
    def type_name(self) -> str:
        return self._type_name

    def deserialize(self, payload: bytes) -> RawJson:
        return RawJson(payload)

    def serialize(self, message: RawJson) -> bytes:
        return message.text


# --- Response outcomes -------------------------------------------------------------------------------


@dataclass
class ResponseOutcome:
    """An RpcResponse as it came off a worker's channel, and what the worker made of it."""

    response: Any
    error: Optional[BaseException]


def tap_response_outcomes(runtime: Any) -> "asyncio.Queue[ResponseOutcome]":
    """A queue of every RpcResponse ``runtime`` receives, with the exception its own response
    processing raised (e.g. a payload it could not decode, which it otherwise only logs and
    which leaves the caller waiting forever), or None."""
    outcomes: "asyncio.Queue[ResponseOutcome]" = asyncio.Queue()
    original = runtime._process_response  # noqa: SLF001

    async def recording(response: Any) -> None:
        try:
            await original(response)
        except BaseException as e:
            outcomes.put_nowait(ResponseOutcome(response, e))
            raise
        outcomes.put_nowait(ResponseOutcome(response, None))

    runtime._process_response = recording  # noqa: SLF001
    return outcomes


# --- The example counter's messages (Plugins/CounterAgent) --------------------------------------------


@dataclass
class Add:
    amount: int


@dataclass
class Get:
    pass


@dataclass
class Count:
    count: int
    key: str


def add_counter_serializers(runtime: Any) -> None:
    """Registers the counter's messages; a caller needs the reply type (Count) too, or the answer
    arrives undecodable."""
    for t in (Add, Get, Count):
        runtime.add_message_serializer(try_get_known_serializers_for_type(t))
