"""scripts/install and the systemd side of agentd: what a newcomer installs works from where it
is installed (an out-of-tree C plugin built with ``pkg-config --cflags agentd-plugin`` loads into
the installed ``agentd run``), the units pass ``systemd-analyze verify``, and both programs tell
systemd they are ready (``READY=1``) and stopping (``STOPPING=1``) over ``$NOTIFY_SOCKET``.

The install test installs the debug build (``--configuration debug``), which the suite has built
already. Skipped with INTEROP_HOST=autogen (these are agentd's own binaries).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import REPO, ChildProcess, HostProcess, agentd_path
from test_host_binary import agentd_host_path

pytestmark = pytest.mark.agentd_only

READY = re.compile(r"^ready: ")
NOTIFY_DEADLINE = 20.0

# A plugin as an outside author writes it: the header's own minimal plugin, answering `Echo` with
# what it was sent, built against the installed header only.
MINIMAL_PLUGIN = r"""
#include <agent_plugin.h>

static agentd_status on_echo(void *instance, const agentd_message *m) {
    (void)instance;
    return m->host->reply(m->call, m->message_type, m->content_type, m->payload);
}
static const agentd_handler handlers[] = {
    { sizeof(agentd_handler), "Echo", on_echo },
};
static const agentd_agent_type types[] = {{
    .size = sizeof(agentd_agent_type), .name = "outside-echo",
    .handlers = handlers, .handler_count = 1,
}};
static const agentd_plugin plugin = {
    .size = sizeof(agentd_plugin), .abi_major = AGENTD_ABI_MAJOR,
    .abi_minor = AGENTD_ABI_MINOR, .name = "outside-echo-plugin", .version = "1.0.0",
    .agent_types = types, .agent_type_count = 1,
};
AGENTD_EXPORT const agentd_plugin *agentd_plugin_entry(const agentd_host_api *host,
                                                       agentd_plugin_ref *self) {
    (void)host; (void)self;
    return &plugin;
}
"""


def run_checked(argv: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{argv} exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installation into a fresh prefix (the debug build, which the suite has built)."""
    target = tmp_path_factory.mktemp("prefix")
    run_checked([str(REPO / "scripts" / "install"), "--prefix", str(target), "--configuration", "debug"])
    return target


def test_install_lays_out_binaries_headers_pkgconfig_example_and_units(prefix: Path) -> None:
    for binary in ("agentd", "agentd-host"):
        assert os.access(prefix / "bin" / binary, os.X_OK), f"bin/{binary} not installed"
    headers = sorted(p.name for p in (REPO / "Sources" / "AgentPluginABI" / "include").glob("*.h"))
    assert "agent_plugin.h" in headers
    assert sorted(p.name for p in (prefix / "include" / "agentd").glob("*.h")) == headers
    assert (prefix / "share" / "agentd" / "agentd.ini").read_text() == (REPO / "Config" / "agentd.ini").read_text()
    version = run_checked([str(prefix / "bin" / "agentd"), "--version"]).strip()
    assert run_checked([str(prefix / "bin" / "agentd-host"), "--version"]).strip() == version
    env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "share" / "pkgconfig")}
    assert run_checked(["pkg-config", "--modversion", "agentd-plugin"], env=env).strip() == version
    assert run_checked(["pkg-config", "--cflags", "agentd-plugin"], env=env).split() == [f"-I{prefix}/include/agentd"]
    for unit in ("agentd-host.service", "agentd@.service"):
        text = (prefix / "lib" / "systemd" / "system" / unit).read_text()
        assert "Type=notify" in text and f"{prefix}/bin/" in text and "@BINDIR@" not in text


def test_destdir_stages_without_changing_the_installed_paths(tmp_path: Path) -> None:
    env = {**os.environ, "DESTDIR": str(tmp_path / "stage")}
    run_checked([str(REPO / "scripts" / "install"), "--prefix", "/opt/agentd", "--configuration", "debug", "--no-build"],
                env=env)
    staged = tmp_path / "stage" / "opt" / "agentd"
    assert os.access(staged / "bin" / "agentd", os.X_OK)
    assert "prefix=/opt/agentd\n" in (staged / "share" / "pkgconfig" / "agentd-plugin.pc").read_text()
    assert "ExecStart=/opt/agentd/bin/agentd run --config /etc/agentd/%i.ini" in (
        staged / "lib" / "systemd" / "system" / "agentd@.service").read_text()


def test_units_pass_systemd_analyze_verify(prefix: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = prefix / "lib" / "systemd" / "system"
    # An instance of the template, as `systemctl enable agentd@demo` would name it.
    shutil.copy(units / "agentd@.service", tmp_path / "agentd@demo.service")
    shutil.copy(units / "agentd-host.service", tmp_path / "agentd-host.service")
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "agentd-host.service"),
                           str(tmp_path / "agentd@demo.service")], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "agentd" in line]  # verify also reports the machine's own units
    assert done.returncode == 0 and not problems, f"systemd-analyze verify:\n{done.stdout}{done.stderr}"


def test_an_out_of_tree_plugin_builds_with_pkg_config_and_runs(prefix: Path, tmp_path: Path) -> None:
    """`cc $(pkg-config --cflags agentd-plugin) -shared -fPIC` against the installed header, then
    the installed `agentd run` loads the plugin and answers an RPC through it."""
    source = tmp_path / "x.c"
    source.write_text(MINIMAL_PLUGIN)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    env = {**os.environ, "PKG_CONFIG_PATH": str(prefix / "share" / "pkgconfig")}
    cflags = run_checked(["pkg-config", "--cflags", "agentd-plugin"], env=env).split()
    run_checked(["cc", *cflags, "-shared", "-fPIC", "-o", str(plugins / "libx.so"), str(source)])
    ini = tmp_path / "agentd.ini"
    ini.write_text("[host]\nlisten = 127.0.0.1:0\n\n[plugins]\ndirectory = plugins\n\n[state]\nstore = none\n")
    agentd = prefix / "bin" / "agentd"
    runtime = ChildProcess([str(agentd), "run", "--config", str(ini)], cwd=tmp_path)
    try:
        address = runtime.wait_line(re.compile(r"^listening on (\S+)$"), "listening on").group(1)
        runtime.wait_line(READY, "ready:")
        assert "outside-echo-plugin 1.0.0" in runtime.stdout_lines[-1]
        answer = run_checked([str(agentd), "send", "--host", address, "--agent", "outside-echo/k", "--type", "Echo",
                              "--json", '{"text": "from outside"}'], timeout=30)
        assert json.loads(answer.split(" ", 1)[1]) == {"text": "from outside"}
    finally:
        died, _ = runtime.terminate()
    assert died is None, runtime.stderr()


class NotifySocket:
    """A unix datagram socket standing in for systemd's notification socket."""

    def __init__(self, directory: Path, abstract: bool) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"agentd-test-{os.getpid()}-{time.monotonic_ns()}"
            self.socket.bind("\0" + name)
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self.socket.bind(str(path))
            self.address = str(path)

    def receive(self, wanted: str) -> List[str]:
        """The notices received until one has the line ``wanted`` (each a list of lines)."""
        deadline = time.monotonic() + NOTIFY_DEADLINE
        seen: List[str] = []
        while time.monotonic() < deadline:
            self.socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                lines = self.socket.recv(4096).decode().split("\n")
            except socket.timeout:
                break
            seen.append("|".join(lines))
            if wanted in lines:
                return lines
        pytest.fail(f"no {wanted} within {NOTIFY_DEADLINE:.0f}s; received {seen!r}", pytrace=False)

    def close(self) -> None:
        self.socket.close()


def stop_expecting_stopping(process: ChildProcess, notify: NotifySocket) -> None:
    """SIGTERM: the process says STOPPING=1, then ends its graceful shutdown with status 0."""
    process.proc.send_signal(signal.SIGTERM)
    notify.receive("STOPPING=1")
    assert process.proc.wait(timeout=20) == 0, process.stderr()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_agentd_host_notifies_ready_and_stopping(tmp_path: Path, abstract: bool) -> None:
    notify = NotifySocket(tmp_path, abstract)
    os.environ["NOTIFY_SOCKET"] = notify.address
    try:
        host = HostProcess([str(agentd_host_path()), "--listen", "127.0.0.1:0"], cwd=REPO)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        ready = notify.receive("READY=1")
        assert f"STATUS=listening on {host.address}" in ready
        stop_expecting_stopping(host, notify)
    finally:
        host.terminate()
        notify.close()


def test_agentd_run_notifies_ready_once_its_plugins_are_loaded(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path, abstract=False)
    (tmp_path / "plugins").mkdir()
    ini = tmp_path / "agentd.ini"
    ini.write_text("[host]\nlisten = 127.0.0.1:0\n\n[plugins]\ndirectory = plugins\n\n[state]\nstore = none\n")
    os.environ["NOTIFY_SOCKET"] = notify.address
    try:
        runtime = ChildProcess([str(agentd_path()), "run", "--config", str(ini)], cwd=tmp_path)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        ready = notify.receive("READY=1")
        # The ready line comes first: READY=1 means what "ready:" means.
        runtime.wait_line(READY, "ready:")
        assert any(line.startswith("STATUS=ready:") for line in ready), ready
        stop_expecting_stopping(runtime, notify)
    finally:
        runtime.terminate()
        notify.close()
