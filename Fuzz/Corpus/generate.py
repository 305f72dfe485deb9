#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora: Fuzz/Corpus/envelope/*.pb and Fuzz/Corpus/ini/*.ini.

Run from the repository root with the venv scripts/bootstrap makes:

    .venv/bin/python Fuzz/Corpus/generate.py

The envelopes are what AutoGen's own gRPC worker runtime (autogen-ext 0.7.5) puts on the wire,
built with its generated protobuf classes, its serialization registry and its subscription
conversion, as GrpcWorkerAgentRuntime.publish_message / send_message / _process_request build
them; plus subscription messages for the control channel. The INI files are Config/agentd.ini
and variants of it. The output is deterministic (fixed ids, no clocks): rerunning changes
nothing, so the committed files can be checked against this script.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from autogen_core import JSON_DATA_CONTENT_TYPE, TypePrefixSubscription, TypeSubscription
from autogen_core._serialization import PROTOBUF_DATA_CONTENT_TYPE, SerializationRegistry, try_get_known_serializers_for_type
from autogen_ext.runtimes.grpc import _constants
from autogen_ext.runtimes.grpc._utils import subscription_to_proto
from autogen_ext.runtimes.grpc.protos import agent_worker_pb2, cloudevent_pb2
from google.protobuf import any_pb2, timestamp_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENVELOPES = ROOT / "Fuzz" / "Corpus" / "envelope"
INI = ROOT / "Fuzz" / "Corpus" / "ini"

CloudEvent = cloudevent_pb2.CloudEvent
Attribute = CloudEvent.CloudEventAttributeValue


@dataclasses.dataclass
class Greeting:
    name: str


@dataclasses.dataclass
class Echo:
    text: str


registry = SerializationRegistry()
registry.add_serializer(try_get_known_serializers_for_type(Greeting))
registry.add_serializer(try_get_known_serializers_for_type(Echo))
# A protobuf message type AutoGen knows: its own AgentId, sent as a protobuf payload.
registry.add_serializer(try_get_known_serializers_for_type(agent_worker_pb2.AgentId))


def serialized(message: object, content_type: str) -> bytes:
    return registry.serialize(message, type_name=registry.type_name(message), data_content_type=content_type)


def attributes(content_type: str, message_type: str, sender: tuple[str, str]) -> dict[str, Attribute]:
    """The attributes GrpcWorkerAgentRuntime.publish_message sets."""
    return {
        _constants.DATA_CONTENT_TYPE_ATTR: Attribute(ce_string=content_type),
        _constants.DATA_SCHEMA_ATTR: Attribute(ce_string=message_type),
        _constants.AGENT_SENDER_TYPE_ATTR: Attribute(ce_string=sender[0]),
        _constants.AGENT_SENDER_KEY_ATTR: Attribute(ce_string=sender[1]),
        _constants.MESSAGE_KIND_ATTR: Attribute(ce_string=_constants.MESSAGE_KIND_VALUE_PUBLISH),
    }


# Fixed W3C trace context, as get_telemetry_grpc_metadata() returns inside a span.
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def envelopes() -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    # Events (publish_message): JSON in binary_data, protobuf in proto_data as an Any.
    greeting = Greeting(name="Ada")
    out["event-json-binary-data"] = agent_worker_pb2.Message(
        cloudEvent=CloudEvent(
            id="0b6c5d0e-7c1b-4f5e-9a57-6f0f8c1d2e3f", spec_version="1.0", type="greetings", source="demo",
            attributes=attributes(JSON_DATA_CONTENT_TYPE, "Greeting", ("greeter", "demo")),
            binary_data=serialized(greeting, JSON_DATA_CONTENT_TYPE)))
    out["event-json-no-sender"] = agent_worker_pb2.Message(
        cloudEvent=CloudEvent(
            id="5f2b8c11-0d7e-4a0a-8e52-3b1c9d4e5f60", spec_version="1.0", type="greeting-replies", source="demo",
            attributes=attributes(JSON_DATA_CONTENT_TYPE, "GreetingReply", ("unknown", "unknown")),
            binary_data=b'{"text": "Hello, Ada!"}'))
    any_payload = any_pb2.Any()
    any_payload.ParseFromString(serialized(agent_worker_pb2.AgentId(type="orders", key="o-1"), PROTOBUF_DATA_CONTENT_TYPE))
    out["event-proto-data-any"] = agent_worker_pb2.Message(
        cloudEvent=CloudEvent(
            id="9e8d7c6b-5a49-4838-a726-15f4e3d2c1b0", spec_version="1.0", type="orders.placed", source="shop/eu",
            attributes=attributes(PROTOBUF_DATA_CONTENT_TYPE, "agents.AgentId", ("orders", "o-1")),
            proto_data=any_payload))
    out["event-text-data"] = agent_worker_pb2.Message(
        cloudEvent=CloudEvent(
            id="1", spec_version="1.0", type="notes", source="k\u00e9y/\u2713",
            attributes={_constants.DATA_CONTENT_TYPE_ATTR: Attribute(ce_string="text/plain")},
            text_data="plain text \u00e9\u2713"))
    out["event-every-attribute-kind"] = agent_worker_pb2.Message(
        cloudEvent=CloudEvent(
            id="2", spec_version="1.0", type="t", source="s",
            attributes={
                "flag": Attribute(ce_boolean=True),
                "count": Attribute(ce_integer=-42),
                "raw": Attribute(ce_bytes=b"\x00\xff\x80"),
                "where": Attribute(ce_uri="https://example.com/a?b=c"),
                "ref": Attribute(ce_uri_ref="/relative#frag"),
                "when": Attribute(ce_timestamp=timestamp_pb2.Timestamp(seconds=1700000000, nanos=123)),
                "empty": Attribute(),
            },
            binary_data=b""))

    # Requests (send_message): JSON payloads, with and without a sending agent.
    out["request-json"] = agent_worker_pb2.Message(
        request=agent_worker_pb2.RpcRequest(
            request_id="1", target=agent_worker_pb2.AgentId(type="echo", key="default"),
            source=agent_worker_pb2.AgentId(type="greeter", key="demo"), metadata=TRACE,
            payload=agent_worker_pb2.Payload(
                data_type="Echo", data_content_type=JSON_DATA_CONTENT_TYPE,
                data=serialized(Echo(text="hello from the shell"), JSON_DATA_CONTENT_TYPE))))
    out["request-no-source"] = agent_worker_pb2.Message(
        request=agent_worker_pb2.RpcRequest(
            request_id="18446744073709551615", target=agent_worker_pb2.AgentId(type="echo", key="k\u00e9y"),
            payload=agent_worker_pb2.Payload(data_type="Echo", data_content_type=JSON_DATA_CONTENT_TYPE, data=b"{}")))
    out["request-proto-any"] = agent_worker_pb2.Message(
        request=agent_worker_pb2.RpcRequest(
            request_id="7", method="", target=agent_worker_pb2.AgentId(type="orders", key="o-1"),
            payload=agent_worker_pb2.Payload(
                data_type="agents.AgentId", data_content_type=PROTOBUF_DATA_CONTENT_TYPE,
                data=any_payload.SerializeToString())))

    # Responses (_process_request): a result, an error, a protobuf result.
    out["response-json"] = agent_worker_pb2.Message(
        response=agent_worker_pb2.RpcResponse(
            request_id="1", metadata=TRACE,
            payload=agent_worker_pb2.Payload(
                data_type="Echo", data_content_type=JSON_DATA_CONTENT_TYPE,
                data=serialized(Echo(text="hello from the shell"), JSON_DATA_CONTENT_TYPE))))
    out["response-error"] = agent_worker_pb2.Message(
        response=agent_worker_pb2.RpcResponse(request_id="2", error="ValueError: no handler for Echo"))
    out["response-proto-any"] = agent_worker_pb2.Message(
        response=agent_worker_pb2.RpcResponse(
            request_id="7",
            payload=agent_worker_pb2.Payload(
                data_type="agents.AgentId", data_content_type=PROTOBUF_DATA_CONTENT_TYPE,
                data=any_payload.SerializeToString())))
    out["message-empty"] = agent_worker_pb2.Message()

    # Subscriptions, as subscription_to_proto makes them: alone, in an AddSubscriptionRequest
    # (host) and in a GetSubscriptionsResponse (runtime).
    by_type = subscription_to_proto(TypeSubscription("greetings", "greeter", id="sub-1"))
    by_prefix = subscription_to_proto(TypePrefixSubscription("orders.", "orders", id="sub-2"))
    out["subscription-type"] = by_type
    out["add-subscription-prefix"] = agent_worker_pb2.AddSubscriptionRequest(subscription=by_prefix)
    out["get-subscriptions-response"] = agent_worker_pb2.GetSubscriptionsResponse(subscriptions=[by_type, by_prefix])

    return {name: message.SerializeToString(deterministic=True) for name, message in out.items()}


def ini_files() -> dict[str, bytes]:
    example = (ROOT / "Config" / "agentd.ini").read_bytes()
    full = b"""; every section and key, with values of each form
[runtime]
host = 127.0.0.1:50051   ; connect here
rpc_timeout = 2.5
workers = 4
client_id = "worker \\"one\\" ; #"

[host]
listen = [::1]:0
max_message_bytes = 4 MiB
rpc_timeout = 60

[plugins]
directory = ../plugins

[log]
level = debug

[plugin.greeter-plugin]
greeting = "Hello\\tworld\\n"
empty =
\tindented = yes # comment
"""
    return {
        "agentd.ini": example,
        "agentd-crlf-bom.ini": b"\xef\xbb\xbf" + example.replace(b"\n", b"\r\n"),
        "full.ini": full,
        "host-only.ini": b"[host]\nlisten = 0.0.0.0:0\nmax_message_bytes = 65536\n",
        "runtime-remote-host.ini": b"[runtime]\nhost = agents.example.com:443\nworkers = 1\n[log]\nlevel = trace\n",
        "bad-value.ini": b"[runtime]\nrpc_timeout = abc\n",
    }


def write(folder: pathlib.Path, files: dict[str, bytes], suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / (name if "." in name else name + suffix)
        path.write_bytes(data)
        print(f"{path.relative_to(ROOT)}: {len(data)} bytes")


def main() -> int:
    write(ENVELOPES, envelopes(), ".pb")
    write(INI, ini_files(), ".ini")
    return 0


if __name__ == "__main__":
    sys.exit(main())
