"""Interop tests: AutoGen's own Python workers (autogen-ext 0.7.5) talking through the host under test.

Each test gets a fresh host (conftest.py) and runs its workers in-process on one event loop.
Conditions are awaited with deadlines, never slept for. See README.md for what each test checks.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from autogen_core import (
    PROTOBUF_DATA_CONTENT_TYPE,
    AgentId,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
    try_get_known_serializers_for_type,
)

from conftest import HostProcess
from interop_support import (
    DEADLINE,
    AnswersNothing,
    Barrier,
    Delivery,
    Echo,
    Failing,
    GatedEcho,
    Inflating,
    InteropAnswer,
    InteropAsk,
    InteropNote,
    NoteCollector,
    RawCollector,
    Stalling,
    client_id,
    run,
    take,
    tap_events,
    tap_request_outcomes,
    tap_responses,
    tap_sent,
    worker,
)

HERE = Path(__file__).resolve().parent


def uid() -> str:
    return uuid.uuid4().hex[:12]


def note(text: str, **kw: object) -> InteropNote:
    return InteropNote(id=uuid.uuid4().hex, text=text, **kw)  # type: ignore[arg-type]


# --- Publish / subscribe -------------------------------------------------------------------------


def test_publish_reaches_type_subscriber_on_other_worker(host_address: str) -> None:
    """A TypeSubscription on worker 1 receives what worker 2 publishes, content and context intact."""

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        agent_type, topic = f"collector-{uid()}", f"notes-{uid()}"
        async with worker(host_address) as sub, worker(host_address) as pub:
            await NoteCollector.register(sub, agent_type, lambda: NoteCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription(topic_type=topic, agent_type=agent_type))

            plain = note('héllo, wörld ✓ "quoted" \\ back\nslash\t\x00nul', publisher="pub", seq=7)
            await pub.publish_message(plain, TopicId(topic, "key-1"), message_id=plain.id)
            [got] = await take(sink, 1)
            assert got.message == plain
            assert got.agent == AgentId(agent_type, "key-1"), "key must be the topic source"
            assert got.topic == TopicId(topic, "key-1")
            assert got.message_id == plain.id, "CloudEvent id must be forwarded"
            # Without a sender the Python publisher sends unknown/unknown.
            assert got.sender == AgentId("unknown", "unknown")

            # With an explicit sender, and a source with odd characters.
            signed = note("signed")
            source = "a source/with:odd=chars ✓"
            await pub.publish_message(signed, TopicId(topic, source), sender=AgentId("someone", "s-1"))
            [got] = await take(sink, 1)
            assert got.message == signed
            assert got.agent == AgentId(agent_type, source)
            assert got.sender == AgentId("someone", "s-1"), "sender attributes must be forwarded"

    run(body())


def test_publish_reaches_prefix_subscriber(host_address: str) -> None:
    """A TypePrefixSubscription matches topic types that start with the prefix, and only those."""

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        agent_type, prefix = f"prefixed-{uid()}", f"pfx-{uid()}."
        async with worker(host_address) as sub, worker(host_address) as pub:
            await NoteCollector.register(sub, agent_type, lambda: NoteCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypePrefixSubscription(topic_type_prefix=prefix, agent_type=agent_type))
            tap = tap_events(sub)

            # Published first: contains the prefix but does not start with it. By per-publisher
            # ordering, had the host sent it, the subscriber would have read it before the others.
            miss = note("must not arrive")
            await pub.publish_message(miss, TopicId(f"x.{prefix}alpha", "k0"), message_id=miss.id)
            hit1, hit2 = note("one"), note("two")
            await pub.publish_message(hit1, TopicId(f"{prefix}alpha", "k1"), message_id=hit1.id)
            await pub.publish_message(hit2, TopicId(f"{prefix}beta.gamma", "k2"), message_id=hit2.id)

            got = await take(sink, 2)
            assert [(d.message, d.agent, d.topic) for d in got] == [
                (hit1, AgentId(agent_type, "k1"), TopicId(f"{prefix}alpha", "k1")),
                (hit2, AgentId(agent_type, "k2"), TopicId(f"{prefix}beta.gamma", "k2")),
            ]
            assert [e.id for e in tap] == [hit1.id, hit2.id], "host sent a non-matching topic to the worker"

    run(body())


def test_nothing_delivered_to_unsubscribed_worker(host_address: str) -> None:
    """M1 to topic A (only worker 1 subscribed), then M2 to topic B (both subscribed).

    Once worker 2 has M2 and worker 1 has M1 and M2, worker 2 must have been sent nothing else:
    per-publisher ordering means M1 would have reached it before M2. What the host sent is read
    off each worker's channel (tap_events), because AutoGen's worker itself drops events that
    match none of its own subscriptions, which would hide a host that sends too much.
    """

    async def body() -> None:
        sink1: asyncio.Queue[Delivery] = asyncio.Queue()
        sink2: asyncio.Queue[Delivery] = asyncio.Queue()
        type1, type2 = f"both-{uid()}", f"only-b-{uid()}"
        topic_a, topic_b = f"topic-a-{uid()}", f"topic-b-{uid()}"
        async with worker(host_address) as w1, worker(host_address) as w2, worker(host_address) as pub:
            await NoteCollector.register(w1, type1, lambda: NoteCollector(sink1), skip_direct_message_subscription=True)
            await w1.add_subscription(TypeSubscription(topic_a, type1))
            await w1.add_subscription(TypeSubscription(topic_b, type1))
            await NoteCollector.register(w2, type2, lambda: NoteCollector(sink2), skip_direct_message_subscription=True)
            await w2.add_subscription(TypeSubscription(topic_b, type2))
            tap1, tap2 = tap_events(w1), tap_events(w2)

            m1, m2 = note("for A"), note("for B")
            await pub.publish_message(m1, TopicId(topic_a, "s"), message_id=m1.id)
            await pub.publish_message(m2, TopicId(topic_b, "s"), message_id=m2.id)

            got1 = await take(sink1, 2)
            got2 = await take(sink2, 1)
            assert [d.message for d in got1] == [m1, m2]
            assert [d.message for d in got2] == [m2]
            assert [e.id for e in tap2] == [m2.id], "host sent worker 2 an event for a topic it is not subscribed to"
            assert [e.id for e in tap1] == [m1.id, m2.id]
            assert sink1.empty() and sink2.empty()

    run(body())


# --- RPC ---------------------------------------------------------------------------------------


def test_rpc_round_trip(host_address: str) -> None:
    """send_message from worker A reaches the agent on worker B; the reply comes back to A."""

    async def body() -> None:
        agent_type = f"echo-{uid()}"
        async with worker(host_address) as b, worker(host_address) as a:
            await Echo.register(b, agent_type, lambda: Echo("worker-b"))

            reply = await asyncio.wait_for(a.send_message(InteropAsk("hi ✓", tag="t1"), AgentId(agent_type, "k1")), DEADLINE)
            assert isinstance(reply, InteropAnswer), f"reply not decoded: {reply!r}"
            assert (reply.text, reply.tag, reply.answered_by, reply.sender) == ("hi ✓", "t1", "worker-b:k1", "")

            # With a sender (RpcRequest.source) and another key.
            reply = await asyncio.wait_for(
                a.send_message(InteropAsk("again", tag="t2"), AgentId(agent_type, "k2"), sender=AgentId("caller", "c-1")),
                DEADLINE,
            )
            assert (reply.tag, reply.answered_by, reply.sender) == ("t2", "worker-b:k2", "caller/c-1")

            # Many in flight at once on one connection: each reply matched to its own request.
            replies = await asyncio.wait_for(
                asyncio.gather(*(a.send_message(InteropAsk(f"n{i}", tag=str(i)), AgentId(agent_type, f"k{i % 3}")) for i in range(50))),
                DEADLINE,
            )
            assert [(r.text, r.tag, r.answered_by) for r in replies] == [
                (f"n{i}", str(i), f"worker-b:k{i % 3}") for i in range(50)
            ]

    run(body())


def test_handler_exception_text_reaches_caller(host_address: str) -> None:
    """A handler that raises makes the caller's send_message raise with the handler's text."""

    async def body() -> None:
        agent_type = f"failing-{uid()}"
        async with worker(host_address) as b, worker(host_address) as a:
            await Failing.register(b, agent_type, Failing)
            for attempt in range(2):  # the connection stays usable after an error
                text = f"kaboom {uid()} ✗ #{attempt}"
                with pytest.raises(Exception) as caught:
                    await asyncio.wait_for(a.send_message(InteropAsk(text), AgentId(agent_type, "k")), DEADLINE)
                assert not isinstance(caught.value, asyncio.TimeoutError), "caller hung instead of getting the error"
                assert text in str(caught.value)

    run(body())


@pytest.mark.agentd_only
def test_rpc_to_unknown_agent_type_fails_fast(host_address: str) -> None:
    """AutoGen's host drops such a request and the caller waits forever; ours must answer an error."""

    async def body() -> None:
        async with worker(host_address) as a:
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(a.send_message(InteropAsk("anyone?"), AgentId(f"nobody-{uid()}", "k")), 3)
            assert not isinstance(caught.value, asyncio.TimeoutError), "RPC to an unknown agent type hung"
            assert str(caught.value), "error text must not be empty"

    run(body())


@pytest.mark.agentd_only
def test_target_worker_disconnect_fails_pending_rpc(host_address: str) -> None:
    """The worker serving an RPC dies mid-call (SIGKILL): the caller gets an error, not a hang."""

    async def body() -> None:
        agent_type = f"hanging-{uid()}"
        with tempfile.TemporaryFile() as errors:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "worker_proc.py"), host_address, agent_type,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
            )
            try:
                async def expect_line(prefix: str) -> str:
                    assert proc.stdout is not None
                    try:
                        line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode()
                    except asyncio.TimeoutError:
                        line = ""
                    if not line.startswith(prefix):
                        errors.seek(0)
                        raise AssertionError(f"worker_proc: expected {prefix!r}, got {line!r}\n{errors.read().decode()}")
                    return line

                await expect_line("READY")
                async with worker(host_address) as a:
                    call = asyncio.ensure_future(a.send_message(InteropAsk("wait"), AgentId(agent_type, "k")))
                    await expect_line("HANDLING")
                    proc.kill()
                    await proc.wait()
                    with pytest.raises(Exception) as caught:
                        await asyncio.wait_for(call, 5)
                    assert not isinstance(caught.value, asyncio.TimeoutError), "pending RPC hung after its target died"
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    run(body())


@pytest.mark.agentd_only
def test_same_request_id_from_two_callers(host_address: str) -> None:
    """Two fresh Python workers both number their first RPC "1". Both must get their own reply.

    The target holds both replies until both requests have arrived, so they are in flight at the
    same time. AutoGen's host keys pending replies by (target, request id): one caller hangs.
    """

    async def body() -> None:
        agent_type = f"gated-{uid()}"
        barrier = Barrier(expected=2)
        async with worker(host_address) as b, worker(host_address) as c1, worker(host_address) as c2:
            await GatedEcho.register(b, agent_type, lambda: GatedEcho("b", barrier))
            target = AgentId(agent_type, "k")
            calls = {
                "c1": asyncio.ensure_future(c1.send_message(InteropAsk("from c1", tag="c1"), target)),
                "c2": asyncio.ensure_future(c2.send_message(InteropAsk("from c2", tag="c2"), target)),
            }
            await asyncio.wait(calls.values(), timeout=DEADLINE)
            hung = [name for name, call in calls.items() if not call.done()]
            for call in calls.values():
                call.cancel()
            assert not hung, f"caller(s) {hung} never got a reply (requests seen by the target: {barrier.arrived})"
            r1, r2 = calls["c1"].result(), calls["c2"].result()
            # The precondition: both callers really used request id "1".
            assert (c1._next_request_id, c2._next_request_id) == (1, 1)  # noqa: SLF001
            assert (r1.tag, r1.text) == ("c1", "from c1")
            assert (r2.tag, r2.text) == ("c2", "from c2")

    run(body())


# --- Payloads and load -------------------------------------------------------------------------


def test_protobuf_payload_forwarded_intact(host_address: str, interop_pb2: ModuleType) -> None:
    """A protobuf message published as application/x-protobuf (CloudEvent.proto_data) arrives equal."""
    Sample = interop_pb2.Sample

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        agent_type, topic = f"raw-{uid()}", f"protos-{uid()}"
        async with worker(host_address) as sub, worker(host_address, payload_serialization_format=PROTOBUF_DATA_CONTENT_TYPE) as pub:
            for w in (sub, pub):
                w.add_message_serializer(try_get_known_serializers_for_type(Sample))
            await RawCollector.register(sub, agent_type, lambda: RawCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription(topic, agent_type))
            tap = tap_events(sub)

            small = Sample(text="ünïcode ✓", number=-(2**40) - 7, tags=["a", "", "c ✓"], blob=bytes(range(256)))
            large = Sample(text="large", number=2**62, tags=[str(i) for i in range(1000)], blob=bytes(range(256)) * 4096)
            for message in (small, large):
                await pub.publish_message(message, TopicId(topic, "k"))
                [got] = await take(sink, 1)
                assert isinstance(got.message, Sample), f"payload not decoded as Sample: {type(got.message)!r}"
                assert got.message == message
            assert [e.data_schema for e in tap] == ["agentd.interop.Sample"] * 2

    run(body())


def test_many_publishers_nothing_lost_or_duplicated(host_address: str) -> None:
    """4 workers publish 500 notes each to one subscriber at once: every note arrives exactly once,
    and each publisher's notes arrive in the order it published them."""
    publishers, per_publisher = 4, 500

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        agent_type, topic = f"sink-{uid()}", f"load-{uid()}"
        async with worker(host_address) as sub:
            await NoteCollector.register(sub, agent_type, lambda: NoteCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription(topic, agent_type))
            pubs = [worker(host_address) for _ in range(publishers)]
            runtimes = [await p.__aenter__() for p in pubs]
            try:
                async def publish_all(p: int) -> None:
                    for i in range(per_publisher + 1):  # the last one is an end marker
                        text = "end" if i == per_publisher else f"payload {i}"
                        n = InteropNote(id=f"{p}-{i}", text=text, publisher=str(p), seq=i)
                        await runtimes[p].publish_message(n, TopicId(topic, "k"))
                        if i % 50 == 0:
                            await asyncio.sleep(0)  # let the publishers interleave

                await asyncio.gather(*(publish_all(p) for p in range(publishers)))
                total = publishers * (per_publisher + 1)
                got = await take(sink, total, deadline=30)
            finally:
                for p in reversed(pubs):
                    await p.__aexit__(None, None, None)

            ids = [d.message.id for d in got]
            assert len(set(ids)) == len(ids) == total, "duplicates or losses"
            assert set(ids) == {f"{p}-{i}" for p in range(publishers) for i in range(per_publisher + 1)}
            for p in range(publishers):
                seqs = [d.message.seq for d in got if d.message.publisher == str(p)]
                assert seqs == list(range(per_publisher + 1)), f"publisher {p}'s notes out of order"
            assert sink.empty()

    run(body())


# --- Registration --------------------------------------------------------------------------------


def test_registering_a_type_another_worker_holds_fails(host_address: str) -> None:
    """A second worker registering a taken agent type gets an error; the first keeps the type."""

    async def body() -> None:
        agent_type = f"owned-{uid()}"
        async with worker(host_address) as first, worker(host_address) as second, worker(host_address) as caller:
            await Echo.register(first, agent_type, lambda: Echo("first"))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await Echo.register(second, agent_type, lambda: Echo("second"))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
            assert agent_type in (caught.value.details() or "")

            reply = await asyncio.wait_for(caller.send_message(InteropAsk("who?"), AgentId(agent_type, "k")), DEADLINE)
            assert reply.answered_by == "first:k"

    run(body())


def test_agent_type_released_when_its_worker_disconnects(host_address: str) -> None:
    """Once the worker holding a type has stopped, another worker can register the type.

    The host learns of the disconnect asynchronously, so registration is retried (each time on
    a fresh worker: a failed registration leaves AutoGen's worker thinking it has the type) until
    it succeeds or the deadline passes.
    """

    async def body() -> None:
        agent_type = f"handover-{uid()}"
        async with worker(host_address) as first:
            await Echo.register(first, agent_type, lambda: Echo("first"))
        # `first` has stopped and closed its channel.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        attempts = 0
        async with worker(host_address) as caller:
            while True:
                attempts += 1
                async with worker(host_address) as second:
                    try:
                        await Echo.register(second, agent_type, lambda: Echo("second"))
                    except grpc.aio.AioRpcError as e:
                        if loop.time() > deadline or e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                            raise AssertionError(f"type still held after {attempts} attempts: {e.details()}") from e
                        continue
                    reply = await asyncio.wait_for(caller.send_message(InteropAsk("who?"), AgentId(agent_type, "k")), DEADLINE)
                    assert reply.answered_by == "second:k"
                    return

    run(body())


# --- Host limits (host_args) -----------------------------------------------------------------------


@pytest.mark.agentd_only
@pytest.mark.host_args("--rpc-timeout", "1")
def test_rpc_deadline_answers_a_handler_that_never_returns(host_address: str) -> None:
    """The host's RPC deadline (--rpc-timeout 1) answers a caller whose target never replies.

    The caller's send_message raises the host's error after about a second (not our own
    wait_for's timeout). When the handler does answer later, the late answer is dropped: the
    caller gets exactly one response for that request, and its next RPC works. AutoGen's host has
    no deadline: the caller waits forever.
    """

    async def body() -> None:
        agent_type = f"stalling-{uid()}"
        entered: asyncio.Queue[str] = asyncio.Queue()
        release = asyncio.Event()
        async with worker(host_address) as b, worker(host_address) as a:
            await Stalling.register(b, agent_type, lambda: Stalling("b", entered, release))
            responses = tap_responses(a)
            sent_by_b = tap_sent(b)
            target = AgentId(agent_type, "k")
            loop = asyncio.get_running_loop()

            started = loop.time()
            call = asyncio.ensure_future(a.send_message(InteropAsk("stall", tag="late"), target))
            try:
                await take(entered, 1)  # the request really reached the handler, which now waits
                with pytest.raises(Exception) as caught:
                    await asyncio.wait_for(call, 5)
                elapsed = loop.time() - started
                assert not isinstance(caught.value, asyncio.TimeoutError), "the host never answered the stalled RPC"
                text = str(caught.value)
                assert "No response" in text or "deadline" in text, f"unexpected error: {text!r}"
                assert 0.9 <= elapsed < 5, f"error after {elapsed:.2f}s; the host's deadline is 1s"

                # Let the handler answer now, late, and wait until b has queued that answer.
                release.set()
                [late] = await take(sent_by_b, 1)
                assert late.WhichOneof("message") == "response" and not late.response.error, late
                # b's stream carries the late answer before its answer to the next request, so
                # had the host forwarded it, the caller would have read it first.
                reply = await asyncio.wait_for(a.send_message(InteropAsk("again", tag="next"), target), DEADLINE)
                assert (reply.text, reply.tag) == ("again", "next")
                assert [(r.request_id, bool(r.error)) for r in responses] == [("1", True), ("2", False)], (
                    f"caller was sent {responses!r}"
                )
            finally:
                release.set()  # on failure too: a handler still waiting would make b's stop() hang

    run(body())


@pytest.mark.agentd_only
@pytest.mark.host_args("--rpc-timeout", "2")
def test_rpc_handler_returning_none_does_not_hang_the_caller(host_address: str) -> None:
    """An @rpc handler that returns None: AutoGen's worker cannot serialize None ("Unknown type
    NoneType"), so it sends no response at all. The caller must still get an answer: the host's
    deadline error (--rpc-timeout 2; 60 s by default). AutoGen's host leaves the caller waiting
    forever. The worker, and the caller's connection, keep working afterwards.
    """

    async def body() -> None:
        none_type, echo_type = f"none-{uid()}", f"echo-{uid()}"
        called: asyncio.Queue[str] = asyncio.Queue()
        async with worker(host_address) as b, worker(host_address) as a:
            await AnswersNothing.register(b, none_type, lambda: AnswersNothing(called))
            await Echo.register(b, echo_type, lambda: Echo("b"))
            outcomes = tap_request_outcomes(b)
            sent_by_b = tap_sent(b)
            loop = asyncio.get_running_loop()

            started = loop.time()
            call = asyncio.ensure_future(a.send_message(InteropAsk("nothing back"), AgentId(none_type, "k")))
            [request_id] = await take(called, 1)
            # What AutoGen's worker does with the None: its request processing fails after the
            # handler returned, and nothing goes back to the host.
            [(done_id, error)] = await take(outcomes, 1)
            assert done_id == request_id
            assert isinstance(error, ValueError) and "NoneType" in str(error), f"worker outcome: {error!r}"
            assert sent_by_b.empty(), f"worker sent {sent_by_b.get_nowait()!r}"

            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(call, 2 + 5)
            elapsed = loop.time() - started
            assert not isinstance(caught.value, asyncio.TimeoutError), "caller hung on an RPC whose handler returned None"
            text = str(caught.value)
            assert "No response" in text or "deadline" in text, f"unexpected error: {text!r}"
            assert elapsed >= 1.9, f"error after {elapsed:.2f}s, before the host's 2s deadline"

            reply = await asyncio.wait_for(a.send_message(InteropAsk("still there?"), AgentId(echo_type, "k")), DEADLINE)
            assert reply.answered_by == "b:k"

    run(body())


@pytest.mark.agentd_only
@pytest.mark.host_args("--max-message-bytes", "65536")
def test_oversized_messages_refused_and_streams_survive(host: HostProcess) -> None:
    """With --max-message-bytes 65536, a ~100 KiB message is refused; nothing else suffers.

    - A ~100 KiB publish is not delivered; a 48 KiB one and a small one published afterwards by
      the same publisher are (its stream survived). The host's stderr has a warning naming the
      publisher's client id with "over the size limit".
    - Another worker pair exchanges RPCs before and after.
    - A ~100 KiB RPC request, and a ~100 KiB RPC answer, each make the caller's send_message
      raise an error naming the limit (not a hang), and both streams keep working.

    AutoGen's host (gRPC's grpc.max_receive_message_length) ends the sender's whole stream.
    """
    address = host.address
    limit = 65536
    big_size = 100 * 1024

    def size_warnings() -> list[str]:
        return [line for line in host.stderr().splitlines() if "over the size limit" in line]

    async def body() -> None:
        sink: asyncio.Queue[Delivery] = asyncio.Queue()
        collector_type, topic = f"collector-{uid()}", f"sized-{uid()}"
        echo_type, inflating_type = f"echo-{uid()}", f"inflating-{uid()}"
        async with worker(address) as sub, worker(address) as pub, worker(address) as b, worker(address) as c:
            await NoteCollector.register(sub, collector_type, lambda: NoteCollector(sink), skip_direct_message_subscription=True)
            await sub.add_subscription(TypeSubscription(topic, collector_type))
            await Echo.register(b, echo_type, lambda: Echo("b"))
            await Inflating.register(b, inflating_type, Inflating)
            tap = tap_events(sub)

            async def pair_exchange(label: str) -> None:
                asks = [InteropAsk(f"{label} {i}", tag=str(i)) for i in range(20)]
                replies = await asyncio.wait_for(
                    asyncio.gather(*(c.send_message(q, AgentId(echo_type, "k")) for q in asks)), DEADLINE)
                assert [(r.text, r.answered_by) for r in replies] == [(q.text, "b:k") for q in asks]

            await pair_exchange("before")
            assert size_warnings() == [], "size warning before anything was over the limit"

            # Publish: too big, then just under the limit, then small. Per-publisher ordering:
            # had the host sent the big one, the subscriber would have read it first.
            big, medium, small = note("b" * big_size), note("m" * (48 * 1024)), note("small")
            for n in (big, medium, small):
                await pub.publish_message(n, TopicId(topic, "k"), message_id=n.id)
            got = await take(sink, 2)
            assert [d.message.id for d in got] == [medium.id, small.id]
            assert got[0].message == medium
            assert [e.id for e in tap] == [medium.id, small.id], "the oversized event was sent to the subscriber"
            # The host logs before it reads the publisher's next message, so the line is there by now.
            warnings_now = size_warnings()
            assert len(warnings_now) == 1, f"expected one size warning, got {warnings_now!r}"
            assert client_id(pub) in warnings_now[0], f"warning does not name the publisher {client_id(pub)}: {warnings_now[0]!r}"

            await pair_exchange("after")

            # An oversized request: the caller gets an error naming the limit, and can go on.
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(pub.send_message(InteropAsk("q" * big_size), AgentId(echo_type, "k")), 5)
            assert not isinstance(caught.value, asyncio.TimeoutError), "oversized request: caller hung"
            assert "limit" in str(caught.value) and str(limit) in str(caught.value), str(caught.value)
            reply = await asyncio.wait_for(pub.send_message(InteropAsk("small ask"), AgentId(echo_type, "k")), DEADLINE)
            assert reply.text == "small ask"
            warnings_now = size_warnings()
            assert len(warnings_now) == 2 and client_id(pub) in warnings_now[1], warnings_now

            # An oversized answer: the caller gets an error naming the limit; the responder's
            # stream keeps working.
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(c.send_message(InteropAsk("inflate", tag=str(big_size)), AgentId(inflating_type, "k")), 5)
            assert not isinstance(caught.value, asyncio.TimeoutError), "oversized answer: caller hung"
            assert "limit" in str(caught.value) and str(limit) in str(caught.value), str(caught.value)
            reply = await asyncio.wait_for(c.send_message(InteropAsk("fits", tag="1000"), AgentId(inflating_type, "k")), DEADLINE)
            assert len(reply.text) == 1000
            warnings_now = size_warnings()
            assert len(warnings_now) == 3 and client_id(b) in warnings_now[2], warnings_now

            await pair_exchange("at the end")
            small2 = note("still subscribed")
            await pub.publish_message(small2, TopicId(topic, "k"), message_id=small2.id)
            [got2] = await take(sink, 1)
            assert got2.message == small2

    run(body())
