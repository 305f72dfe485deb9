"""Fixtures for the interop suite: the host under test, and the generated protobuf module.

The host is agentd by default: ``$AGENTD host --listen 127.0.0.1:0`` (AGENTD defaults to
``<repo>/.build/debug/agentd``). With ``INTEROP_HOST=autogen`` it is AutoGen's own
GrpcWorkerAgentRuntimeHost (autogen_host.py), and tests marked ``agentd_only`` are skipped.
Either host must print one line ``listening on HOST:PORT`` to stdout once it serves.

A test marked ``@pytest.mark.host_args("--rpc-timeout", "1")`` gets a host started with those
extra arguments after ``--listen``. The ``host`` fixture is the HostProcess: ``host.address``,
and ``host.stderr()``, everything the host has logged so far.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Iterator, List, Optional, Tuple, Sequence

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STARTUP_DEADLINE = float(os.environ.get("INTEROP_STARTUP_DEADLINE", "20"))
LISTENING = re.compile(r"^listening on (\S+):(\d+)\s*$")


def host_kind() -> str:
    kind = os.environ.get("INTEROP_HOST", "agentd").strip().lower() or "agentd"
    if kind not in ("agentd", "autogen"):
        raise pytest.UsageError(f"INTEROP_HOST must be 'agentd' or 'autogen', not {kind!r}")
    return kind


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "agentd_only: a case where AutoGen's own host hangs or misbehaves; skipped with INTEROP_HOST=autogen",
    )
    config.addinivalue_line(
        "markers",
        "host_args(*args): extra command-line arguments for this test's host (after --listen)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    if host_kind() == "autogen":
        return "interop host: AutoGen GrpcWorkerAgentRuntimeHost (agentd_only tests skipped)"
    return f"interop host: agentd at {agentd_path()}"


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if host_kind() != "autogen":
        return
    skip = pytest.mark.skip(reason="AutoGen's host fails this case (INTEROP_HOST=autogen)")
    for item in items:
        if "agentd_only" in item.keywords:
            item.add_marker(skip)


def agentd_path() -> Path:
    return Path(os.environ.get("AGENTD") or REPO / ".build" / "debug" / "agentd")


class ChildProcess:
    """A host or runtime subprocess: its stdout lines as they come (waited for with a deadline),
    its stderr for failure reports, and a stop that leaves nothing behind."""

    #: How failure messages name the process.
    name = "process"

    def __init__(self, argv: List[str], cwd: Optional[Path] = None) -> None:
        self.argv = argv
        # Append mode: the child writes at the end whatever offset a reader seeks to.
        self._stderr = tempfile.TemporaryFile(mode="a+b")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C of pytest does not hit the child first
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        #: Every stdout line read so far.
        self.stdout_lines: List[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        # Keeps draining stdout for the child's whole life, so a chatty one never blocks on it.
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def wait_line(self, pattern: "re.Pattern[str]", what: str) -> "re.Match[str]":
        """The next stdout line matching ``pattern``, within STARTUP_DEADLINE (else the test fails)."""
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.terminate()
                pytest.fail(
                    f"{self.name} did not print '{what}' within {STARTUP_DEADLINE:.0f}s\ncommand: {self.argv}\n"
                    f"stdout so far: {self.stdout_lines!r}\nstderr:\n{self.stderr()}",
                    pytrace=False,
                )
            try:
                line = self._lines.get(timeout=min(remaining, 0.25))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                pytest.fail(
                    f"{self.name} exited with status {code} before printing '{what}'\ncommand: {self.argv}\n"
                    f"stdout: {self.stdout_lines!r}\nstderr:\n{self.stderr()}",
                    pytrace=False,
                )
            self.stdout_lines.append(line)
            match = pattern.match(line)
            if match:
                return match

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def terminate(self) -> Tuple[Optional[int], bool]:
        """Stop it. Returns (status if it had already exited by itself, whether it needed SIGKILL)."""
        died = self.proc.poll()
        killed = False
        if died is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        # It runs in its own session (process group): end anything it left behind.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reader.join(timeout=5)
        return died, killed


class HostProcess(ChildProcess):
    """A host subprocess: its address once it serves, and its stderr for failure reports."""

    name = "host"

    def __init__(self, argv: List[str], cwd: Optional[Path] = None) -> None:
        super().__init__(argv, cwd)
        match = self.wait_line(LISTENING, "listening on HOST:PORT")
        self.address = f"{match.group(1)}:{match.group(2)}"


def start_host(extra_args: Sequence[str] = ()) -> HostProcess:
    """Start the host on a free port, with ``extra_args`` after ``--listen 127.0.0.1:0``.

    autogen_host.py takes the same options as agentd where AutoGen's host has an equivalent
    (see its --help); agentd_only tests are the ones that need agentd's behaviour.
    """
    if host_kind() == "autogen":
        argv = [sys.executable, str(HERE / "autogen_host.py"), "--listen", "127.0.0.1:0"]
    else:
        agentd = agentd_path()
        if not (agentd.is_file() and os.access(agentd, os.X_OK)):
            pytest.fail(
                f"agentd binary not found at {agentd}: build it (swift build), set AGENTD, "
                "or run with INTEROP_HOST=autogen to check the suite against AutoGen's host",
                pytrace=False,
            )
        argv = [str(agentd), "host", "--listen", "127.0.0.1:0"]
    return HostProcess([*argv, *extra_args], cwd=REPO)


def host_args_of(item: pytest.Item) -> List[str]:
    """The arguments of the test's ``host_args`` marker(s), outermost first; [] if none."""
    args: List[str] = []
    for marker in reversed(list(item.iter_markers("host_args"))):
        if marker.kwargs:
            pytest.fail(f"{item.nodeid}: host_args takes positional strings only", pytrace=False)
        args.extend(str(a) for a in marker.args)
    return args


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Iterator[HostProcess]:
    """A fresh host for each test (tests must not see each other's agent types), started with
    the test's ``host_args`` marker arguments, if any."""
    h = start_host(host_args_of(request.node))
    request.node._interop_host = h
    yield h
    died, killed = h.terminate()
    if died is not None:
        pytest.fail(f"host exited during the test with status {died}\nstderr:\n{h.stderr()}", pytrace=False)
    if killed:
        warnings.warn("host ignored SIGTERM for 10s and was killed")


@pytest.fixture
def host_address(host: HostProcess) -> str:
    """The address (HOST:PORT) of a running host, for GrpcWorkerAgentRuntime(host_address=...)."""
    return host.address


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    h = getattr(item, "_interop_host", None)
    if h is not None and report.failed:
        text = h.stderr()
        if len(text) > 20000:
            text = "...\n" + text[-20000:]
        report.sections.append(("host stderr", f"$ {' '.join(h.argv)}\n{text or '(empty)'}"))
    # Other processes a test started (runtime_support: `agentd run` and its host) report here.
    sections = getattr(item, "_interop_reports", None)
    if sections is not None and report.failed:
        report.sections.extend(sections())


# --- Protobuf ----------------------------------------------------------------------------------


def _generate_pb2(out_dir: Path) -> None:
    proto_dir = HERE / "proto"
    args = [f"-I{proto_dir}", f"--python_out={out_dir}", str(proto_dir / "interop.proto")]
    try:
        from grpc_tools import protoc as grpc_protoc  # type: ignore[import-not-found]
    except ImportError:
        grpc_protoc = None
    if grpc_protoc is not None:
        if grpc_protoc.main(["protoc", *args]) != 0:
            pytest.fail("grpc_tools.protoc failed on proto/interop.proto", pytrace=False)
        return
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.fail("need protoc (Debian protobuf-compiler) or grpcio-tools: run scripts/bootstrap", pytrace=False)
    result = subprocess.run([protoc, *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"protoc failed on proto/interop.proto:\n{result.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def interop_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """proto/interop.proto compiled to Python at test time and imported."""
    out_dir = tmp_path_factory.mktemp("interop_proto")
    _generate_pb2(out_dir)
    path = out_dir / "interop_pb2.py"
    spec = importlib.util.spec_from_file_location("interop_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["interop_pb2"] = module
    spec.loader.exec_module(module)
    return module
