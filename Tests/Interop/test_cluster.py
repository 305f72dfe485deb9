"""Hosts in a cluster over NATS, driven by AutoGen's own Python workers spread across hosts.

Each test starts its own nats-server (JetStream, a port it picks, a temporary folder) and its own
hosts joined to it (``[cluster]`` in each host's INI file, ``lease_seconds = 1``): see
cluster_support.py. Python workers join different hosts and see one host: a publish reaches the
subscribers on every host, an RPC reaches the agent type's owner wherever it is, one client holds
an agent type cluster-wide, a runtime given ``[runtime] host = A, B`` moves to B when A is killed,
and ``agentd state`` reaches a runtime through another host.

What crosses hosts is learned asynchronously (JetStream key-value watches, milliseconds), so each
test first waits for the crossing itself (an RPC answered, a probe event delivered), with a
deadline; nothing sleeps for a condition. Skipped with ``INTEROP_HOST=autogen``: AutoGen's host
has no cluster.
"""

from __future__ import annotations

import asyncio
import collections
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import grpc
import pytest
from autogen_core import AgentId, TopicId, TypePrefixSubscription, TypeSubscription, try_get_known_serializers_for_type

from cluster_support import (
    NOT_REGISTERED,
    Cluster,
    agentd_cli,
    cluster_fixture,
    probe_until_delivered,
    rpc_when_served,
    take_notes,
)
from interop_support import (
    DEADLINE,
    Delivery,
    Echo,
    Failing,
    InteropAnswer,
    InteropAsk,
    InteropNote,
    NoteCollector,
    client_id,
    run,
    tap_events,
    worker,
)
from runtime_support import RuntimeLog
from runtime_support import Add, Count, Get, add_counter_serializers

pytestmark = pytest.mark.agentd_only

COUNTER = "libCounterAgent.so"
# How long an answer that should come at once may take (the point being "not hanging").
FAST = 5.0


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """NATS and hosts as the test starts them (``cluster.start(["a", "b"])``), and runtimes;
    all stopped at the end, and a process that exited by itself fails the test."""
    yield from cluster_fixture(request, tmp_path)


def uid() -> str:
    return uuid.uuid4().hex[:12]


# --- The C counter (Plugins/CounterAgent) ---------------------------------------------------------




# --- Publish / subscribe ---------------------------------------------------------------------------


def test_publish_reaches_subscribers_on_every_host_once_in_order(cluster: Cluster) -> None:
    """Hosts a (``agentd host``) and b (``agentd-host``). Subscribers: on b, one worker with two
    agent types, one with a TypeSubscription and one with a TypePrefixSubscription, and a second
    worker with a TypeSubscription; on a, a worker with a TypeSubscription. A publisher on a and
    one on b each publish 50 numbered notes and an end marker to the topic: every agent type gets
    each note exactly once, each publisher's in order, and each worker is sent each event exactly
    once (read off its channel, before AutoGen's worker filters), the one with two matching
    subscriptions too."""
    a, b = cluster.start(["a", "b"], binaries={"b": "agentd-host"})
    count = 50

    async def body() -> None:
        prefix = f"cl-{uid()}."
        topic = f"{prefix}news"
        # agent type label -> (worker label, subscription)
        layout = {
            "b-exact": ("b1", TypeSubscription),
            "b-prefix": ("b1", TypePrefixSubscription),
            "b-exact-2": ("b2", TypeSubscription),
            "a-exact": ("a1", TypeSubscription),
        }
        sinks: Dict[str, asyncio.Queue[Delivery]] = {name: asyncio.Queue() for name in layout}
        types = {name: f"{name}-{uid()}" for name in layout}
        async with worker(b.address) as wb1, worker(b.address) as wb2, worker(a.address) as wa1, \
                worker(a.address) as pub_a, worker(b.address) as pub_b:
            workers = {"b1": wb1, "b2": wb2, "a1": wa1}
            taps = {label: tap_events(w) for label, w in workers.items()}
            for name, (label, kind) in layout.items():
                w, sink = workers[label], sinks[name]
                await NoteCollector.register(w, types[name], lambda sink=sink: NoteCollector(sink),
                                             skip_direct_message_subscription=True)
                await w.add_subscription(kind(prefix if kind is TypePrefixSubscription else topic, types[name]))

            # Both publishers' hosts know every subscription once a probe from each reached each sink.
            rounds = await probe_until_delivered([(pub_a, TopicId(topic, "probe")), (pub_b, TopicId(topic, "probe"))],
                                                 list(sinks.values()))

            sent: Dict[str, List[str]] = {"a": [], "b": []}
            for i in range(count + 1):
                for label, pub in (("a", pub_a), ("b", pub_b)):
                    n = InteropNote(id=f"{label}-{i}", text="end" if i == count else f"event {i} ✓", publisher=label, seq=i)
                    await pub.publish_message(n, TopicId(topic, f"k{i % 3}"), message_id=n.id)
                    sent[label].append(n.id)

            for name, sink in sinks.items():
                got = await take_notes(sink, until=f"a-{count}")
                if not any(d.message.id == f"b-{count}" for d in got):
                    got += await take_notes(sink, until=f"b-{count}")
                for label in ("a", "b"):
                    ids = [d.message.id for d in got if d.message.publisher == label]
                    assert ids == sent[label], (
                        f"{name}: publisher {label}'s notes, not exactly once in order: {ids[:10]}... ({len(ids)})")
                assert len(got) == 2 * (count + 1), f"{name}: {len(got)} notes"
                for d in got:
                    assert d.topic is not None and d.topic.type == topic
                    assert d.agent == AgentId(types[name], d.topic.source), "key must be the topic source"
                    assert d.message_id == d.message.id, "CloudEvent id must be forwarded"
                assert sink.empty()
            for label, tap in taps.items():
                wire = [e.id for e in tap if not e.id.startswith("probe-")]
                for publisher in ("a", "b"):
                    mine = [i for i in wire if i.startswith(f"{publisher}-")]
                    assert mine == sent[publisher], f"worker {label} was sent {publisher}'s events {mine[:10]}... ({len(mine)})"
                assert len(wire) == 2 * (count + 1), f"worker {label} was sent {len(wire)} events"
            print(f"\n[cluster] {2 * (count + 1)} notes to 4 agent types on 3 workers on 2 hosts; subscriptions "
                  f"known after {rounds} probe round(s)")

    run(body())


# --- RPC -------------------------------------------------------------------------------------------


def test_rpc_crosses_hosts_and_errors_come_back(cluster: Cluster) -> None:
    """A worker on a calls agents registered by a worker on b: answers come back (sender and
    keys forwarded, 50 in flight at once), an RPC to a type nobody in the cluster serves fails
    at once naming it, and a handler's exception on b reaches the caller on a. And back: b's
    worker calls an agent on a."""
    a, b = cluster.start(["a", "b"])

    async def body() -> None:
        echo_type, failing_type, back_type = f"echo-{uid()}", f"failing-{uid()}", f"echo-a-{uid()}"
        async with worker(b.address) as wb, worker(a.address) as wa:
            await Echo.register(wb, echo_type, lambda: Echo("on-b"))
            await Failing.register(wb, failing_type, Failing)
            await Echo.register(wa, back_type, lambda: Echo("on-a"))

            reply = await rpc_when_served(wa, InteropAsk("hi ✓", tag="t0"), AgentId(echo_type, "k0"),
                                          sender=AgentId("caller", "c-1"))
            assert isinstance(reply, InteropAnswer), f"reply not decoded: {reply!r}"
            assert (reply.text, reply.tag, reply.answered_by, reply.sender) == ("hi ✓", "t0", "on-b:k0", "caller/c-1")

            replies = await asyncio.wait_for(asyncio.gather(*(
                wa.send_message(InteropAsk(f"n{i}", tag=str(i)), AgentId(echo_type, f"k{i % 5}")) for i in range(50))),
                DEADLINE)
            assert [(r.text, r.tag, r.answered_by) for r in replies] == [
                (f"n{i}", str(i), f"on-b:k{i % 5}") for i in range(50)]

            # The other way: b's worker calls the agent on a.
            reply = await rpc_when_served(wb, InteropAsk("back"), AgentId(back_type, "k"))
            assert reply.answered_by == "on-a:k"

            loop = asyncio.get_running_loop()
            nobody = f"nobody-{uid()}"
            started = loop.time()
            with pytest.raises(Exception) as caught:
                await asyncio.wait_for(wa.send_message(InteropAsk("anyone?"), AgentId(nobody, "k")), 3)
            assert not isinstance(caught.value, asyncio.TimeoutError), "RPC to an unknown agent type hung"
            assert NOT_REGISTERED in str(caught.value) and nobody in str(caught.value), str(caught.value)
            # At once, not at a deadline (the error text above says which); loose for loaded machines.
            assert loop.time() - started < 2, f"unknown type answered after {loop.time() - started:.2f}s"

            # The failing type is served (its registration came with the echo's): its error text comes back.
            for attempt in range(2):
                text = f"kaboom {uid()} ✗ #{attempt}"
                with pytest.raises(Exception) as caught:
                    await rpc_when_served(wa, InteropAsk(text), AgentId(failing_type, "k"))
                assert not isinstance(caught.value, (asyncio.TimeoutError, AssertionError)), caught.value
                assert text in str(caught.value), str(caught.value)
            reply = await asyncio.wait_for(wa.send_message(InteropAsk("still"), AgentId(echo_type, "k")), DEADLINE)
            assert reply.answered_by == "on-b:k"

    run(body())


# --- One owner per agent type -----------------------------------------------------------------------


def test_one_owner_per_agent_type_across_hosts(cluster: Cluster) -> None:
    """A worker on a registers a type; a worker on b registering it too is refused
    (INVALID_ARGUMENT) naming the type and host a (never the holder's client id); a caller on b reaches
    the first. Once the first worker stops, the type is released cluster-wide: a worker on b
    can register it (retried on fresh workers, as the release crosses asynchronously) and a
    caller on a reaches it."""
    a, b = cluster.start(["a", "b"])

    async def body() -> None:
        agent_type = f"owned-{uid()}"
        async with worker(b.address) as caller_b, worker(a.address) as caller_a:
            async with worker(a.address) as first, worker(b.address) as second:
                await Echo.register(first, agent_type, lambda: Echo("first"))
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await Echo.register(second, agent_type, lambda: Echo("second"))
                details = caught.value.details() or ""
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
                # The holder's client id is never revealed: a caller could act under it.
                assert agent_type in details and client_id(first) not in details and "host a" in details, details
                print(f"\n[cluster] second registration refused: {caught.value.code().name}: {details}")

                reply = await rpc_when_served(caller_b, InteropAsk("who?"), AgentId(agent_type, "k"))
                assert reply.answered_by == "first:k"

            loop = asyncio.get_running_loop()
            end = loop.time() + DEADLINE
            attempts = 0
            while True:
                attempts += 1
                async with worker(b.address) as third:
                    try:
                        await Echo.register(third, agent_type, lambda: Echo("third"))
                    except grpc.aio.AioRpcError as e:
                        if loop.time() > end or e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                            raise AssertionError(f"type still held after {attempts} attempts: {e.details()}") from e
                        continue
                    # a learns the new owner asynchronously: until then its answer may be the release.
                    reply = None
                    answer_deadline = loop.time() + DEADLINE
                    while reply is None or reply.answered_by != "third:k":
                        if loop.time() > answer_deadline:
                            raise AssertionError(f"a caller on a never reached the new owner on b: {reply!r}")
                        try:
                            reply = await rpc_when_served(caller_a, InteropAsk("who now?"), AgentId(agent_type, "k"))
                        except Exception as e:  # noqa: BLE001 - an error while a catches up; asked again
                            reply = InteropAnswer(str(e), "", "error", "", "")
                    return

    run(body())


# --- A host killed under load --------------------------------------------------------------------------


@dataclass
class Call:
    key: str
    sent_at: float
    done_at: float = 0.0
    count: Optional[int] = None
    error: Optional[str] = None
    hung: bool = False


@dataclass
class Load:
    calls: List[Call] = field(default_factory=list)
    tasks: List["asyncio.Task[None]"] = field(default_factory=list)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    stop: bool = False

    def answered(self, since: float = float("-inf")) -> List[Call]:
        return [c for c in self.calls if c.count is not None and c.sent_at >= since]


async def add_load(caller: Any, load: Load, keys: List[str], in_flight: int, total: int, call_deadline: float) -> None:
    """Adds of 1 round-robin over ``keys``, ``in_flight`` at a time, until ``load.stop`` or
    ``total`` sent. Each call is bounded by ``call_deadline`` (past it, it counts as hung). After
    an error the slot pauses 5 ms: errors come back at once, and the load is meant to be bounded."""
    window = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()

    async def one(call: Call) -> None:
        try:
            answer = await asyncio.wait_for(caller.send_message(Add(amount=1), AgentId("counter", call.key)), call_deadline)
        except asyncio.TimeoutError:
            call.hung = True
        except Exception as e:  # noqa: BLE001 - recorded: errors are expected around the kill
            call.error = str(e) or type(e).__name__
            await asyncio.sleep(0.005)  # the pace of the load, not a wait for a condition
        else:
            if isinstance(answer, Count) and answer.key == call.key:
                call.count = answer.count
            else:
                call.error = f"unexpected answer {answer!r}"
        finally:
            call.done_at = loop.time()
            window.release()
            async with load.progress:
                load.progress.notify_all()

    for i in range(total):
        await window.acquire()
        if load.stop:
            window.release()
            return
        call = Call(keys[i % len(keys)], loop.time())
        load.calls.append(call)
        load.tasks.append(asyncio.create_task(one(call)))


def error_kind(text: str) -> str:
    """An error text without what varies (agent keys): for counting the kinds."""
    return re.sub(r"counter/k\d", "counter/K", text)


def test_runtime_fails_over_when_its_host_is_killed_under_load(cluster: Cluster) -> None:
    """Hosts a, b, c; ``agentd run`` with ``[runtime] host = a, b`` serving the C counter. A worker
    on c sends Adds (4 in flight, 4 keys) continuously; once 40 are answered, host a gets
    SIGKILL. Every call gets an answer or an error within 5 s (none hangs); the runtime serves
    again through b within 2 s of the kill: the first answer to a ``Get`` sent after the kill by a
    prober of its own (sent again after each error, not held up by the load's calls that were in
    a's hands: those wait out the 1 s lease); no two answers for a key carry the same count (the
    agents kept their counts: same process).
    Afterwards each counter's count lies between the Adds answered and the Adds sent, and
    `agentd send --host C` gets the same count."""
    a, b, c = cluster.start(["a", "b", "c"])
    runtime = cluster.start_runtime(["a", "b"], [COUNTER])
    log = RuntimeLog(runtime)
    keys = [f"k{i}" for i in range(4)]
    call_deadline = 5.0
    load = Load()
    report: Dict[str, Any] = {}

    async def body() -> None:
        loop = asyncio.get_running_loop()
        await log.wait_for("control channel attached", host_address=a.address)  # the first host that answers
        async with worker(c.address) as caller:
            add_counter_serializers(caller)
            for key in keys:
                first = await rpc_when_served(caller, Get(), AgentId("counter", key))
                assert first == Count(count=0, key=key)
            sender = asyncio.create_task(add_load(caller, load, keys, in_flight=4, total=3000, call_deadline=call_deadline))

            async def until(predicate: Any, what: str, deadline: float) -> None:
                async def wait() -> None:
                    async with load.progress:
                        await load.progress.wait_for(lambda: predicate() or sender.done())
                try:
                    await asyncio.wait_for(wait(), deadline)
                except asyncio.TimeoutError:
                    raise AssertionError(f"{what} within {deadline}s: {len(load.answered())} answered, "
                                         f"{sum(1 for x in load.calls if x.error)} errors") from None

            try:
                await until(lambda: len(load.answered()) >= 40, "40 answers before the kill", DEADLINE)
                assert not sender.done(), f"the load ended before the kill: {sender}"
                killed_at = loop.time()
                a.kill9()
                report["killed_at"] = killed_at

                async def serving_again() -> None:
                    while True:
                        try:
                            await asyncio.wait_for(caller.send_message(Get(), AgentId("counter", "probe")), call_deadline)
                        except asyncio.TimeoutError:
                            raise AssertionError(f"a Get sent after the kill hung for {call_deadline}s") from None
                        except Exception as e:  # noqa: BLE001 - not yet: sent again
                            report.setdefault("probe_errors", []).append(str(e))
                            await asyncio.sleep(0.005)  # the pace of the prober, not a wait for a condition
                        else:
                            report["served_again"] = loop.time() - killed_at
                            return

                try:
                    await asyncio.wait_for(serving_again(), 10)
                except asyncio.TimeoutError:
                    raise AssertionError("the counter never answered within 10 s of the kill") from None
                await until(lambda: len(load.answered(since=killed_at)) >= 40, "40 answers after the kill", 10)
            finally:
                load.stop = True
                await asyncio.gather(sender, return_exceptions=True)
                # Every call is bounded by call_deadline: this ends within it.
                await asyncio.gather(*load.tasks, return_exceptions=True)

    run(body())
    killed_at = report["killed_at"]
    hung = [x for x in load.calls if x.hung]
    assert not hung, f"{len(hung)} call(s) got neither an answer nor an error within {call_deadline}s"
    served_again = report["served_again"]
    after = sorted(load.answered(since=killed_at), key=lambda x: x.done_at)
    first_after = after[0].done_at - killed_at
    answered_before = [x for x in load.calls if x.count is not None and x.done_at < killed_at]
    in_flight = [x for x in load.calls if x.sent_at < killed_at <= x.done_at]
    window = [x for x in load.calls if x.error and x.done_at >= killed_at]
    before = [x for x in load.calls if x.error and x.done_at < killed_at]
    kinds = collections.Counter(error_kind(x.error or "") for x in window)
    print(f"\n[cluster] kill -9 of host a: {len(load.calls)} Adds sent, {len(answered_before)} answered before the "
          f"kill, {len(in_flight)} in flight at the kill; the counter answered again {served_again * 1000:.0f} ms "
          f"after the kill (prober: {len(report.get('probe_errors', []))} error(s) first), the load's first answer to "
          f"an Add sent after the kill came after {first_after * 1000:.0f} ms; {len(window)} error(s) in the window, "
          f"{len(before)} before:")
    for kind, n in kinds.most_common():
        print(f"[cluster]   {n} x {kind}")
    assert not before, f"errors before the kill: {[x.error for x in before[:3]]}"
    assert served_again <= 2.0, f"the runtime served again {served_again:.2f}s after the kill"
    for x in window:
        # "... agent type 'counter' ...", or (once b has taken the type over) "The worker serving
        # counter/K moved from host a to host b before answering ...".
        assert re.search(r"'counter'|\bcounter/k\d", x.error or ""), f"an error that does not name the agent type: {x.error!r}"
    # The runtime moved to b (its own log says so).
    moved = [e for e in log.poll() if e.message == "reconnected to the host"]
    assert moved and moved[0].meta.get("host.address") == b.address, log.tail()

    # Each key's count now: from the Python caller for every key, and for one key from a new
    # client, `agentd send --host C` (same answer).
    async def final_counts() -> Dict[str, int]:
        async with worker(c.address) as reader:
            add_counter_serializers(reader)
            answers = [await asyncio.wait_for(reader.send_message(Get(), AgentId("counter", key)), FAST) for key in keys]
        return {a.key: a.count for a in answers}

    finals = run(final_counts())
    for key in keys:
        counts = [x.count for x in load.calls if x.key == key and x.count is not None]
        assert len(counts) == len(set(counts)), f"{key}: two answers with the same count: state went back"
        sent = sum(1 for x in load.calls if x.key == key)
        assert max(counts) <= finals[key] <= sent, f"{key}: count {finals[key]}, answered up to {max(counts)}, sent {sent}"
    result = agentd_cli("send", "--host", c.address, "--agent", f"counter/{keys[0]}", "--type", "Get", "--json", "{}")
    assert result.returncode == 0, str(result)
    assert result.stdout == f'Count {{"count": {finals[keys[0]]}, "key": "{keys[0]}"}}\n', str(result)


# --- The control channel across hosts ----------------------------------------------------------------


def test_state_commands_reach_a_runtime_on_another_host(cluster: Cluster) -> None:
    """``agentd run`` on host b serves the counter; ``agentd state save|load|delete --host A``
    reaches it through host a (the answer comes back to the CLI on a), and what load put in is
    what the agent counts from, asked by a worker on a. A type nobody serves is answered with
    the host's error, not silence."""
    a, b = cluster.start(["a", "b"])
    cluster.start_runtime(["b"], [COUNTER])

    async def via_a(message: Any, key: str) -> Count:
        async with worker(a.address) as caller:
            add_counter_serializers(caller)
            answer = await rpc_when_served(caller, message, AgentId("counter", key))
            assert isinstance(answer, Count), answer
            return answer

    assert run(via_a(Add(amount=5), "x")) == Count(count=5, key="x")
    saved = agentd_cli("state", "save", "--host", a.address, "--agent", "counter/x")
    assert saved.returncode == 0 and saved.stdout == '{"count": 5}\n', str(saved)
    assert saved.seconds < FAST, str(saved)

    loaded = agentd_cli("state", "load", "--host", a.address, "--agent", "counter/x", "--json", '{"count": 41}')
    assert loaded.returncode == 0, str(loaded)
    assert run(via_a(Add(amount=1), "x")) == Count(count=42, key="x")
    assert agentd_cli("state", "save", "--host", a.address, "--agent", "counter/x").stdout == '{"count": 42}\n'

    deleted = agentd_cli("state", "delete", "--host", a.address, "--agent", "counter/x")
    assert deleted.returncode == 0 and deleted.stdout == "deleted the state of counter/x\n", str(deleted)
    assert run(via_a(Get(), "x")) == Count(count=0, key="x")

    nobody = agentd_cli("state", "save", "--host", a.address, "--agent", "nobody/k", timeout=2)
    assert nobody.returncode == 1, str(nobody)
    assert "no control channel serves destination 'agentid=nobody/k'" in nobody.stderr, str(nobody)
