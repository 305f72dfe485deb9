"""Message types, agents and helpers shared by the interop tests and worker_proc.py.

Everything here drives AutoGen's own Python worker (GrpcWorkerAgentRuntime, autogen-ext 0.7.5);
nothing reimplements the protocol. JSON message types are dataclasses: on the wire their type
name is the bare class name (``InteropNote``), so the names are chosen to be distinctive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, List, Optional, Tuple

from autogen_core import (
    AgentId,
    BaseAgent,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    event,
    rpc,
    try_get_known_serializers_for_type,
)
from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime

log = logging.getLogger("interop")

# Deadlines (seconds). A condition that should hold is waited for at most this long.
DEADLINE = 15.0
# How long a worker's start() and stop() may take.
WORKER_DEADLINE = 10.0


# --- Message types -----------------------------------------------------------------------------


@dataclass
class InteropNote:
    """A published message. ``id`` is unique per message; ``seq`` orders one publisher's notes."""

    id: str
    text: str
    publisher: str = ""
    seq: int = 0


@dataclass
class InteropAsk:
    """An RPC request."""

    text: str
    tag: str = ""


@dataclass
class InteropAnswer:
    """An RPC reply: echoes the request and tells who answered."""

    text: str
    tag: str
    answered_by: str
    sender: str
    request_id: str


JSON_TYPES = (InteropNote, InteropAsk, InteropAnswer)


def add_json_serializers(runtime: GrpcWorkerAgentRuntime) -> None:
    """Register every JSON type of the suite, so a worker can send and decode them all.

    RoutedAgent.register only registers the types its handlers accept; a caller also needs the
    reply type, and a responder needs it to serialize its reply.
    """
    for cls in JSON_TYPES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(cls))


# --- Agents ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What an agent saw: its own id, the message, and the context's topic, sender and message id."""

    agent: AgentId
    message: Any
    topic: Optional[TopicId]
    sender: Optional[AgentId]
    message_id: str


class NoteCollector(RoutedAgent):
    """Puts every published InteropNote it receives into ``sink``."""

    def __init__(self, sink: "asyncio.Queue[Delivery]") -> None:
        super().__init__("collects notes")
        self._sink = sink

    @event
    async def on_note(self, message: InteropNote, ctx: MessageContext) -> None:
        self._sink.put_nowait(Delivery(self.id, message, ctx.topic_id, ctx.sender, ctx.message_id))


class RawCollector(BaseAgent):
    """Accepts any message (no handler routing); used for protobuf payloads."""

    def __init__(self, sink: "asyncio.Queue[Delivery]") -> None:
        super().__init__("collects anything")
        self._sink = sink

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        self._sink.put_nowait(Delivery(self.id, message, ctx.topic_id, ctx.sender, ctx.message_id))
        return None

    @classmethod
    async def subscribe(cls, runtime: GrpcWorkerAgentRuntime, topic_type: str) -> "asyncio.Queue[Delivery]":
        """Registers a collector type of a fresh name on ``runtime``, subscribed to
        ``topic_type``; returns the queue of what it receives."""
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        collector = f"collector-{uuid.uuid4().hex[:12]}"
        await cls.register(runtime, collector, lambda: cls(sink), skip_direct_message_subscription=True)
        await runtime.add_subscription(TypeSubscription(topic_type, collector))
        return sink


class Echo(RoutedAgent):
    """Answers an InteropAsk with an InteropAnswer naming this worker (``name``)."""

    def __init__(self, name: str) -> None:
        super().__init__("echoes")
        self._name = name

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        return InteropAnswer(
            text=message.text,
            tag=message.tag,
            answered_by=f"{self._name}:{self.id.key}",
            sender=str(ctx.sender) if ctx.sender is not None else "",
            request_id=ctx.message_id,
        )


class Failing(RoutedAgent):
    """Raises with the request's text as the error message."""

    def __init__(self) -> None:
        super().__init__("fails")

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        raise ValueError(message.text)


@dataclass
class Barrier:
    """Lets ``expected`` concurrent handlers through only once all of them have arrived."""

    expected: int
    arrived: List[str] = field(default_factory=list)
    all_here: asyncio.Event = field(default_factory=asyncio.Event)

    async def arrive(self, who: str) -> None:
        self.arrived.append(who)
        if len(self.arrived) >= self.expected:
            self.all_here.set()
        await self.all_here.wait()


class GatedEcho(RoutedAgent):
    """Like Echo, but holds every reply until ``barrier`` has seen all expected requests."""

    def __init__(self, name: str, barrier: Barrier) -> None:
        super().__init__("echoes once all requests are in")
        self._name = name
        self._barrier = barrier

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        await self._barrier.arrive(message.tag)
        return InteropAnswer(
            text=message.text,
            tag=message.tag,
            answered_by=f"{self._name}:{self.id.key}",
            sender=str(ctx.sender) if ctx.sender is not None else "",
            request_id=ctx.message_id,
        )


class Stalling(RoutedAgent):
    """Holds every request until ``release`` is set, then answers like Echo.

    ``entered`` gets each request's id as the request reaches the handler.
    """

    def __init__(self, name: str, entered: "asyncio.Queue[str]", release: asyncio.Event) -> None:
        super().__init__("answers once released")
        self._name = name
        self._entered = entered
        self._release = release

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        self._entered.put_nowait(ctx.message_id)
        await self._release.wait()
        return InteropAnswer(
            text=message.text,
            tag=message.tag,
            answered_by=f"{self._name}:{self.id.key}",
            sender=str(ctx.sender) if ctx.sender is not None else "",
            request_id=ctx.message_id,
        )


class AnswersNothing(RoutedAgent):
    """An RPC handler that returns None; ``called`` gets each request's id."""

    def __init__(self, called: "asyncio.Queue[str]") -> None:
        super().__init__("returns None")
        self._called = called

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> None:
        self._called.put_nowait(ctx.message_id)
        return None


class Inflating(RoutedAgent):
    """Answers with an InteropAnswer whose text is ``int(message.tag)`` characters long."""

    def __init__(self) -> None:
        super().__init__("answers at length")

    @rpc
    async def on_ask(self, message: InteropAsk, ctx: MessageContext) -> InteropAnswer:
        return InteropAnswer(
            text="x" * int(message.tag), tag=message.tag, answered_by=f"inflating:{self.id.key}", sender="",
            request_id=ctx.message_id,
        )


# --- Workers -----------------------------------------------------------------------------------


async def stop_worker(runtime: GrpcWorkerAgentRuntime) -> None:
    """Stop a worker; if its stop() hangs (a handler that never returns), close it hard."""
    if not runtime._running:  # noqa: SLF001 - already stopped by the test
        return
    try:
        await asyncio.wait_for(runtime.stop(), WORKER_DEADLINE)
        return
    except Exception as e:  # noqa: BLE001 - teardown must not mask the test's own result
        log.warning("worker stop() failed or hung (%r); closing its channel", e)
    # Fallback: stop() waits for pending handlers forever. Cancel them and drop the channel.
    for task in list(runtime._background_tasks):  # noqa: SLF001
        task.cancel()
    conn = runtime._host_connection  # noqa: SLF001
    if conn is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn._channel.close(), WORKER_DEADLINE)  # noqa: SLF001
    if runtime._read_task is not None:  # noqa: SLF001
        runtime._read_task.cancel()  # noqa: SLF001


@contextlib.asynccontextmanager
async def worker(address: str, **kwargs: Any) -> AsyncIterator[GrpcWorkerAgentRuntime]:
    """A started GrpcWorkerAgentRuntime connected to ``address``; stopped on exit."""
    runtime = GrpcWorkerAgentRuntime(host_address=address, **kwargs)
    await asyncio.wait_for(runtime.start(), WORKER_DEADLINE)
    add_json_serializers(runtime)
    try:
        yield runtime
    finally:
        await stop_worker(runtime)


@dataclass
class TappedEvent:
    """A CloudEvent as it came off a worker's channel, before the worker filters it."""

    id: str
    topic_type: str
    topic_source: str
    data_schema: str


def tap_events(runtime: GrpcWorkerAgentRuntime) -> List[TappedEvent]:
    """Record every CloudEvent the host sends to ``runtime``, in arrival order.

    AutoGen's worker delivers an event only to agents matched by the subscriptions that worker
    added itself, and silently drops the rest. So "the host did not send X to this worker" cannot
    be seen from an agent's handler; it has to be seen here, on the wire side of the worker.
    """
    seen: List[TappedEvent] = []
    original: Callable[[Any], Any] = runtime._process_event  # noqa: SLF001

    def recording(event: Any) -> Any:
        # Called synchronously by the worker's read loop, once per received event, in order.
        schema = event.attributes["dataschema"].ce_string if "dataschema" in event.attributes else ""
        seen.append(TappedEvent(event.id, event.type, event.source, schema))
        return original(event)

    runtime._process_event = recording  # type: ignore[method-assign]  # noqa: SLF001
    return seen


@dataclass
class TappedResponse:
    """An RpcResponse as it came off a worker's channel."""

    request_id: str
    error: str
    data_type: str


def tap_responses(runtime: GrpcWorkerAgentRuntime) -> List[TappedResponse]:
    """Record every RpcResponse the host sends to ``runtime``, in arrival order.

    The worker pops the pending future for a response's request id; a second response to the
    same id only logs a KeyError in a background task, so it too has to be seen here.
    """
    seen: List[TappedResponse] = []
    original: Callable[[Any], Any] = runtime._process_response  # noqa: SLF001

    def recording(response: Any) -> Any:
        # Called synchronously by the worker's read loop, once per received response, in order.
        seen.append(TappedResponse(response.request_id, response.error, response.payload.data_type))
        return original(response)

    runtime._process_response = recording  # type: ignore[method-assign]  # noqa: SLF001
    return seen


def tap_sent(runtime: GrpcWorkerAgentRuntime) -> "asyncio.Queue[Any]":
    """A queue of every ``agent_worker_pb2.Message`` ``runtime`` queues for the host from now on,
    in the order it queues them (which is the order they go out on its stream)."""
    sent: "asyncio.Queue[Any]" = asyncio.Queue()
    conn = runtime._host_connection  # noqa: SLF001
    assert conn is not None, "start the worker first"
    original = conn.send

    async def recording(message: Any) -> None:
        sent.put_nowait(message)
        await original(message)

    conn.send = recording  # type: ignore[method-assign]
    return sent


def tap_request_outcomes(runtime: GrpcWorkerAgentRuntime) -> "asyncio.Queue[Tuple[str, Optional[BaseException]]]":
    """A queue of (request id, exception or None) for each RpcRequest ``runtime`` finishes
    processing: the exception is what escaped the worker's own request processing (after the
    handler, e.g. serializing its result), which the worker otherwise only logs."""
    outcomes: "asyncio.Queue[Tuple[str, Optional[BaseException]]]" = asyncio.Queue()
    original: Callable[[Any], Any] = runtime._process_request  # noqa: SLF001

    async def recording(request: Any) -> None:
        try:
            await original(request)
        except BaseException as e:
            outcomes.put_nowait((request.request_id, e))
            raise
        outcomes.put_nowait((request.request_id, None))

    runtime._process_request = recording  # type: ignore[method-assign]  # noqa: SLF001
    return outcomes


def client_id(runtime: GrpcWorkerAgentRuntime) -> str:
    """The ``client-id`` metadata the worker sends on all its calls (a uuid4 made per connection)."""
    conn = runtime._host_connection  # noqa: SLF001
    assert conn is not None, "start the worker first"
    return conn._client_id  # noqa: SLF001


async def take(queue: "asyncio.Queue[Any]", count: int, deadline: float = DEADLINE) -> List[Any]:
    """Wait for ``count`` items from ``queue``, failing after ``deadline`` seconds overall."""
    items: List[Any] = []

    async def gather() -> None:
        while len(items) < count:
            items.append(await queue.get())

    try:
        await asyncio.wait_for(gather(), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(
            f"timed out after {deadline}s: got {len(items)} of {count} expected items: {items[:5]!r}"
        ) from None
    return items


def run(coro: Any) -> Any:
    """Run one test's coroutine on a fresh event loop."""
    return asyncio.run(coro)
