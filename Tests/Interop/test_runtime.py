"""`agentd run` end to end: the example plugins serving AutoGen's own Python agents.

Every test runs in two setups (runtime_support.py): ``our-host``, the runtime's embedded host,
which Python workers join at the address it prints; and ``autogen-host``, AutoGen's
GrpcWorkerAgentRuntimeHost, which both the runtime (``--host``) and the Python workers join.
Each test starts its own runtime with its own copy of the plugins. Conditions are awaited with
deadlines, never slept for. See README.md for what each test checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
from autogen_core import (
    PROTOBUF_DATA_CONTENT_TYPE,
    AgentId,
    TopicId,
    TypeSubscription,
    try_get_known_serializers_for_type,
)
from autogen_ext.runtimes.grpc.protos import agent_worker_pb2

from interop_support import DEADLINE, Delivery, RawCollector, run, take, worker
from runtime_support import (
    AUTOGEN_HOST,
    ECHO,
    GREETER,
    OUR_HOST,
    PROTO,
    SETUPS,
    ProtobufJsonSerializer,
    SHUTDOWN_DEADLINE,
    RawJson,
    RawJsonSerializer,
    RuntimeLauncher,
    compile_sample_pb2,
    launcher_fixture,
    plugin_build_dir,
    tap_response_outcomes,
)

# How long an answer that should come at once may take (the point being "not hanging").
FAST = 5.0


@pytest.fixture(params=SETUPS)
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    """Starts ``agentd run`` (``start_runtime(plugins, ini_extra=..., extra_files=...)``) in this
    test's setup; everything it started is stopped at the end, and a runtime or host that exited
    during the test fails it."""
    yield from launcher_fixture(request, tmp_path)


@pytest.fixture(scope="session")
def sample_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Plugins/ProtoAgent/proto/sample.proto compiled with the system protoc at test time."""
    return compile_sample_pb2(tmp_path_factory.mktemp("sample_proto"))


def uid() -> str:
    return uuid.uuid4().hex[:12]


# --- The plugins' JSON messages (type name = the bare class name) ------------------------------------


@dataclass
class Echo:
    text: Any


@dataclass
class Greeting:
    name: str


@dataclass
class GreetingReply:
    text: str


def add_serializers(runtime: Any, *types: Any) -> None:
    for t in types:
        runtime.add_message_serializer(try_get_known_serializers_for_type(t))


# --- 1, 2: echo (C plugin, JSON RPC) -----------------------------------------------------------------


ECHO_TEXTS = [
    "plain",
    "",
    'héllo, wörld ✓ — ünïcödé 日本語',
    'quotes "double" \'single\' back\\slash /slash',
    "escapes \n\r\t\b\f and \x00 NUL and \x1f",
    "astral 😀𝄞 (surrogate pairs in JSON)",
    '{"text": "not nested"}',
]


def test_echo_round_trip(start_runtime: RuntimeLauncher) -> None:
    """A Python agent's Echo RPC comes back with the same text, whatever characters it holds;
    20 concurrent RPCs to 20 echo agents each get their own answer."""
    setup = start_runtime([ECHO])
    assert setup.runtime.plugin_names() == ["echo-plugin"], setup.runtime.ready_line

    async def body() -> None:
        async with worker(setup.address) as caller:
            add_serializers(caller, Echo)
            for text in ECHO_TEXTS:
                answer = await asyncio.wait_for(caller.send_message(Echo(text=text), AgentId("echo", "default")), FAST)
                assert isinstance(answer, Echo), f"answer not decoded as Echo: {answer!r}"
                assert answer.text == text

            texts = [f"concurrent {i} ✓ \"{uid()}\"" for i in range(20)]
            answers = await asyncio.wait_for(
                asyncio.gather(*(caller.send_message(Echo(text=t), AgentId("echo", f"key-{i}")) for i, t in enumerate(texts))),
                DEADLINE,
            )
            assert [a.text for a in answers] == texts

    run(body())


def test_echo_malformed_input_raises_the_plugins_error(start_runtime: RuntimeLauncher) -> None:
    """Echo payloads the plugin refuses make the Python caller's send_message raise the plugin's
    reason, fast: "text" of the wrong type, no "text" member, and JSON that does not parse.
    The agent keeps answering afterwards."""
    setup = start_runtime([ECHO])
    target = AgentId("echo", "default")

    # Same type name "Echo", other shapes: each needs a worker of its own, as AutoGen's
    # serializer registry holds one serializer per type name.
    EchoWithoutText = dataclasses.make_dataclass("Echo", [("txt", str)])
    RawEcho = type("Echo", (RawJson,), {})

    async def refused(caller: Any, message: Any) -> str:
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(caller.send_message(message, target), FAST)
        assert not isinstance(caught.value, asyncio.TimeoutError), f"no answer within {FAST}s to {message!r}"
        return str(caught.value)

    async def body() -> None:
        async with worker(setup.address) as a, worker(setup.address) as b, worker(setup.address) as c:
            add_serializers(a, Echo)
            add_serializers(b, EchoWithoutText)
            c.add_message_serializer(RawJsonSerializer("Echo"))

            wrong_type = await refused(a, Echo(text=42))
            assert re.search(r'echo: the "text" member is not a string', wrong_type), wrong_type

            missing = await refused(b, EchoWithoutText(txt="hello"))
            assert re.search(r'echo: the payload has no "text" member', missing), missing

            broken = await refused(c, RawEcho(b'{"text": "unterminated'))
            assert re.search(r"echo: malformed JSON payload: unterminated string", broken), broken

            answer = await asyncio.wait_for(a.send_message(Echo(text="still here"), target), FAST)
            assert answer == Echo(text="still here")

    run(body())


# --- 3: greeter (Swift plugin, JSON events and RPC, settings) ----------------------------------------


@pytest.mark.parametrize(
    ("ini_extra", "expected"),
    [
        ("", "Hello, Ada!"),
        ("[plugin.greeter-plugin]\ngreeting = Hi\n", "Hi, Ada!"),
    ],
    ids=["default-greeting", "greeting=Hi"],
)
def test_greeter_answers_a_published_greeting(start_runtime: RuntimeLauncher, ini_extra: str, expected: str) -> None:
    """A Greeting published to ("greetings", "s1") makes the greeter publish a GreetingReply to
    ("greeting-replies", "s1"); `greeting` in [plugin.greeter-plugin] replaces "Hello". The
    greeter also answers a Greeting RPC with a GreetingReply."""
    setup = start_runtime([GREETER], ini_extra=ini_extra)
    assert setup.runtime.plugin_names() == ["greeter-plugin"], setup.runtime.ready_line

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        collector = f"replies-{uid()}"
        async with worker(setup.address) as sub, worker(setup.address) as pub:
            add_serializers(sub, GreetingReply)
            add_serializers(pub, Greeting, GreetingReply)
            await RawCollector.register(sub, collector, lambda: RawCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription("greeting-replies", collector))

            await pub.publish_message(Greeting(name="Ada"), TopicId("greetings", "s1"))
            [got] = await take(sink, 1)
            assert got.message == GreetingReply(text=expected)
            assert got.topic == TopicId("greeting-replies", "s1")
            assert got.agent == AgentId(collector, "s1")
            assert got.sender == AgentId("greeter", "s1")

            name = 'Zoë "Z" \\ 😀'
            await pub.publish_message(Greeting(name=name), TopicId("greetings", "s2 ✓"))
            [got] = await take(sink, 1)
            assert got.message == GreetingReply(text=expected.replace("Ada", name))
            assert got.topic == TopicId("greeting-replies", "s2 ✓")

            answer = await asyncio.wait_for(pub.send_message(Greeting(name="Grace"), AgentId("greeter", "k")), FAST)
            assert answer == GreetingReply(text=expected.replace("Ada", "Grace"))

    run(body())


# --- 4: orders (C plugin, protobuf) --------------------------------------------------------------------


def test_orders_receipt_for_a_published_protobuf_order(start_runtime: RuntimeLauncher, sample_pb2: ModuleType) -> None:
    """An agentd.samples.Order published as application/x-protobuf to ("orders", "s1") by a
    protobuf worker makes the orders agent publish the right OrderReceipt to
    ("order-receipts", "s1"), as agent orders/s1."""
    Order, OrderReceipt = sample_pb2.Order, sample_pb2.OrderReceipt
    setup = start_runtime([PROTO])
    assert setup.runtime.plugin_names() == ["proto-plugin"], setup.runtime.ready_line

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        collector = f"receipts-{uid()}"
        async with worker(setup.address) as sub, worker(setup.address, payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE) as pub:
            for w in (sub, pub):
                add_serializers(w, Order, OrderReceipt)
            await RawCollector.register(sub, collector, lambda: RawCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription("order-receipts", collector))

            await pub.publish_message(Order(id="o-1 ✓", items=["apple", "pear", "plum"], quantity=4), TopicId("orders", "s1"))
            [got] = await take(sink, 1)
            assert isinstance(got.message, OrderReceipt), f"receipt not decoded as OrderReceipt: {got.message!r}"
            assert got.message == OrderReceipt(order_id="o-1 ✓", total_items=12, note="orders/s1: 3 item(s) x 4")
            assert got.topic == TopicId("order-receipts", "s1")
            assert got.sender == AgentId("orders", "s1")

            # An empty Order is valid protobuf (all defaults); another topic source, another agent.
            await pub.publish_message(Order(), TopicId("orders", "s2"))
            [got] = await take(sink, 1)
            assert got.message == OrderReceipt(order_id="", total_items=0, note="orders/s2: 0 item(s) x 0")
            assert got.topic == TopicId("order-receipts", "s2")

    run(body())


def test_orders_protobuf_rpc(start_runtime: RuntimeLauncher, sample_pb2: ModuleType) -> None:
    """An RPC carrying an Order (application/x-protobuf) is answered with its OrderReceipt.

    AutoGen's send_message always serializes RPC payloads as JSON (protocol.md), so the request
    is built here exactly as send_message builds one, but with AutoGen's own protobuf
    serialization of the Order (its serializer registry's), and goes out on the worker's real
    connection; the answer goes through the worker's own response processing and resolves the
    pending future, as for send_message.
    """
    Order, OrderReceipt = sample_pb2.Order, sample_pb2.OrderReceipt
    setup = start_runtime([PROTO])

    async def body() -> None:
        async with worker(setup.address, payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE) as caller:
            add_serializers(caller, Order, OrderReceipt)
            outcomes = tap_response_outcomes(caller)
            order = Order(id="o-2", items=["x"], quantity=4)
            data_type = caller._serialization_registry.type_name(order)  # noqa: SLF001
            assert data_type == "agentd.samples.Order"
            data = caller._serialization_registry.serialize(  # noqa: SLF001
                order, type_name=data_type, data_content_type=PROTOBUF_DATA_CONTENT_TYPE
            )
            request_id = f"proto-{uid()}"
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            caller._pending_requests[request_id] = future  # noqa: SLF001
            await caller._host_connection.send(  # type: ignore[union-attr]  # noqa: SLF001
                agent_worker_pb2.Message(
                    request=agent_worker_pb2.RpcRequest(
                        request_id=request_id,
                        target=agent_worker_pb2.AgentId(type="orders", key="k1"),
                        payload=agent_worker_pb2.Payload(
                            data_type=data_type, data_content_type=PROTOBUF_DATA_CONTENT_TYPE, data=data
                        ),
                    )
                )
            )
            [outcome] = await take(outcomes, 1, deadline=FAST)
            response = outcome.response
            assert outcome.error is None, (
                f"AutoGen could not process the answer ({outcome.error!r}); it carried "
                f"{response.payload.data_type!r} / {response.payload.data_content_type!r}, data "
                f"{response.payload.data!r}, error {response.error!r}"
            )
            assert future.done()
            assert future.result() == OrderReceipt(order_id="o-2", total_items=4, note="orders/k1: 1 item(s) x 4")

    run(body())


def test_orders_rpc_from_send_message_in_protobufs_json_mapping(start_runtime: RuntimeLauncher, sample_pb2: ModuleType) -> None:
    """AutoGen's own send_message reaches the orders agent with a protobuf class: it encodes the
    request as JSON (always, whatever payload_serialization_format says), so the worker
    registers a serializer in protobuf's JSON mapping (ProtobufJsonSerializer, as README.md
    shows) and the plugin answers in that form, which comes back as an OrderReceipt. Without it,
    send_message refuses the class. Refusals carry the plugin's reason."""
    Order, OrderReceipt = sample_pb2.Order, sample_pb2.OrderReceipt
    setup = start_runtime([PROTO])

    async def body() -> None:
        async with worker(setup.address) as bare, worker(
            setup.address, payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE
        ) as caller:
            # Only AutoGen's protobuf serializer: send_message cannot encode the request.
            add_serializers(bare, Order, OrderReceipt)
            with pytest.raises(ValueError, match="Unknown type agentd.samples.Order with content type application/json"):
                await asyncio.wait_for(bare.send_message(Order(id="x"), AgentId("orders", "k")), FAST)

            add_serializers(caller, Order, OrderReceipt)
            for cls in (Order, OrderReceipt):
                caller.add_message_serializer(ProtobufJsonSerializer(cls))
            target = AgentId("orders", "k2")
            answer = await asyncio.wait_for(
                caller.send_message(Order(id='o-3 ✓ "q" \\ 😀', items=["apple", "pear", "plum"], quantity=4), target), FAST
            )
            assert isinstance(answer, OrderReceipt), f"answer not decoded as OrderReceipt: {answer!r}"
            assert answer == OrderReceipt(order_id='o-3 ✓ "q" \\ 😀', total_items=12, note="orders/k2: 3 item(s) x 4")
            # All defaults: MessageToJson writes "{}".
            answer = await asyncio.wait_for(caller.send_message(Order(), target), FAST)
            assert answer == OrderReceipt(order_id="", total_items=0, note="orders/k2: 0 item(s) x 0")

            with pytest.raises(Exception, match=r"orders: quantity must not be negative \(got -1\)"):
                await asyncio.wait_for(caller.send_message(Order(id="n", quantity=-1), target), FAST)

            # The same agent still takes protobuf events from this worker (its publish format).
            sink: asyncio.Queue[Delivery] = asyncio.Queue()
            collector = f"receipts-{uid()}"
            await RawCollector.register(caller, collector, lambda: RawCollector(sink), skip_direct_message_subscription=True)
            await caller.add_subscription(TypeSubscription("order-receipts", collector))
            await caller.publish_message(Order(id="o-4", items=["x"], quantity=2), TopicId("orders", "s9"))
            [got] = await take(sink, 1)
            assert got.message == OrderReceipt(order_id="o-4", total_items=2, note="orders/s9: 1 item(s) x 2")

    run(body())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id": "a", "items": ["b"], "quantity": "7"}', None),  # an int32 may be a string
        (b'{"id": null, "items": null, "quantity": null}', None),
        (b'{"id": "a", "colour": "red"}', r"unknown member"),
        (b'{"id": 5}', r'"id" is not a string'),
        (b'{"items": ["a", 1]}', r'an element of "items" is not a string'),
        (b'{"quantity": 1.5}', r'"quantity" is not an int32'),
        (b'{"quantity": 4294967296}', r'"quantity" is not an int32'),
        (b'{"id": "a\\u0000b"}', r"a string holds U\+0000"),
        (b'{"id": "unterminated', r"unterminated string"),
        (b"[]", r"the top-level value is not an object"),
    ],
    ids=["quantity-string", "nulls", "unknown-member", "id-number", "items-number", "fraction", "int32-overflow",
         "nul", "unterminated", "array"],
)
@pytest.mark.parametrize("start_runtime", [OUR_HOST], indirect=True)
def test_orders_json_rpc_reads_protobufs_json_mapping(
    start_runtime: RuntimeLauncher, sample_pb2: ModuleType, payload: bytes, reason: str
) -> None:
    """The orders agent reads an Order's JSON as proto3's JSON mapping says (an int32 as a
    number or a string, null for a default) and refuses the rest with a reason, fast."""
    OrderReceipt = sample_pb2.OrderReceipt
    setup = start_runtime([PROTO])
    RawOrder = type("Order", (RawJson,), {})

    async def body() -> None:
        async with worker(setup.address) as caller:
            serializer = RawJsonSerializer("agentd.samples.Order")
            caller.add_message_serializer(serializer)
            caller.add_message_serializer(ProtobufJsonSerializer(OrderReceipt))
            # send_message names the type after the class: make it the Order's full name.
            caller._serialization_registry.type_name = lambda message: "agentd.samples.Order"  # type: ignore[method-assign]  # noqa: SLF001
            call = caller.send_message(RawOrder(payload), AgentId("orders", "j"))
            if reason is None:
                answer = await asyncio.wait_for(call, FAST)
                assert isinstance(answer, OrderReceipt), repr(answer)
                expected = 7 if b'"7"' in payload else 0
                assert answer.total_items == expected
            else:
                with pytest.raises(Exception) as caught:
                    await asyncio.wait_for(call, FAST)
                assert not isinstance(caught.value, asyncio.TimeoutError), "no answer"
                assert re.search(reason, str(caught.value)), str(caught.value)

    run(body())


@pytest.mark.parametrize("start_runtime", [AUTOGEN_HOST], indirect=True)
def test_joins_the_host_named_in_the_ini_file(start_runtime: RuntimeLauncher) -> None:
    """With ``[runtime] host`` in the INI file (no --host) the runtime joins that host, prints
    only its ready line, and serves there."""
    setup = start_runtime([ECHO], host_in_ini=True)
    assert setup.runtime.stdout_lines == ["ready: echo-plugin 1.0.0"]

    async def body() -> None:
        async with worker(setup.address) as caller:
            add_serializers(caller, Echo)
            answer = await asyncio.wait_for(caller.send_message(Echo(text="via ini"), AgentId("echo", "default")), FAST)
            assert answer == Echo(text="via ini")

    run(body())


# --- 5: RPC to an agent type nobody serves --------------------------------------------------------------


@pytest.mark.parametrize("start_runtime", [OUR_HOST], indirect=True)
def test_rpc_to_unserved_agent_type_fails_fast(start_runtime: RuntimeLauncher) -> None:
    """Through the runtime's embedded host, an RPC to an agent type nobody registered raises an
    error naming it within 3 s. (AutoGen's host drops such a request and the caller hangs, so
    this runs in the our-host setup only.)"""
    setup = start_runtime([ECHO])

    async def body() -> None:
        nobody = f"nobody-{uid()}"
        async with worker(setup.address) as caller:
            add_serializers(caller, Echo)
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(caller.send_message(Echo(text="anyone?"), AgentId(nobody, "k")), 3)
            assert not isinstance(caught.value, asyncio.TimeoutError), "RPC to an unserved agent type hung"
            assert nobody in str(caught.value), f"error does not name the agent type: {caught.value}"
            # The plugin's agent on the same host still answers.
            answer = await asyncio.wait_for(caller.send_message(Echo(text="x"), AgentId("echo", "default")), FAST)
            assert answer == Echo(text="x")

    run(body())


# --- 6: refused plugins ---------------------------------------------------------------------------------


def test_runtime_survives_refused_plugins(start_runtime: RuntimeLauncher) -> None:
    """Beside the echo plugin, the plugin folder holds a shared library without the entry
    symbol and a file of random bytes named .so: each is refused with a log line naming the
    file and the reason, and echo serves."""
    extra = {"x.so": bytes(range(256)) * 16}
    no_entry = plugin_build_dir() / "libNoEntryPlugin.so"
    if no_entry.is_file():
        extra["libNotAPlugin.so"] = no_entry.read_bytes()
    setup = start_runtime([ECHO], extra_files=extra)
    assert setup.runtime.plugin_names() == ["echo-plugin"], setup.runtime.ready_line

    # The ready line comes after every plugin was loaded or refused, so the log lines are in.
    log = setup.runtime.stderr().splitlines()

    def refusal(name: str) -> str:
        lines = [line for line in log if name in line and "refused" in line]
        assert len(lines) == 1, f"expected one refusal line naming {name}, got {lines!r}\nlog:\n" + "\n".join(log)
        return lines[0]

    assert "not an ELF shared library" in refusal("x.so")
    if "libNotAPlugin.so" in extra:
        assert "agentd_plugin_entry" in refusal("libNotAPlugin.so")

    async def body() -> None:
        async with worker(setup.address) as caller:
            add_serializers(caller, Echo)
            answer = await asyncio.wait_for(caller.send_message(Echo(text="survived"), AgentId("echo", "default")), FAST)
            assert answer == Echo(text="survived")

    run(body())


# --- 7: SIGTERM -----------------------------------------------------------------------------------------


def test_sigterm_exits_zero(start_runtime: RuntimeLauncher) -> None:
    """With a Python worker connected and having used the plugins, SIGTERM makes `agentd run`
    exit with status 0 within a few seconds (with AutoGen's host about 2 s: the runtime waits
    up to 2 s for the host to end the half-closed stream, which AutoGen's host never does)."""
    setup = start_runtime([ECHO, PROTO])

    async def body() -> None:
        async with worker(setup.address) as caller:
            add_serializers(caller, Echo)
            answer = await asyncio.wait_for(caller.send_message(Echo(text="before"), AgentId("echo", "default")), FAST)
            assert answer == Echo(text="before")
            # A SIGTERM in the moment between "ready" and the runtime's signal handling kills it
            # (test_sigterm_right_after_ready_exits_zero): wait that moment out, to test the rest.
            setup.runtime.wait_catching_sigterm()
            code, took = await asyncio.get_running_loop().run_in_executor(None, setup.runtime.sigterm)
            assert code is not None, f"agentd run still running {SHUTDOWN_DEADLINE}s after SIGTERM"
            assert code == 0, f"agentd run exited with status {code} after SIGTERM"
            assert took < SHUTDOWN_DEADLINE

    run(body())


@pytest.mark.parametrize("start_runtime", [OUR_HOST], indirect=True)
def test_sigterm_right_after_ready_exits_zero(start_runtime: RuntimeLauncher) -> None:
    """A supervisor that stops the runtime as soon as it said "ready" gets a graceful exit
    (status 0). Ten tries, each SIGTERM sent the moment the ready line is read. (The moment is
    in the CLI, before any host is involved: our-host setup only.)"""
    for attempt in range(10):
        setup = start_runtime([ECHO])
        code, _ = setup.runtime.sigterm()
        assert code == 0, f"try {attempt + 1}: SIGTERM on the ready line: exit status {code}"
