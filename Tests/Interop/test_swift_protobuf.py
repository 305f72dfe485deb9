"""A Swift plugin that speaks protobuf (``Plugins/SwiftProtoAgent``, through AgentSDKProtobuf)
with AutoGen 0.7.5's Python workers, served by ``agentd run``.

Its agent type ``swift-orders`` shares ProtoAgent's ``sample.proto`` with Python: a Python worker
publishes an ``agentd.samples.Order`` as protobuf and receives the Swift agent's protobuf
``OrderReceipt``; and ``send_message`` (which always encodes JSON) reaches the same agent's RPC in
protobuf's JSON mapping. Conditions are awaited with deadlines, never slept for.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
from autogen_core import PROTOBUF_DATA_CONTENT_TYPE, AgentId, TopicId, try_get_known_serializers_for_type

from interop_support import RawCollector, run, take, worker
from runtime_support import SETUPS, ProtobufJsonSerializer, RuntimeLauncher, compile_sample_pb2, launcher_fixture

SWIFT_PROTO = "libSwiftProtoAgent.so"

# How long an answer that should come at once may take (the point being "not hanging").
FAST = 5.0


@pytest.fixture(params=SETUPS)
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


@pytest.fixture(scope="module")
def sample_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return compile_sample_pb2(tmp_path_factory.mktemp("sample_proto"))


def add_protobuf_serializers(runtime: Any, *classes: Any) -> None:
    """AutoGen's protobuf serializer and the JSON-mapping one (for send_message), per class."""
    for cls in classes:
        runtime.add_message_serializer(try_get_known_serializers_for_type(cls))
        runtime.add_message_serializer(ProtobufJsonSerializer(cls))


def test_protobuf_events_both_ways(start_runtime: RuntimeLauncher, sample_pb2: ModuleType) -> None:
    """An Order that a Python worker publishes as application/x-protobuf reaches the Swift agent
    swift-orders/S, which publishes its OrderReceipt as protobuf to ("swift-order-receipts", S),
    where a Python agent receives it as an OrderReceipt, sent by swift-orders/S."""
    Order, OrderReceipt = sample_pb2.Order, sample_pb2.OrderReceipt
    setup = start_runtime([SWIFT_PROTO])
    assert setup.runtime.plugin_names() == ["swift-proto-plugin"], setup.runtime.ready_line

    async def body() -> None:
        async with worker(setup.address) as sub, worker(
            setup.address, payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE
        ) as pub:
            for w in (sub, pub):
                add_protobuf_serializers(w, Order, OrderReceipt)
            sink = await RawCollector.subscribe(sub, "swift-order-receipts")

            await pub.publish_message(Order(id="o-1 ✓", items=["apple", "pear", "plum"], quantity=4), TopicId("swift-orders", "s1"))
            [got] = await take(sink, 1)
            assert isinstance(got.message, OrderReceipt), f"receipt not decoded as OrderReceipt: {got.message!r}"
            assert got.message == OrderReceipt(order_id="o-1 ✓", total_items=12, note="swift-orders/s1: 3 item(s) x 4")
            assert got.topic == TopicId("swift-order-receipts", "s1")
            assert got.sender == AgentId("swift-orders", "s1")

            # An Order with every field at its default is zero bytes of protobuf, and a message.
            await pub.publish_message(Order(), TopicId("swift-orders", "s2"))
            [got] = await take(sink, 1)
            assert got.message == OrderReceipt(order_id="", total_items=0, note="swift-orders/s2: 0 item(s) x 0")

    run(body())


def test_rpc_from_send_message(start_runtime: RuntimeLauncher, sample_pb2: ModuleType) -> None:
    """AutoGen's send_message reaches the Swift agent's protobuf RPC in protobuf's JSON mapping
    and gets the OrderReceipt back in it; a refusal (a negative quantity) comes back as an error
    carrying the Swift handler's reason."""
    Order, OrderReceipt = sample_pb2.Order, sample_pb2.OrderReceipt
    setup = start_runtime([SWIFT_PROTO])

    async def body() -> None:
        async with worker(setup.address) as caller:
            add_protobuf_serializers(caller, Order, OrderReceipt)
            target = AgentId("swift-orders", "k2")
            answer = await asyncio.wait_for(
                caller.send_message(Order(id='o-3 "q" \\ 😀', items=["apple", "pear"], quantity=3), target), FAST
            )
            assert isinstance(answer, OrderReceipt), f"answer not decoded as OrderReceipt: {answer!r}"
            assert answer == OrderReceipt(order_id='o-3 "q" \\ 😀', total_items=6, note="swift-orders/k2: 2 item(s) x 3")
            # All defaults: MessageToJson writes "{}", and the receipt comes back all but empty.
            answer = await asyncio.wait_for(caller.send_message(Order(), target), FAST)
            assert answer == OrderReceipt(order_id="", total_items=0, note="swift-orders/k2: 0 item(s) x 0")

            with pytest.raises(Exception, match=r"order n: quantity -1 is negative"):
                await asyncio.wait_for(caller.send_message(Order(id="n", quantity=-1), target), FAST)

    run(body())
