"""Swift plugins written outside this repository, against the SDK packages (``AgentSDK/``,
``AgentSDKProtobuf/``).

The JSON plugin package depends on the SDK with the one line README.md documents,
``.package(path: "<checkout>/AgentSDK")``, from a checkout whose folder is not called "agentd";
``swift build`` resolves nothing (no network: the proxies point at a closed port), and
``agentd run`` serves the library it makes to a Python agent. The protobuf plugin package
depends on ``<checkout>/AgentSDKProtobuf`` as well, resolves swift-protobuf and nothing else, and
its agent answers a Python worker's ``send_message`` with a protobuf message.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type
from google.protobuf import wrappers_pb2

from conftest import REPO
from interop_support import run, worker
from runtime_support import OUR_HOST, ProtobufJsonSerializer, RuntimeLauncher, launcher_fixture

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


PROTOBUF_PLUGIN_MANIFEST = """\
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Wrapper",
    platforms: [.macOS(.v15)],
    products: [.library(name: "Wrapper", type: .dynamic, targets: ["Wrapper"])],
    dependencies: [
        .package(path: "../checkouts/agentd-fork-2/AgentSDK"),
        .package(path: "../checkouts/agentd-fork-2/AgentSDKProtobuf"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        .target(name: "Wrapper", dependencies: [
            "AgentSDK", "AgentSDKProtobuf", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
"""

# protobuf's well-known StringValue stands in for a generated message.
PROTOBUF_PLUGIN_SOURCE = """\
import AgentSDK
import AgentSDKProtobuf
import SwiftProtobuf

final class Wrapper: Agent {
    static let type = "wrapper"
    init(context: AgentContext) {}
    static func handlers(_ registry: inout HandlerRegistry<Wrapper>) {
        registry.onRPC(Google_Protobuf_StringValue.self) { _, message, _ in
            Google_Protobuf_StringValue("[" + message.value + "]")
        }
    }
}

@_cdecl("agentd_plugin_entry")
public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
    Plugin(name: "wrapper-plugin", version: "0.1.0", agents: [Wrapper.self]).export(host, plugin)
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
    shutil.copytree(REPO / "AgentSDKProtobuf", destination / "AgentSDKProtobuf", symlinks=True)
    for name in ("AgentSDK", "AgentPluginABI", "AgentSDKProtobuf"):
        shutil.copytree(REPO / "Sources" / name, destination / "Sources" / name)


def build_plugin(
    tmp_path: Path, name: str, manifest: str, source: str, deadline: float = BUILD_DEADLINE
) -> tuple[Path, str]:
    """Writes and builds a plugin package beside a copy of the SDK checkout, offline (the
    proxies point at a closed port); returns the library and swift build's output."""
    copy_sdk_checkout(tmp_path / "checkouts" / "agentd-fork-2")
    package = tmp_path / name.lower()
    (package / "Sources" / name).mkdir(parents=True)
    (package / "Package.swift").write_text(manifest, encoding="utf-8")
    (package / "Sources" / name / f"{name}.swift").write_text(source, encoding="utf-8")

    closed = "http://127.0.0.1:9"
    env = {**os.environ, "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed,
           "HTTPS_PROXY": closed, "ALL_PROXY": closed, "GIT_TERMINAL_PROMPT": "0"}
    started = time.monotonic()
    built = subprocess.run(["swift", "build"], cwd=package, env=env, capture_output=True, text=True,
                           timeout=deadline, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    output = built.stdout + built.stderr
    assert built.returncode == 0, f"swift build failed after {seconds:.1f}s:\n{output}"
    library = package / ".build" / "debug" / f"lib{name}.so"
    assert library.is_file(), output
    return library, output


def resolved_locations(library: Path) -> list[str]:
    """The packages Package.resolved pins, beside the package that built ``library``."""
    resolved = library.parents[2] / "Package.resolved"
    if not resolved.exists():
        return []
    return sorted(pin["location"] for pin in json.loads(resolved.read_text())["pins"])


@pytest.mark.timeout(BUILD_DEADLINE + 60)
def test_runtime_serves_an_out_of_tree_swift_plugin(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """A plugin package that depends on ``<checkout>/AgentSDK`` builds offline, resolving no
    package, and the runtime loads the library and answers its RPC."""
    library, output = build_plugin(tmp_path, "Shouter", PLUGIN_MANIFEST, PLUGIN_SOURCE)
    assert "Fetching" not in output and "Computing version" not in output, output
    assert resolved_locations(library) == []

    setup = start_runtime([], extra_files={"libShouter.so": library.read_bytes()})
    assert setup.runtime.plugin_names() == ["shouter-plugin"], setup.runtime.ready_line

    async def body() -> None:
        async with worker(setup.address) as caller:
            caller.add_message_serializer(try_get_known_serializers_for_type(Shout))
            answer = await asyncio.wait_for(caller.send_message(Shout(text="hello"), AgentId("shouter", "x")), 10)
            assert answer == Shout(text="HELLO!")

    run(body())


# SwiftProtobuf is a cold build of its own: allow it a second build's time.
@pytest.mark.timeout(2 * BUILD_DEADLINE + 60)
def test_runtime_serves_an_out_of_tree_swift_protobuf_plugin(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """A plugin package that depends on ``<checkout>/AgentSDKProtobuf`` builds offline, resolving
    swift-protobuf (from the machine's package mirror) and nothing else, and its protobuf RPC
    answers AutoGen's send_message (protobuf's JSON mapping) with a protobuf StringValue."""
    library, _ = build_plugin(
        tmp_path, "Wrapper", PROTOBUF_PLUGIN_MANIFEST, PROTOBUF_PLUGIN_SOURCE, deadline=2 * BUILD_DEADLINE)
    assert resolved_locations(library) == ["https://github.com/apple/swift-protobuf.git"]

    setup = start_runtime([], extra_files={"libWrapper.so": library.read_bytes()})
    assert setup.runtime.plugin_names() == ["wrapper-plugin"], setup.runtime.ready_line
    StringValue = wrappers_pb2.StringValue

    async def body() -> None:
        async with worker(setup.address) as caller:
            caller.add_message_serializer(try_get_known_serializers_for_type(StringValue))
            caller.add_message_serializer(ProtobufJsonSerializer(StringValue))
            answer = await asyncio.wait_for(caller.send_message(StringValue(value="hi"), AgentId("wrapper", "x")), 10)
            assert answer == StringValue(value="[hi]")

    run(body())
