"""Shared agent types end to end: several `agentd run` runtimes serving the C counter as one
shared type (``[plugin.counter-plugin] shared = true``), one SQLite state file, driven by
AutoGen's own Python workers.

The host places each key on one runtime (rendezvous hashing) and moves keys when a runtime joins
or leaves; the runtime a key leaves checkpoints and destroys its instance, the one it comes to
activates it from the store. What these tests hold it to, from the callers' side: every Add that
was answered is in its key's count, nothing is counted twice, no call hangs.

Every Add makes its effect identifiable: the n-th Add sent to a key adds ``2**n``. A key's count
is then the set of its Adds that were applied, bit by bit, so a lost Add (an answered bit that
is 0), an Add counted that was never answered (an errored bit that is 1: possible when a runtime
is killed between its commit and its answer) and an Add applied twice (a carry: a bit that was
never sent, or an answered bit cleared) each show in the count itself, per Add.

Which runtime holds which key is read from each runtime's own log at debug level: ``agent
activated`` and ``agent retired`` with ``agent.id`` (there is no status command yet; the
counter's answer does not say who answered). Runtimes are started with ``[runtime] client_id``
= their name, so the ``shared agent type's placement changed`` line (info) names them.

Skipped with ``INTEROP_HOST=autogen``: AutoGen's host has no shared types.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import pytest
from autogen_core import AgentId, try_get_known_serializers_for_type

from cluster_support import Cluster, cluster_fixture
from conftest import HostProcess, agentd_path
from interop_support import DEADLINE, run, worker
from runtime_support import RuntimeLog, RuntimeProcess, runtime_folder, write_ini
from runtime_support import Add, Count, Get, add_counter_serializers

pytestmark = pytest.mark.agentd_only

COUNTER = "libCounterAgent.so"
COUNTER_TYPE = "counter"
# How long each RPC may take before it counts as hung (the host's own deadline is 60 s).
CALL_DEADLINE = 5.0
# The n-th Add to a key adds 2**n: a count holds 63 bits, so at most this many Adds per key.
MAX_ADDS_PER_KEY = 62
PLACEMENT_CHANGED = "shared agent type's placement changed"


# --- The C counter (Plugins/CounterAgent) ---------------------------------------------------------




def bits(value: int) -> Set[int]:
    return {b for b in range(value.bit_length()) if value >> b & 1}


# --- Runtimes serving the counter as a shared type -------------------------------------------------


class SharedRuntimes:
    """``agentd run`` processes serving copies of the counter plugin as a shared type, each
    joined to the hosts it is given, all on one SQLite state file; their logs (debug level),
    parsed as they grow. Stopped at the end (SIGTERM); one that exited by itself fails the test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.database = base / "state" / "agents.db"
        self.runtimes: Dict[str, RuntimeProcess] = {}
        self.logs: Dict[str, RuntimeLog] = {}
        self.killed: Set[str] = set()

    def start(self, name: str, hosts: Sequence[str]) -> RuntimeProcess:
        """Starts runtime ``name`` (its client id) given the host addresses ``hosts``; returns once
        it printed ``ready: counter-plugin ...``. Blocks: call it off the event loop while a load
        runs (``asyncio.to_thread``)."""
        directory, _ = runtime_folder(self.base, f"{name}-", [COUNTER])
        ini = directory / "agentd.ini"
        write_ini(ini, log_level="debug", extra=(
            f"[runtime]\nhost = {', '.join(hosts)}\nclient_id = {name}\n\n"
            "[plugin.counter-plugin]\nshared = true\n\n"
            f"[state]\nstore = sqlite\npath = {self.database}\nsync = normal\n"))
        runtime = RuntimeProcess([str(agentd_path()), "run", "--config", str(ini)], cwd=directory, embedded=False)
        self.runtimes[name] = runtime
        self.logs[name] = RuntimeLog(runtime)
        if runtime.stdout_lines != ["ready: counter-plugin 1.0.0"]:
            pytest.fail(f"agentd run {name} printed {runtime.stdout_lines!r}", pytrace=False)
        return runtime

    def kill9(self, name: str) -> None:
        runtime = self.runtimes[name]
        runtime.stopped_by_test = True
        self.killed.add(name)
        runtime.proc.send_signal(signal.SIGKILL)
        runtime.proc.wait(timeout=10)
        assert runtime.proc.returncode == -signal.SIGKILL, runtime.proc.returncode

    def live(self) -> List[str]:
        return [name for name in self.runtimes if name not in self.killed]

    # What the logs say.

    def members(self, name: str) -> Optional[List[str]]:
        """The runtimes serving the type as runtime ``name`` was last told, or None before any."""
        lines = self.logs[name].find(PLACEMENT_CHANGED, agent_type=COUNTER_TYPE)
        return re.findall(r'"([^"]*)"', lines[-1].meta.get("client.ids", "")) if lines else None

    def activations(self, name: str) -> List[str]:
        """The keys runtime ``name`` activated, one entry per activation, in order."""
        return [e.meta["agent.id"].split("/", 1)[1] for e in self.logs[name].find("agent activated")
                if e.meta.get("agent.id", "").startswith(f"{COUNTER_TYPE}/")]

    def retirements(self, name: str) -> List[Tuple[str, str]]:
        """(key, reason) of each agent runtime ``name`` retired."""
        return [(e.meta["agent.id"].split("/", 1)[1], e.meta.get("reason", "")) for e in self.logs[name].find("agent retired")
                if e.meta.get("agent.id", "").startswith(f"{COUNTER_TYPE}/")]

    def resident(self, name: str) -> collections.Counter:
        """Per key: activations minus retirements on runtime ``name`` (1 = resident there now)."""
        counts = collections.Counter(self.activations(name))
        counts.subtract(key for key, _ in self.retirements(name))
        return counts

    async def wait_members(self, expected: Iterable[str], deadline: float = DEADLINE) -> None:
        """Until every live runtime was told that exactly ``expected`` serve the type (the
        runtime logs each notice; there is nothing to wait on but its log)."""
        want = sorted(expected)
        await wait_until(lambda: all(self.members(n) == want for n in self.live()),
                         lambda: f"runtimes told {want} serve the type: {[(n, self.members(n)) for n in self.live()]}",
                         deadline)

    def report_sections(self) -> Iterable[Tuple[str, str]]:
        for name, runtime in self.runtimes.items():
            text = runtime.stderr()
            if len(text) > 30000:
                text = "...\n" + text[-30000:]
            yield (f"agentd run {name} stderr",
                   f"$ {' '.join(runtime.argv)}\nstdout:\n{chr(10).join(runtime.stdout_lines)}\nstderr:\n{text or '(empty)'}")

    def stop_all(self) -> List[str]:
        problems: List[str] = []
        for name, runtime in self.runtimes.items():
            died, killed = runtime.terminate()
            if died is not None and not runtime.stopped_by_test:
                problems.append(f"agentd run {name} exited during the test with status {died}\nstderr:\n{runtime.stderr()[-5000:]}")
            if killed:
                problems.append(f"agentd run {name} ignored SIGTERM for 10s and was killed")
        return problems


@pytest.fixture
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedRuntimes]:
    """Runtimes serving the shared counter (see SharedRuntimes); with ``cluster``, ask for this
    one after it, so that the runtimes stop before the hosts."""
    runtimes = SharedRuntimes(tmp_path)
    previous: Optional[Callable[[], Iterable[Tuple[str, str]]]] = getattr(request.node, "_interop_reports", None)

    def sections() -> Iterator[Tuple[str, str]]:
        if previous is not None:
            yield from previous()
        yield from runtimes.report_sections()

    request.node._interop_reports = sections  # read by conftest's report hook
    yield runtimes
    problems = runtimes.stop_all()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(request, tmp_path)


async def wait_until(predicate: Callable[[], bool], what: Callable[[], str], deadline: float) -> None:
    """Polls ``predicate`` (a log: nothing to wait on) every 10 ms until it holds or ``deadline``."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what()}")
        await asyncio.sleep(0.01)


# --- The load ------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Add: the ``bit``-th to ``key``, adding 2**bit; what came back, and when."""

    key: str
    bit: int
    sent_at: float
    caller: int
    done_at: Optional[float] = None
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
        return [c for c in self.calls if c.count is not None and c.done_at is not None and c.done_at >= since]

    def errors(self) -> List[Call]:
        return [c for c in self.calls if c.error is not None]


async def add_load(callers: Sequence[Any], load: Load, keys: Sequence[str], *, in_flight: int,
                   rounds: int = MAX_ADDS_PER_KEY) -> None:
    """Rounds of Adds over ``keys`` (round n adds 2**n to each key), ``in_flight`` at a time, until
    ``rounds`` are sent or ``load.stop``. Successive rounds go through the callers in turn. Each
    call is bounded by CALL_DEADLINE (past it, it counts as hung). After an error the slot pauses
    5 ms: errors come back at once, and the load is meant to stay bounded."""
    assert rounds <= MAX_ADDS_PER_KEY
    window = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()

    async def one(call: Call) -> None:
        try:
            answer = await asyncio.wait_for(
                callers[call.caller].send_message(Add(amount=1 << call.bit), AgentId(COUNTER_TYPE, call.key)), CALL_DEADLINE)
        except asyncio.TimeoutError:
            call.hung = True
        except Exception as e:  # noqa: BLE001 - recorded: errors are expected around a kill
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

    for round_ in range(rounds):
        for index, key in enumerate(keys):
            await window.acquire()
            if load.stop:
                window.release()
                return
            call = Call(key, round_, loop.time(), (round_ + index) % len(callers))
            load.calls.append(call)
            load.tasks.append(asyncio.create_task(one(call)))


async def wait_load(load: Load, sender: "asyncio.Task[None]", predicate: Callable[[], bool], what: str,
                    deadline: float) -> None:
    async def wait() -> None:
        async with load.progress:
            await load.progress.wait_for(lambda: predicate() or sender.done())

    try:
        await asyncio.wait_for(wait(), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(f"{what} within {deadline}s: {len(load.answered())} answered, "
                             f"{len(load.errors())} errors {[c.error for c in load.errors()[:3]]}") from None
    if not predicate():
        raise AssertionError(f"the load ended before {what}: {sender!r}; {len(load.answered())} answered")


async def finish_load(load: Load, sender: "asyncio.Task[None]") -> None:
    load.stop = True
    await asyncio.gather(sender, return_exceptions=True)
    # Every call is bounded by CALL_DEADLINE: this ends within it.
    await asyncio.gather(*load.tasks, return_exceptions=True)


async def get_counts(caller: Any, keys: Sequence[str], in_flight: int = 8) -> Dict[str, int]:
    """Each key's count, asked with ``Get`` (``in_flight`` at a time), each within CALL_DEADLINE."""
    window = asyncio.Semaphore(in_flight)

    async def one(key: str) -> Tuple[str, int]:
        async with window:
            try:
                answer = await asyncio.wait_for(caller.send_message(Get(), AgentId(COUNTER_TYPE, key)), CALL_DEADLINE)
            except asyncio.TimeoutError:
                raise AssertionError(f"Get to {COUNTER_TYPE}/{key} not answered within {CALL_DEADLINE}s") from None
            assert isinstance(answer, Count) and answer.key == key, f"{key}: {answer!r}"
            return key, answer.count

    return dict(await asyncio.gather(*(one(key) for key in keys)))


@dataclass
class Verdict:
    """What the final counts say about the load's Adds."""

    lost: List[str] = field(default_factory=list)
    phantom: List[str] = field(default_factory=list)
    stale_answers: List[str] = field(default_factory=list)
    #: Adds answered with an error (or hung) whose effect is in the count anyway.
    counted_errors: List[Call] = field(default_factory=list)
    uncounted_errors: List[Call] = field(default_factory=list)

    def problems(self) -> List[str]:
        return self.lost + self.phantom + self.stale_answers


def judge(load: Load, finals: Dict[str, int]) -> Verdict:
    """Per key, the final count read as the set of Adds applied (bit n = the n-th Add):

    - every answered Add is applied (else: lost);
    - only Adds that were sent are applied (else: phantom, e.g. an Add applied twice carries into
      a bit no Add set);
    - each answer's own count has its Add and every Add of that key answered before it was sent
      (else the answer came from an instance that missed effects: the key lived in two places);
    - an Add answered with an error (or hung) may or may not be applied: sorted into
      counted/uncounted."""
    verdict = Verdict()
    by_key: Dict[str, List[Call]] = collections.defaultdict(list)
    for c in load.calls:
        by_key[c.key].append(c)
    for key, calls in by_key.items():
        final = finals[key]
        applied = bits(final) if final >= 0 else set()
        sent = {c.bit for c in calls}
        answered = [c for c in calls if c.count is not None]
        lost = sorted(c.bit for c in answered if c.bit not in applied)
        if final < 0 or lost:
            verdict.lost.append(f"{key}: final count {final:#x}; answered Adds {lost} not in it")
        if applied - sent:
            verdict.phantom.append(f"{key}: final count {final:#x} has bits {sorted(applied - sent)} no Add was sent for "
                                   f"(sent {sorted(sent)})")
        for c in answered:
            assert c.count is not None and c.done_at is not None
            seen = bits(c.count) if c.count >= 0 else set()
            before = {d.bit for d in answered if d.done_at is not None and d.done_at < c.sent_at}
            missing = ({c.bit} | before) - seen
            if missing or seen - sent:
                verdict.stale_answers.append(
                    f"{key}: Add #{c.bit} answered {c.count:#x}: lacks {sorted(missing)} (its own or answered before it "
                    f"was sent), has unsent {sorted(seen - sent)}")
        for c in calls:
            if c.count is None:
                (verdict.counted_errors if c.bit in applied else verdict.uncounted_errors).append(c)
    return verdict


def error_kind(text: str) -> str:
    """An error text without what varies (keys, ids, numbers): for counting the kinds."""
    text = re.sub(r"counter/k\d+", "counter/K", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    return re.sub(r"\b\d+\b", "N", text)


def print_errors(tag: str, calls: Sequence[Call]) -> None:
    for kind, n in collections.Counter(error_kind(c.error or "hung") for c in calls).most_common():
        print(f"[{tag}]   {n} x {kind}")


# --- The tests -------------------------------------------------------------------------------------


def test_keys_spread_over_three_runtimes_and_every_answered_add_counts(host: HostProcess, shared: SharedRuntimes) -> None:
    """One ``agentd host``, three runtimes serving the counter as shared, one SQLite file. Once
    each runtime was told that all three serve it, a Python worker sends 3 rounds of Adds over 300
    keys (8 in flight), then a ``Get`` per key: every Add is answered, every count is exactly the
    sum of its key's Adds. Per the runtimes' debug logs every key was activated exactly once, on
    one runtime (so that runtime answered all its calls: nothing was retired or moved), each
    runtime holding at least a sixth of the keys; the host logged each runtime's registration."""
    keys = [f"k{i}" for i in range(300)]
    names = ["shared-1", "shared-2", "shared-3"]
    started = time.monotonic()
    for name in names:
        shared.start(name, [host.address])
    load = Load()

    async def body() -> Dict[str, int]:
        await shared.wait_members(names)
        async with worker(host.address) as caller:
            add_counter_serializers(caller)
            sender = asyncio.create_task(add_load([caller], load, keys, in_flight=8, rounds=3))
            try:
                await asyncio.wait_for(asyncio.shield(sender), 30)
            finally:
                await finish_load(load, sender)
            return await get_counts(caller, keys)

    finals = run(body())
    took = time.monotonic() - started
    assert not [c for c in load.calls if c.hung], "calls hung"
    assert not load.errors(), f"{len(load.errors())} errors: {[c.error for c in load.errors()[:3]]}"
    assert len(load.answered()) == 3 * len(keys)
    assert finals == {key: 0b111 for key in keys}, {k: v for k, v in finals.items() if v != 0b111}
    verdict = judge(load, finals)
    assert not verdict.problems(), verdict.problems()[:10]

    activated = {name: shared.activations(name) for name in names}
    where: Dict[str, List[str]] = collections.defaultdict(list)
    for name, ks in activated.items():
        for key in ks:
            where[key].append(name)
    twice = {key: places for key, places in where.items() if len(places) != 1}
    assert not twice, f"keys activated more than once: {dict(list(twice.items())[:10])}"
    assert sorted(where) == sorted(keys), f"keys never activated: {sorted(set(keys) - set(where))[:10]}"
    spread = {name: len(ks) for name, ks in activated.items()}
    assert all(n >= len(keys) // 6 for n in spread.values()), f"keys per runtime: {spread}"
    retired = {name: shared.retirements(name) for name in names}
    assert not any(retired.values()), f"agents retired: {retired}"
    registered = [line for line in host.stderr().splitlines() if "shared agent type registered" in line]
    assert sorted(re.search(r"client\.id=(\S+)", line).group(1) for line in registered) == names, registered  # type: ignore[union-attr]
    print(f"\n[shared] 3 runtimes, {len(load.calls)} Adds over {len(keys)} keys, all answered and counted; keys per "
          f"runtime {spread}; {took:.1f}s with start-up")


def test_kill_9_and_a_join_under_load_keep_every_answered_add(host: HostProcess, shared: SharedRuntimes) -> None:
    """Three runtimes serve the shared counter (one SQLite file); a Python worker sends Adds over
    300 keys continuously (8 in flight, each call bounded by 5 s). Once 300 Adds are answered
    (about one per key), one runtime gets SIGKILL and a fourth is started (the load goes on). Once the
    survivors and the newcomer were told who serves the type and 300 more Adds were answered
    after that, the load stops and each key's count is read.

    No call hung; no error before the kill; every answered Add is in its key's count and no Add
    is in it twice or unsent; each answer's count has every Add of its key answered before it
    was sent (no answer from an instance that missed effects); Adds answered with an error may be
    counted (the killed runtime had committed them) or not — counted per kind and printed. The
    newcomer took keys over, the killed runtime's keys were activated again elsewhere, and once
    the counts were read every key is resident on exactly one live runtime."""
    keys = [f"k{i}" for i in range(300)]
    first = ["shared-1", "shared-2", "shared-3"]
    victim, newcomer = "shared-2", "shared-4"
    started = time.monotonic()
    for name in first:
        shared.start(name, [host.address])
    load = Load()
    report: Dict[str, float] = {}

    async def body() -> Dict[str, int]:
        loop = asyncio.get_running_loop()
        await shared.wait_members(first)
        async with worker(host.address) as caller:
            add_counter_serializers(caller)
            sender = asyncio.create_task(add_load([caller], load, keys, in_flight=8))
            try:
                await wait_load(load, sender, lambda: len(load.answered()) >= len(keys), "one round answered", DEADLINE)
                report["killed_at"] = loop.time()
                shared.kill9(victim)
                await asyncio.to_thread(shared.start, newcomer, [host.address])
                report["newcomer_ready"] = loop.time()
                await shared.wait_members([first[0], first[2], newcomer])
                joined = report["joined_at"] = loop.time()
                await wait_load(load, sender, lambda: len(load.answered(since=joined)) >= len(keys),
                                "300 answers after the join", DEADLINE)
            finally:
                await finish_load(load, sender)
            report["stopped_at"] = loop.time()
            return await get_counts(caller, keys)

    finals = run(body())
    took = time.monotonic() - started
    killed_at = report["killed_at"]
    hung = [c for c in load.calls if c.hung]
    before = [c for c in load.calls if c.error is not None and c.done_at is not None and c.done_at < killed_at]
    window = [c for c in load.calls if (c.error is not None or c.hung) and c.done_at is not None and c.done_at >= killed_at]
    in_flight = [c for c in load.calls if c.sent_at < killed_at and (c.done_at is None or c.done_at >= killed_at)]
    verdict = judge(load, finals)
    victim_keys = set(shared.activations(victim))
    after_kill = [c for c in load.answered(since=killed_at) if c.key in victim_keys and c.sent_at >= killed_at]
    first_victim_answer = min((c.done_at for c in after_kill if c.done_at is not None), default=float("nan")) - killed_at
    activated = {name: len(shared.activations(name)) for name in shared.runtimes}
    retired = {name: collections.Counter(reason for _, reason in shared.retirements(name)) for name in shared.runtimes}
    print(f"\n[shared] kill -9 of {victim} under load, then {newcomer} joined: {len(load.calls)} Adds over {len(keys)} keys, "
          f"{len(load.answered())} answered, {len(in_flight)} in flight at the kill; {newcomer} ready "
          f"{(report['newcomer_ready'] - killed_at) * 1000:.0f} ms after the kill, placement settled after "
          f"{(report['joined_at'] - killed_at) * 1000:.0f} ms; first answer for a key of {victim} sent after the kill: "
          f"{first_victim_answer * 1000:.0f} ms after it; load ran {report['stopped_at'] - killed_at:.2f}s after the kill; "
          f"{took:.1f}s in all")
    print(f"[shared] activations per runtime {activated}; retirements {dict((k, dict(v)) for k, v in retired.items())}")
    print(f"[shared] {len(window)} error(s) in the window ({len(verdict.counted_errors)} of them counted anyway: "
          f"applied before the error; {len(verdict.uncounted_errors)} not), {len(before)} before:")
    print_errors("shared", window)
    for c in verdict.counted_errors:
        print(f"[shared]   counted though it failed: {c.key} Add #{c.bit} (sent {(c.sent_at - killed_at) * 1000:+.0f} ms "
              f"from the kill): {c.error or 'hung'}")

    assert not hung, f"{len(hung)} call(s) got neither an answer nor an error within {CALL_DEADLINE}s: " \
                     f"{[(c.key, c.bit) for c in hung[:5]]}"
    assert not before, f"errors before the kill: {[c.error for c in before[:3]]}"
    assert not verdict.problems(), "\n".join(verdict.problems()[:20])
    assert victim_keys, f"{victim} activated no key before the kill"
    assert activated[newcomer] > 0, f"{newcomer} took no key over: {activated}"
    survivors = [first[0], first[2], newcomer]
    reactivated = victim_keys & {key for name in survivors for key in shared.activations(name)}
    assert reactivated == victim_keys, f"keys of {victim} never activated again: {sorted(victim_keys - reactivated)[:10]}"

    # Every key resident on exactly one live runtime (each Get activated it on its owner; the
    # runtimes it left retire it once idle, a tick after the move at most).
    def placements() -> Dict[str, List[str]]:
        where: Dict[str, List[str]] = {key: [] for key in keys}
        for name in survivors:
            for key, n in shared.resident(name).items():
                if n > 0:
                    where[key].append(name)
                assert n in (0, 1), f"{name}: {key} activated {n} more times than retired"
        return where

    run(wait_until(lambda: all(len(p) == 1 for p in placements().values()),
                   lambda: f"keys not resident on exactly one runtime: "
                           f"{ {k: p for k, p in placements().items() if len(p) != 1} }", DEADLINE))


def test_callers_on_two_hosts_reach_one_instance_per_key(cluster: Cluster, shared: SharedRuntimes) -> None:
    """Two hosts in a cluster over NATS, a runtime on each serving the counter as shared (one
    SQLite file: same machine). Once both runtimes were told that both serve it, Python workers on
    both hosts send Adds over 200 keys (4 rounds, 8 in flight, the rounds alternating between the
    workers, so each key is called through both hosts): every Add is answered, and the counts
    read through either host are exactly the sums. Every key was activated once, on one of the
    two runtimes (so calls through the other host crossed to it), each runtime holding at least a
    quarter of the keys."""
    keys = [f"k{i}" for i in range(200)]
    a, b = cluster.start(["a", "b"])
    started = time.monotonic()
    shared.start("shared-a", [a.address])
    shared.start("shared-b", [b.address])
    load = Load()

    async def body() -> Tuple[Dict[str, int], Dict[str, int]]:
        await shared.wait_members(["shared-a", "shared-b"])
        async with worker(a.address) as via_a, worker(b.address) as via_b:
            add_counter_serializers(via_a)
            add_counter_serializers(via_b)
            sender = asyncio.create_task(add_load([via_a, via_b], load, keys, in_flight=8, rounds=4))
            try:
                await asyncio.wait_for(asyncio.shield(sender), 30)
            finally:
                await finish_load(load, sender)
            return await get_counts(via_a, keys), await get_counts(via_b, keys)

    from_a, from_b = run(body())
    took = time.monotonic() - started
    assert not [c for c in load.calls if c.hung], "calls hung"
    assert not load.errors(), f"{len(load.errors())} errors: {[c.error for c in load.errors()[:3]]}"
    assert from_a == from_b == {key: 0b1111 for key in keys}, {k: (v, from_b[k]) for k, v in from_a.items() if v != 0b1111}
    verdict = judge(load, from_a)
    assert not verdict.problems(), verdict.problems()[:10]
    activated = {name: shared.activations(name) for name in shared.runtimes}
    everywhere = [key for ks in activated.values() for key in ks]
    assert sorted(everywhere) == sorted(keys), (
        f"activated more than once: {[k for k, n in collections.Counter(everywhere).items() if n > 1][:10]}, "
        f"never: {sorted(set(keys) - set(everywhere))[:10]}")
    spread = {name: len(ks) for name, ks in activated.items()}
    assert all(n >= len(keys) // 4 for n in spread.values()), f"keys per runtime: {spread}"
    print(f"\n[shared] 2 hosts, a runtime on each: {len(load.calls)} Adds over {len(keys)} keys through both hosts, all "
          f"answered and counted; keys per runtime {spread}; {took:.1f}s with start-up")
