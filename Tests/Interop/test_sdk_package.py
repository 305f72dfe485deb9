"""A Swift plugin written outside this repository, against the SDK package (``AgentSDK/``).

The plugin package depends on the SDK with the one line README.md documents,
``.package(path: "<checkout>/AgentSDK")``, from a checkout whose folder is not called "agentd";
``swift build`` resolves nothing (no network: the proxies point at a closed port), and
``agentd run`` serves the library it makes to a Python agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type

from conftest import REPO
from interop_support import run, worker
from runtime_support import OUR_HOST, RuntimeLauncher, launcher_fixture

# A cold build of the SDK and the plugin; a warm one takes a few seconds.
BUILD_DEADLINE = 240.0

PLUGIN_MANIFEST = """\
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Shouter",
    platforms: [.macOS(.v15)],
    products: [.library(name: "Shouter", type: .dynamic, targets: ["Shouter"])],
    dependencies: [.package(path: "../checkouts/agentd-fork-2/AgentSDK")],
    targets: [.target(name: "Shouter", dependencies: ["AgentSDK"])],
    swiftLanguageModes: [.v6]
)
"""

PLUGIN_SOURCE = """\
import AgentSDK

struct Shout: AgentMessage { var text: String }

final class Shouter: Agent {
    static let type = "shouter"
    init(context: AgentContext) {}
    static func handlers(_ registry: inout HandlerRegistry<Shouter>) {
        registry.onRPC(Shout.self) { _, message, _ in Shout(text: message.text.uppercased() + "!") }
    }
}

@_cdecl("agentd_plugin_entry")
public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
    Plugin(name: "shouter-plugin", version: "0.1.0", agents: [Shouter.self]).export(host, plugin)
}
"""


@dataclass
class Shout:
    text: str


@pytest.fixture(params=[OUR_HOST])
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


def copy_sdk_checkout(destination: Path) -> None:
    """What a plugin author's checkout of agentd holds of the SDK: the SDK package and the
    sources it links to."""
    (destination / "Sources").mkdir(parents=True)
    shutil.copytree(REPO / "AgentSDK", destination / "AgentSDK", symlinks=True)
    for name in ("AgentSDK", "AgentPluginABI"):
        shutil.copytree(REPO / "Sources" / name, destination / "Sources" / name)


@pytest.mark.timeout(BUILD_DEADLINE + 60)
def test_runtime_serves_an_out_of_tree_swift_plugin(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """A plugin package that depends on ``<checkout>/AgentSDK`` builds offline, resolving no
    package, and the runtime loads the library and answers its RPC."""
    copy_sdk_checkout(tmp_path / "checkouts" / "agentd-fork-2")
    package = tmp_path / "shouter"
    (package / "Sources" / "Shouter").mkdir(parents=True)
    (package / "Package.swift").write_text(PLUGIN_MANIFEST, encoding="utf-8")
    (package / "Sources" / "Shouter" / "Shouter.swift").write_text(PLUGIN_SOURCE, encoding="utf-8")

    closed = "http://127.0.0.1:9"
    env = {**os.environ, "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed,
           "HTTPS_PROXY": closed, "ALL_PROXY": closed, "GIT_TERMINAL_PROMPT": "0"}
    started = time.monotonic()
    built = subprocess.run(["swift", "build"], cwd=package, env=env, capture_output=True, text=True,
                           timeout=BUILD_DEADLINE, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    output = built.stdout + built.stderr
    assert built.returncode == 0, f"swift build failed after {seconds:.1f}s:\n{output}"
    assert "Fetching" not in output and "Computing version" not in output, output
    resolved = package / "Package.resolved"
    assert not resolved.exists() or '"location"' not in resolved.read_text(), resolved.read_text()
    library = package / ".build" / "debug" / "libShouter.so"
    assert library.is_file(), output

    setup = start_runtime([], extra_files={"libShouter.so": library.read_bytes()})
    assert setup.runtime.plugin_names() == ["shouter-plugin"], setup.runtime.ready_line

    async def body() -> None:
        async with worker(setup.address) as caller:
            caller.add_message_serializer(try_get_known_serializers_for_type(Shout))
            answer = await asyncio.wait_for(caller.send_message(Shout(text="hello"), AgentId("shouter", "x")), 10)
            assert answer == Shout(text="HELLO!")

    run(body())
