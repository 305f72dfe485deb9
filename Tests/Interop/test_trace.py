"""W3C trace context through agentd's agents, seen by AutoGen's own Python worker.

AutoGen's Python worker writes the current span's ``traceparent``/``tracestate`` into an RPC's
metadata and reads them from a CloudEvent's attributes (it links its processing span to them),
but never writes them on events it publishes. agentd's runtime carries a message's trace on to
everything its handler sends. Here a Python worker calls agents of the test plugin
(Tests/Plugins/TestAgentsPlugin) inside a span of a trace it chose: the event the ``publisher``
agent publishes arrives at the Python worker carrying that trace id in its attributes, and the
``relay`` agent's RPC to the ``tracer`` agent carries it on (the tracer answers with the trace
context its handler ran in). Both setups: our embedded host, and AutoGen's host in between.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from autogen_core import AgentId, TopicId, TypeSubscription, try_get_known_serializers_for_type
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from interop_support import RawCollector, run, take, worker
from runtime_support import AUTOGEN_HOST, OUR_HOST, RuntimeLauncher, launcher_fixture

TEST_AGENTS = "libTestAgentsPlugin.so"
FAST = 5.0
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


@pytest.fixture(params=(AUTOGEN_HOST, OUR_HOST))
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    yield from launcher_fixture(request, tmp_path)


@dataclass
class Publish:
    topic: str
    source: str
    text: str


@dataclass
class Published:
    ok: bool


@dataclass
class Relay:
    to_type: str
    to_key: str
    text: str


@dataclass
class Trace:
    traceparent: str
    tracestate: str


@dataclass
class Note:
    text: str


def trace_id_of(traceparent: str) -> int:
    """The trace id of a W3C traceparent (00-TRACEID-SPANID-FLAGS)."""
    parts = traceparent.split("-")
    assert len(parts) == 4 and parts[0] == "00" and len(parts[1]) == 32 and len(parts[2]) == 16, traceparent
    return int(parts[1], 16)


def span_id_of(traceparent: str) -> int:
    return int(traceparent.split("-")[2], 16)


def test_trace_continues_through_agents(start_runtime: RuntimeLauncher) -> None:
    setup = start_runtime([TEST_AGENTS])

    async def body() -> None:
        sink: asyncio.Queue[Any] = asyncio.Queue()
        collector = f"notes-{uuid.uuid4().hex[:8]}"
        async with worker(setup.address) as python:
            for cls in (Publish, Published, Relay, Trace, Note):
                python.add_message_serializer(try_get_known_serializers_for_type(cls))
            # What AutoGen's worker receives, as it receives it: the CloudEvent's attributes.
            attributes: List[dict] = []
            original = python._process_event  # noqa: SLF001

            def recording(event: Any) -> Any:
                attributes.append({key: value.ce_string for key, value in event.attributes.items()})
                return original(event)

            python._process_event = recording  # type: ignore[method-assign]  # noqa: SLF001
            await RawCollector.register(python, collector, lambda: RawCollector(sink), skip_direct_message_subscription=True)
            await python.add_subscription(TypeSubscription("traced-notes", collector))

            caller = SpanContext(trace_id=TRACE_ID, span_id=SPAN_ID, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            with trace.use_span(NonRecordingSpan(caller)):
                published = await asyncio.wait_for(
                    python.send_message(Publish(topic="traced-notes", source="s", text="hi"), AgentId("publisher", "p")), FAST)
                relayed = await asyncio.wait_for(
                    python.send_message(Relay(to_type="tracer", to_key="t", text="x"), AgentId("relay", "r")), FAST)
            assert published == Published(ok=True)
            [note] = await take(sink, 1)
            assert note.message == Note(text="hi")
            [event] = [a for a in attributes if a.get("dataschema") == "Note"]
            # The publisher's handler ran in a new span of the caller's trace, and its event says so.
            assert "traceparent" in event, event
            assert trace_id_of(event["traceparent"]) == TRACE_ID
            assert span_id_of(event["traceparent"]) != SPAN_ID
            # Two hops: Python -> relay -> tracer, still the same trace.
            assert isinstance(relayed, Trace), relayed
            assert trace_id_of(relayed.traceparent) == TRACE_ID
            assert span_id_of(relayed.traceparent) != SPAN_ID

            # Outside any span, nothing is made up.
            untraced = await asyncio.wait_for(python.send_message(Relay(to_type="tracer", to_key="t", text="y"), AgentId("relay", "r")), FAST)
            assert untraced == Trace(traceparent="", tracestate="")

    run(body())
