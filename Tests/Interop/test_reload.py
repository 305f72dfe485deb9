"""Hot reload end to end: `agentd run` keeps serving AutoGen's own Python workers while its
plugins are dropped in, replaced under load, replaced by broken files, and removed with calls
in flight. The process is never restarted; nothing here reaches into it but its plugin folder.

Every test starts ``agentd run`` with its embedded host (the ``our-host`` setup of
runtime_support.py) and drives it with real ``GrpcWorkerAgentRuntime`` workers only. The plugin
under reload is the versioned test plugin (Tests/Plugins/VersionedCommon/versioned.h), built
twice: ``libVersionedPluginV1.so`` and ``libVersionedPluginV2.so``. Agent type ``versioned``,
subscribed to topic type ``versioned-events``, counts the events each key receives; RPC ``Get``
answers ``Count {"version", "count", "key"}`` at once, RPC ``Slow`` the same ~30 ms later from a
thread of the plugin's own. The count moves to the next version through snapshot/restore.
Version 2 also serves ``versioned-extra``.

In the plugin folder it is always ``versioned.so``, written the way the README asks: the new
content goes to ``.versioned.so.tmp`` (a dot file, which the runtime ignores), then
``os.rename`` puts it in place in one step.

Conditions are awaited with deadlines, never slept for. The runtime's log (its stderr) is read
where it is written, without moving the file offset the runtime writes at; a wait for a log
line polls it every 10 ms up to a deadline. See README.md for what each test checks.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from autogen_core import AgentId, TopicId, TypeSubscription, try_get_known_serializers_for_type

from interop_support import DEADLINE, Delivery, InteropNote, NoteCollector, run, take, worker
from runtime_support import ECHO, OUR_HOST, RuntimeLauncher, RuntimeLog, RuntimeSetup, launcher_fixture, plugin_build_dir

# How long the runtime may take to act on a change of its plugin folder (the README: "within
# about a second"; inotify, then a 150 ms quiet period, then load and register).
RELOAD_DEADLINE = 5.0
# How long an answer that should come at once may take (the point being "not hanging").
FAST = 3.0
# How long any one RPC of the load may take before it counts as lost.
RPC_DEADLINE = 10.0

PLUGIN_FILE = "versioned.so"
VERSIONED = "versioned"
EXTRA = "versioned-extra"
TICK_TOPIC = "versioned-events"
NO_LONGER_SERVED = "no longer served"


@pytest.fixture(params=[OUR_HOST])
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    """Starts ``agentd run`` with its embedded host; everything it started is stopped at the
    end, and a runtime that exited during the test fails it."""
    yield from launcher_fixture(request, tmp_path)


def build_artifact(name: str) -> bytes:
    path = plugin_build_dir() / name
    if not path.is_file():
        pytest.fail(f"{path} not found: build the test plugins first (swift build)", pytrace=False)
    return path.read_bytes()


@pytest.fixture(scope="module")
def versions() -> Dict[int, bytes]:
    """The versioned test plugin's two builds, by version."""
    v1, v2 = build_artifact("libVersionedPluginV1.so"), build_artifact("libVersionedPluginV2.so")
    assert v1 != v2, "the two builds of the versioned plugin are identical"
    return {1: v1, 2: v2}


def drop_in(plugin_dir: Path, name: str, content: bytes) -> None:
    """Puts ``content`` into the plugin folder as ``name`` in one step: written in full to
    ``.NAME.tmp``, then renamed over ``name``."""
    temporary = plugin_dir / f".{name}.tmp"
    temporary.write_bytes(content)
    os.rename(temporary, plugin_dir / name)


# --- Messages (JSON; the type name is the bare class name, as the plugin expects) ---------------------


@dataclass
class Tick:
    """An event for the versioned agents; they count any message published to their topic."""

    key: str
    seq: int


@dataclass
class Get:
    """RPC: the agent's count, answered at once."""

    tag: str = ""


@dataclass
class Slow:
    """RPC: the agent's count, answered ~30 ms later from a thread of the plugin's own."""

    tag: str = ""


@dataclass
class Count:
    """The versioned agents' answer (exactly the plugin's members: AutoGen decodes a dataclass
    with ``Count(**json)``, so a missing or extra member would fail)."""

    version: int
    count: int
    key: str


@dataclass
class Echo:
    """libEchoAgent.so's message: an RPC answered with the same text."""

    text: str


MESSAGE_TYPES = (Tick, Get, Slow, Count, Echo)


def add_serializers(runtime: Any) -> None:
    # A caller needs the reply type (Count) too, or the answer arrives undecodable.
    for t in MESSAGE_TYPES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(t))


async def call(caller: Any, message: Any, target: AgentId, deadline: float = FAST) -> Any:
    """An RPC that must be answered within ``deadline`` (a timeout is an AssertionError, never
    mistaken for the error answer a test may expect)."""
    try:
        return await asyncio.wait_for(caller.send_message(message, target), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(f"no answer within {deadline}s to {message!r} sent to {target}") from None


async def refused_call(caller: Any, message: Any, target: AgentId, deadline: float = FAST) -> Tuple[str, float]:
    """An RPC that must fail within ``deadline``: returns (error text, seconds taken)."""
    start = time.monotonic()
    try:
        answer = await asyncio.wait_for(caller.send_message(message, target), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(f"{message!r} to {target}: no answer within {deadline}s (expected an error)") from None
    except Exception as e:  # noqa: BLE001 - AutoGen raises a bare Exception(error text)
        return str(e), time.monotonic() - start
    raise AssertionError(f"{message!r} to {target} was answered ({answer!r}); expected an error")


def start_versioned(start_runtime: RuntimeLauncher, content: bytes, plugins: Sequence[str] = ()) -> Tuple[RuntimeSetup, RuntimeLog]:
    """A runtime serving ``content`` as versioned.so (and ``plugins`` from the build folder)."""
    setup = start_runtime(list(plugins), extra_files={PLUGIN_FILE: content})
    assert VERSIONED in setup.runtime.plugin_names(), setup.runtime.ready_line
    return setup, RuntimeLog(setup.runtime)


# --- Load: RPC chains recorded one by one ------------------------------------------------------------


@dataclass
class RpcRecord:
    """One RPC of the load: who sent what to which key, and the answer or the error."""

    chain: str
    kind: str
    key: str
    sent_at: float
    answered_at: float = 0.0
    answer: Optional[Count] = None
    error: Optional[str] = None


@dataclass
class Load:
    """RPC chains (each sends its next RPC once the last one is answered) and their records."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    records: List[RpcRecord] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def chain(self, caller: Any, name: str, keys: Sequence[str], kinds: Sequence[str]) -> None:
        i = 0
        while not self.stop.is_set():
            key, kind = keys[i % len(keys)], kinds[i % len(kinds)]
            i += 1
            message = Get(tag=f"{name}-{i}") if kind == "Get" else Slow(tag=f"{name}-{i}")
            record = RpcRecord(name, kind, key, time.monotonic())
            try:
                answer = await asyncio.wait_for(caller.send_message(message, AgentId(VERSIONED, key)), RPC_DEADLINE)
                if isinstance(answer, Count):
                    record.answer = answer
                else:
                    record.error = f"answer is not a Count: {answer!r}"
            except asyncio.TimeoutError:
                record.error = f"no answer within {RPC_DEADLINE}s"
            except Exception as e:  # noqa: BLE001 - recorded, checked at the end
                record.error = f"{type(e).__name__}: {e}"
            record.answered_at = time.monotonic()
            self.records.append(record)
            async with self.changed:
                self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
        async def waiting() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        try:
            await asyncio.wait_for(waiting(), deadline)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}; {len(self.records)} RPCs recorded") from None

    def errors(self) -> List[RpcRecord]:
        return [r for r in self.records if r.error is not None]

    def wrong_answers(self) -> List[RpcRecord]:
        return [r for r in self.records if r.answer is not None and r.answer.key != r.key]


def non_decreasing_counts(records: Sequence[RpcRecord]) -> List[str]:
    """Problems with the counts each chain saw per key: one chain's RPCs to one key are
    handled one after another, and the count never goes down (a version that lost the state
    would start again from 0)."""
    problems = []
    last: Dict[Tuple[str, str], RpcRecord] = {}
    for r in records:
        if r.answer is None:
            continue
        previous = last.get((r.chain, r.key))
        if previous is not None and previous.answer is not None and r.answer.count < previous.answer.count:
            problems.append(f"{r.chain} {r.key}: {previous.kind} saw {previous.answer}, then {r.kind} saw {r.answer}")
        last[(r.chain, r.key)] = r
    return problems


# --- 1: drop in ---------------------------------------------------------------------------------------


def test_drop_in_serves_within_a_deadline(start_runtime: RuntimeLauncher, versions: Dict[int, bytes]) -> None:
    """versioned.so dropped (atomic rename) into the folder of a running runtime that serves
    only echo: one "plugin loaded" line names it, and from then on a Python RPC to
    ``versioned/a`` is answered by version 1 at the first try.

    Before the drop, the same RPC fails fast (so the success is the drop-in's doing), and a
    Tick published to ("versioned-events", "a") reaches no subscriber: a control event the same
    worker publishes after it has arrived, so the host has routed the Tick, before the drop. The
    host keeps it for a late subscriber (README: Acknowledged delivery, 5 s by default), so the
    new plugin's subscription receives it: the count starts at 1, and Ticks published after the
    "plugin loaded" line are all counted."""
    setup = start_runtime([ECHO])
    assert setup.runtime.plugin_names() == ["echo-plugin"], setup.runtime.ready_line
    log = RuntimeLog(setup.runtime)
    assert log.find("plugin loaded", plugin=VERSIONED) == []

    async def body() -> None:
        sink: "asyncio.Queue[Delivery]" = asyncio.Queue()
        async with worker(setup.address) as caller, worker(setup.address) as publisher:
            for w in (caller, publisher):
                add_serializers(w)
            await NoteCollector.register(caller, "reload-control", lambda: NoteCollector(sink), skip_direct_message_subscription=True)
            await caller.add_subscription(TypeSubscription("reload-control-topic", "reload-control"))

            error, _ = await refused_call(caller, Get(), AgentId(VERSIONED, "a"))
            assert VERSIONED in error, f"error does not name the agent type: {error}"

            await publisher.publish_message(Tick(key="a", seq=0), TopicId(TICK_TOPIC, "a"))
            await publisher.publish_message(InteropNote(id="control", text="after the tick"), TopicId("reload-control-topic", "x"))
            [control] = await take(sink, 1, deadline=FAST)
            assert control.message.id == "control"

            dropped = time.monotonic()
            drop_in(setup.plugin_dir, PLUGIN_FILE, versions[1])
            [loaded] = await log.wait_for("plugin loaded", plugin=VERSIONED)
            took = time.monotonic() - dropped
            assert loaded.meta.get("plugin.version") == "1.0.0", loaded
            assert loaded.meta.get("plugin.path", "").endswith(f"/{PLUGIN_FILE}"), loaded
            assert loaded.meta.get("agent.types") == f'["{VERSIONED}"]', loaded
            assert took < RELOAD_DEADLINE

            # Registered and subscribed before the line: the first RPC is answered, and the Tick
            # the host kept for a late subscriber has been handed to it (before the RPC: the
            # host hands kept events over when the subscription arrives).
            assert await call(caller, Get(), AgentId(VERSIONED, "a")) == Count(version=1, count=1, key="a")

            for i in range(5):
                await publisher.publish_message(Tick(key="a", seq=i), TopicId(TICK_TOPIC, "a"))
            for i in range(3):
                await publisher.publish_message(Tick(key="b", seq=i), TopicId(TICK_TOPIC, "b"))
            # Same worker, same stream: the host and the agent's mailbox keep the order.
            assert await call(publisher, Get(), AgentId(VERSIONED, "a")) == Count(version=1, count=6, key="a")
            assert await call(publisher, Slow(), AgentId(VERSIONED, "b")) == Count(version=1, count=3, key="b")
            assert await call(caller, Echo(text="still here"), AgentId("echo", "default")) == Echo(text="still here")

    run(body())
    assert log.find("plugin refused") == [], log.tail()
    assert len(log.find("plugin loaded", plugin=VERSIONED)) == 1, log.tail()


# --- 2: ten replacements under load -----------------------------------------------------------------------

KEYS = ("k0", "k1", "k2", "k3")
SWAPS = 10


def test_replacements_under_load_lose_nothing(start_runtime: RuntimeLauncher, versions: Dict[int, bytes]) -> None:
    """While one worker publishes Ticks to 4 keys as fast as it can and two workers keep Get and
    Slow RPCs going (one chain per key each), versioned.so is replaced v1 -> v2 -> v1 ... ten
    times, each once the previous replacement is done and has served the load.

    Each replacement: one "plugin replaced" line naming the new and previous version; the new
    version answers Get at once (and ``versioned-extra`` exists exactly while v2 serves); both
    RPC workers then get answers from it, and Ticks were published meanwhile.

    At the end: every RPC was answered, none with an error; no chain ever saw a key's count go
    down (state carried over each swap); for each key the count equals the number of Ticks
    published to it (nothing lost, nothing counted twice), asked by the publisher itself after
    its last Tick (same stream, so after every Tick) and again by another worker; the answering
    version is the last one dropped; every replaced version is eventually unloaded; the process
    is the one started."""
    setup, log = start_versioned(start_runtime, versions[1])
    pid = setup.runtime.proc.pid
    published: Counter[str] = Counter()
    load = Load()
    swap_stats: List[Tuple[int, int, int]] = []

    async def publish_ticks(publisher: Any) -> None:
        send_queue = publisher._host_connection._send_queue  # noqa: SLF001
        seq = 0
        while not load.stop.is_set():
            key = KEYS[seq % len(KEYS)]
            await publisher.publish_message(Tick(key=key, seq=seq), TopicId(TICK_TOPIC, key))
            published[key] += 1
            seq += 1
            await asyncio.sleep(0)  # publish_message never suspends: let the other workers run
            while send_queue.qsize() > 256 and not load.stop.is_set():
                await asyncio.sleep(0.001)  # the stream is behind: keep the backlog bounded

    async def body() -> None:
        async with worker(setup.address) as publisher, worker(setup.address) as r1, worker(setup.address) as r2, \
                worker(setup.address) as checker:
            for w in (publisher, r1, r2, checker):
                add_serializers(w)
            # The agents exist and start at 0 on version 1, before any Tick.
            for key in KEYS:
                assert await call(checker, Get(), AgentId(VERSIONED, key)) == Count(version=1, count=0, key=key)
            error, _ = await refused_call(checker, Get(), AgentId(EXTRA, "x"))
            assert EXTRA in error, f"v1 serves no {EXTRA}, yet: {error}"

            tasks = [asyncio.create_task(publish_ticks(publisher))]
            for name, caller, kinds in (("r1", r1, ("Get", "Slow")), ("r2", r2, ("Slow", "Get"))):
                for n, key in enumerate(KEYS):
                    tasks.append(asyncio.create_task(load.chain(caller, f"{name}/{key}", [key], kinds[n % 2:] + kinds[:n % 2])))
            try:
                await load.wait_until(
                    lambda: sum(published.values()) >= 400 and all(
                        sum(1 for r in load.records if r.chain.startswith(n) and r.answer) >= 8 for n in ("r1", "r2")),
                    "the load to get going",
                )

                version = 1
                for swap in range(1, SWAPS + 1):
                    previous, version = version, 3 - version
                    mark, ticks_before = len(load.records), sum(published.values())
                    drop_in(setup.plugin_dir, PLUGIN_FILE, versions[version])
                    entries = await log.wait_for("plugin replaced", count=swap, deadline=RELOAD_DEADLINE)
                    assert len(entries) == swap, "\n".join(map(str, entries))
                    entry = entries[-1]
                    assert entry.meta.get("plugin.version") == f"{version}.0.0", entry
                    assert entry.meta.get("previous.version") == f"{previous}.0.0", entry

                    key = KEYS[swap % len(KEYS)]
                    answer = await call(checker, Get(), AgentId(VERSIONED, key))
                    assert answer.version == version, f"swap {swap}: {answer} after the line {entry}"
                    if version == 2:
                        assert await call(checker, Get(), AgentId(EXTRA, "x")) == Count(version=2, count=0, key="x")
                    else:
                        error, _ = await refused_call(checker, Get(), AgentId(EXTRA, "x"))
                        assert NO_LONGER_SERVED in error, f"swap {swap}: versioned-extra after going back to v1: {error}"

                    # The load goes through the new version before the next swap.
                    def both_on_new_version() -> bool:
                        return all(
                            any(r.chain.startswith(n) and r.answer is not None and r.answer.version == version
                                for r in load.records[mark:])
                            for n in ("r1", "r2"))

                    await load.wait_until(both_on_new_version, f"both RPC workers answered by v{version} (swap {swap})")
                    ticks = sum(published.values()) - ticks_before
                    assert ticks > 0, f"swap {swap}: no Tick published while it happened"
                    swap_stats.append((swap, ticks, len(load.records) - mark))
            finally:
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), RPC_DEADLINE + 5)

            errors = load.errors()
            assert not errors, f"{len(errors)} of {len(load.records)} RPCs failed, e.g.:\n" + "\n".join(
                f"{r.chain} {r.kind} -> {r.error}" for r in errors[:10])
            assert not load.wrong_answers(), load.wrong_answers()[:5]
            problems = non_decreasing_counts(load.records)
            assert not problems, "counts went down (state lost in a swap):\n" + "\n".join(problems[:10])
            kinds = Counter(r.kind for r in load.records)
            versions_seen = Counter(r.answer.version for r in load.records if r.answer is not None)
            assert kinds["Get"] >= SWAPS and kinds["Slow"] >= SWAPS, kinds
            assert set(versions_seen) == {1, 2}, versions_seen

            # After its last Tick, the publisher asks: the host and each agent's mailbox keep
            # one stream's order, so every Tick it published is in the count.
            for key in KEYS:
                final = await call(publisher, Get(), AgentId(VERSIONED, key), DEADLINE)
                assert final == Count(version=version, count=published[key], key=key), (
                    f"{key}: published {published[key]} Ticks, last version dropped v{version}; got {final}")
            for key in KEYS:
                final = await call(checker, Slow(), AgentId(VERSIONED, key))
                assert final == Count(version=version, count=published[key], key=key), f"{key}: {final} (asked again)"
            print(f"\nreplacements under load: {dict(published)} Ticks ({sum(published.values())}), "
                  f"{len(load.records)} RPCs {dict(kinds)} answered by {dict(versions_seen)}; "
                  f"per swap (swap, Ticks, RPCs): {swap_stats}")

    run(body())

    assert setup.runtime.proc.poll() is None and setup.runtime.proc.pid == pid
    assert len(log.find("plugin replaced")) == SWAPS, log.tail()
    for message in ("plugin refused", "new plugin version refused; the old version keeps serving", "plugin removed",
                    "snapshot failed; the agent starts afresh on the new version",
                    "restoring the agent's state failed; it starts afresh", "agent could not be created"):
        assert log.find(message) == [], f"unexpected '{message}':\n{log.tail()}"
    asyncio.run(log.wait_for("plugin version retired", count=SWAPS, deadline=FAST, plugin=VERSIONED))
    assert [e for e in log.poll() if e.level in ("error", "critical")] == [], log.tail()


# --- 3: broken replacements --------------------------------------------------------------------------------


def random_bytes(size: int) -> bytes:
    data = random.Random(20261125).randbytes(size)
    assert not data.startswith(b"\x7fELF")
    return data


def test_broken_replacements_leave_the_old_version_serving(start_runtime: RuntimeLauncher, versions: Dict[int, bytes]) -> None:
    """versioned.so (v1, serving, 7 Ticks counted on key "a") is replaced in turn by random
    bytes, the first 3000 bytes of v2 (truncated) and a copy of libBadMajorPlugin.so (ABI 99).

    Each: exactly one line naming versioned.so, the reason (not ELF / truncated / ABI 99) and the
    version that keeps serving (1.0.0); meanwhile and afterwards two RPC chains (Get and Slow,
    keys "a" and "b") keep being answered, all by v1, none failing, and each gets an answer sent
    after the refusal line. Then v2 dropped in is taken (the folder was being watched all along)
    and answers with the count carried over (7)."""
    setup, log = start_versioned(start_runtime, versions[1])
    broken = [
        ("random bytes", random_bytes(8192), r"^not an ELF shared library$"),
        ("v2 truncated to 3000 bytes", versions[2][:3000], r"^truncated: .*3000 bytes"),
        ("libBadMajorPlugin.so", build_artifact("libBadMajorPlugin.so"), r"ABI 99\.\d+;"),
    ]
    refusal = "new plugin version refused; the old version keeps serving"
    load = Load()

    async def body() -> None:
        async with worker(setup.address) as publisher, worker(setup.address) as caller, worker(setup.address) as checker:
            for w in (publisher, caller, checker):
                add_serializers(w)
            for i in range(7):
                await publisher.publish_message(Tick(key="a", seq=i), TopicId(TICK_TOPIC, "a"))
            assert await call(publisher, Get(), AgentId(VERSIONED, "a")) == Count(version=1, count=7, key="a")

            tasks = [
                asyncio.create_task(load.chain(caller, "get", ["a", "b"], ["Get"])),
                asyncio.create_task(load.chain(caller, "slow", ["b", "a"], ["Slow"])),
            ]
            try:
                for n, (what, content, reason) in enumerate(broken, start=1):
                    mark = len(load.records)
                    drop_in(setup.plugin_dir, PLUGIN_FILE, content)
                    lines = await log.wait_for(refusal, count=n)
                    assert len(lines) == n, "\n".join(map(str, lines))
                    line = lines[-1]
                    seen = time.monotonic()
                    assert line.meta.get("plugin.path", "").endswith(f"/{PLUGIN_FILE}"), line
                    assert re.search(reason, line.meta.get("reason", "")), f"{what}: reason not /{reason}/: {line}"
                    assert line.meta.get("serving.version") == "1.0.0", line
                    assert line.level == "error", line
                    await load.wait_until(
                        lambda: {r.chain for r in load.records[mark:] if r.sent_at > seen and r.answer} == {"get", "slow"},
                        f"answers to RPCs sent after the refusal of {what}",
                    )
                    assert await call(checker, Get(), AgentId(VERSIONED, "a")) == Count(version=1, count=7, key="a")
            finally:
                load.stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), RPC_DEADLINE + 5)

            errors = load.errors()
            assert not errors, "\n".join(f"{r.chain} {r.kind} {r.key} -> {r.error}" for r in errors[:10])
            answered_by = Counter(r.answer.version for r in load.records if r.answer)
            assert answered_by == Counter({1: len(load.records)}), answered_by
            assert not load.wrong_answers()
            counts = {r.answer.count for r in load.records if r.answer and r.key == "a"}
            assert counts == {7}, counts

            # Positive control: the watcher still acts on the folder.
            drop_in(setup.plugin_dir, PLUGIN_FILE, versions[2])
            [replaced] = await log.wait_for("plugin replaced")
            assert replaced.meta.get("plugin.version") == "2.0.0", replaced
            assert await call(checker, Get(), AgentId(VERSIONED, "a")) == Count(version=2, count=7, key="a")
            print(f"\nbroken replacements: {len(load.records)} RPCs answered by v1 meanwhile")

    run(body())
    # One line per broken file, and nothing else went wrong.
    assert [e.message for e in log.poll() if e.level in ("warning", "error", "critical")] == [refusal] * len(broken), log.tail()
    assert log.find("plugin removed") == [] and log.find("plugin refused") == [], log.tail()


# --- 4: removal with calls in flight ----------------------------------------------------------------------


def test_removal_answers_calls_in_flight_and_fails_later_calls_fast(
    start_runtime: RuntimeLauncher, versions: Dict[int, bytes]
) -> None:
    """With versioned.so (v1) and libEchoAgent.so serving, a worker sends 40 Slow RPCs at once
    (30 to key "q", queued one behind the other in its mailbox, and one each to 10 other keys;
    the plugin's one thread answers them ~30 ms apart). Once the first answer is in,
    versioned.so is deleted.

    Calls were still unanswered when the "plugin removed" line appeared; every one of the 40 is
    answered within a deadline, either with its Count (v1, its key) or with an error saying the
    agent type is no longer served, and both kinds occur. Later Get and Slow RPCs (to an agent
    that exists and to a new key) fail within 3 s with that readable error. Echo answers
    before, during and after; the removed version is unloaded (its thread joined)."""
    setup, log = start_versioned(start_runtime, versions[1], plugins=[ECHO])
    assert sorted(setup.runtime.plugin_names()) == ["echo-plugin", VERSIONED], setup.runtime.ready_line

    async def body() -> None:
        async with worker(setup.address) as caller, worker(setup.address) as other:
            for w in (caller, other):
                add_serializers(w)
            assert await call(other, Echo(text="before"), AgentId("echo", "default")) == Echo(text="before")
            assert await call(other, Get(), AgentId(VERSIONED, "q")) == Count(version=1, count=0, key="q")

            # 60 Slow calls to one agent take ~1.8 s one after another: the removal (inotify, the
            # quiet period, the withdrawal) is logged while some are still in flight, on a loaded
            # machine too.
            keys = ["q"] * 60 + [f"r{i}" for i in range(10)]
            answered: "asyncio.Queue[int]" = asyncio.Queue()

            async def slow(i: int, key: str) -> Tuple[str, Any]:
                try:
                    result: Tuple[str, Any] = ("answer", await caller.send_message(Slow(tag=str(i)), AgentId(VERSIONED, key)))
                except Exception as e:  # noqa: BLE001 - the error text is what is checked
                    result = ("error", str(e))
                answered.put_nowait(i)
                return result

            calls = [asyncio.create_task(slow(i, key)) for i, key in enumerate(keys)]
            await take(answered, 1, deadline=FAST)
            os.unlink(setup.plugin_dir / PLUGIN_FILE)
            echo_during = asyncio.create_task(call(other, Echo(text="during"), AgentId("echo", "default")))
            [removed] = await log.wait_for("plugin removed", plugin=VERSIONED)
            outstanding = sum(1 for c in calls if not c.done())
            assert removed.meta.get("plugin.path", "").endswith(f"/{PLUGIN_FILE}"), removed
            assert outstanding > 0, "every Slow call was answered before the removal: nothing was in flight"

            try:
                results = await asyncio.wait_for(asyncio.gather(*calls), DEADLINE)
            except asyncio.TimeoutError:
                stuck = [keys[i] for i, c in enumerate(calls) if not c.done()]
                raise AssertionError(f"{len(stuck)} Slow calls never answered after the removal: {stuck}") from None
            assert await echo_during == Echo(text="during")

            kinds = Counter(kind for kind, _ in results)
            for (kind, value), key in zip(results, keys):
                if kind == "answer":
                    assert value == Count(version=1, count=0, key=key), value
                else:
                    assert NO_LONGER_SERVED in value and VERSIONED in value, f"{key}: unreadable error {value!r}"
            assert kinds["answer"] >= 1 and kinds["error"] >= 1, kinds

            for message, key in ((Get(), "q"), (Slow(), "q"), (Get(), "never-seen"), (Slow(), "never-seen-2")):
                error, took = await refused_call(other, message, AgentId(VERSIONED, key))
                assert NO_LONGER_SERVED in error and VERSIONED in error, f"{message!r} to {key}: {error!r}"
                assert took < FAST

            assert await call(other, Echo(text="after"), AgentId("echo", "default")) == Echo(text="after")
            await log.wait_for("plugin version retired", plugin=VERSIONED, deadline=FAST)
            print(f"\nremoval: {outstanding} of {len(calls)} Slow calls unanswered when the removal was logged; "
                  f"outcomes {dict(kinds)}")

    run(body())
    assert len(log.find("plugin removed")) == 1, log.tail()
