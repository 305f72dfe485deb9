"""Agents that keep their state, end to end: `agentd run` with a state store, driven by AutoGen's
own Python workers, killed with SIGKILL, stopped, restarted on the same state file, and left
idle until it retires its agents.

The plugins are the two examples that keep state: ``libCounterAgent.so`` (C, agent type
``counter``: RPC ``Add {"amount"}`` and ``Get`` answer ``Count {"count", "key"}``) and
``libTallyAgent.so`` (Swift, agent type ``tally``: RPC or event ``TallyAdd {"item", "amount"}``,
RPC ``TallyGet``, answer ``TallyTotals {"key", "totals", "total"}``). Every runtime uses the
embedded host (the ``our-host`` setup of runtime_support.py) and a state file in the test's
temporary folder (``[state] path``), which each restart names again.

What a caller may rely on, and what these tests hold the runtime to: the RPC answer of a
message that changed an agent's state is sent only once the checkpoint is committed, so every
change a caller saw answered is still there after the runtime is killed; a change whose answer
never came may or may not be. Conditions are awaited with deadlines, never slept for; a wait for
a log line polls the runtime's stderr (there is no event to wait on) every 10 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest
from autogen_core import AgentId, TopicId, try_get_known_serializers_for_type

from conftest import agentd_path
from interop_support import DEADLINE, run, worker
from runtime_support import OUR_HOST, RuntimeLauncher, RuntimeLog, RuntimeSetup, launcher_fixture
from runtime_support import Add, Count, Get, add_counter_serializers

COUNTER = "libCounterAgent.so"
TALLY = "libTallyAgent.so"

# How long an answer that should come at once may take (the point being "not hanging").
FAST = 5.0
# How long the runtime may take to exit after SIGKILL, or after SIGTERM when idle.
EXIT_DEADLINE = 10.0


@pytest.fixture(params=[OUR_HOST])
def start_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RuntimeLauncher]:
    """Starts ``agentd run`` with its embedded host, as often as a test asks; everything it
    started is stopped at the end, and a runtime that exited on its own fails the test."""
    yield from launcher_fixture(request, tmp_path)


def state_ini(database: Path, idle_seconds: Optional[float] = None) -> str:
    """``[state]`` naming ``database`` (absolute, so every restart finds the same file), and
    ``[agents] idle_seconds`` when given."""
    text = f"[state]\nstore = sqlite\npath = {database}\nsync = normal\n"
    if idle_seconds is not None:
        text += f"\n[agents]\nidle_seconds = {idle_seconds}\n"
    return text


def stored_state(database: Path, agent_type: str, key: str) -> Optional[Any]:
    """An agent's state as the store holds it (the table StateStore documents), decoded as JSON;
    None when there is none. Read with Python's own sqlite3, as an operator could."""
    db = sqlite3.connect(database)
    try:
        row = db.execute(
            "SELECT state FROM agent_state WHERE agent_type = ? AND agent_key = ?", (agent_type, key)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else json.loads(bytes(row[0]).decode("utf-8"))


def state_save(address: str, agent: str) -> str:
    """What ``agentd state save`` prints for ``agent`` (TYPE/KEY): the agent's state, asked of
    the runtime over AutoGen's control channel. Fails the test if the command fails."""
    argv = [str(agentd_path()), "state", "save", "--host", address, "--agent", agent, "--timeout", str(FAST)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=FAST + 10, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert done.returncode == 0, f"$ {' '.join(argv)}\nexit {done.returncode}\nstdout: {done.stdout!r}\nstderr: {done.stderr!r}"
    return done.stdout.rstrip("\n")


async def call(caller: Any, message: Any, target: AgentId, deadline: float = FAST) -> Any:
    """An RPC that must be answered within ``deadline``."""
    try:
        return await asyncio.wait_for(caller.send_message(message, target), deadline)
    except asyncio.TimeoutError:
        raise AssertionError(f"no answer within {deadline}s to {message!r} sent to {target}") from None


def kill_hard(setup: RuntimeSetup) -> None:
    """SIGKILL the runtime and wait until it is gone."""
    setup.runtime.stopped_by_test = True
    setup.runtime.proc.send_signal(signal.SIGKILL)
    setup.runtime.proc.wait(timeout=EXIT_DEADLINE)
    assert setup.runtime.proc.returncode == -signal.SIGKILL


def stop_gracefully(setup: RuntimeSetup) -> None:
    """SIGTERM the runtime; it must exit with status 0."""
    code, took = setup.runtime.sigterm(EXIT_DEADLINE)
    assert code == 0, f"agentd run exited with {code} after SIGTERM ({took:.1f}s)"


# --- The C counter ------------------------------------------------------------------------------




@dataclass
class Burst:
    """RPCs sent to counter agents and what came back: the amounts sent per key in sending
    order, and which of them were answered with the agent's count."""

    sent: Dict[str, List[int]] = field(default_factory=dict)
    answered: Dict[str, List[int]] = field(default_factory=dict)
    #: Every answer's count, per key, in arrival order (an agent's counts never go down here:
    #: every amount is positive).
    counts: Dict[str, List[int]] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    #: One task per RPC sent.
    calls: List["asyncio.Task[None]"] = field(default_factory=list)

    def unanswered(self, key: str) -> List[int]:
        remaining = list(self.answered.get(key, []))
        missing = []
        for amount in self.sent.get(key, []):
            if amount in remaining:
                remaining.remove(amount)
            else:
                missing.append(amount)
        return missing

    @property
    def answer_count(self) -> int:
        return sum(len(a) for a in self.answered.values())


async def add_burst(caller: Any, burst: Burst, keys: Sequence[str], total: int, in_flight: int,
                    rng: random.Random) -> None:
    """Sends up to ``total`` Adds round-robin over ``keys``, ``in_flight`` at a time (until it is
    cancelled); records each one before it is sent and each answer as it comes."""
    window = asyncio.Semaphore(in_flight)

    async def one(key: str, amount: int) -> None:
        try:
            answer = await caller.send_message(Add(amount=amount), AgentId("counter", key))
        except Exception as e:  # noqa: BLE001 - after the kill nothing is answered; recorded
            burst.errors.append(f"{key} +{amount}: {type(e).__name__}: {e}")
        else:
            if isinstance(answer, Count) and answer.key == key:
                burst.answered.setdefault(key, []).append(amount)
                burst.counts.setdefault(key, []).append(answer.count)
            else:
                burst.errors.append(f"{key} +{amount}: unexpected answer {answer!r}")
        finally:
            window.release()
            async with burst.progress:
                burst.progress.notify_all()

    for i in range(total):
        await window.acquire()
        key = keys[i % len(keys)]
        amount = rng.randint(1, 1000)
        burst.sent.setdefault(key, []).append(amount)
        burst.calls.append(asyncio.create_task(one(key, amount)))


async def give_up_on_calls(burst: Burst, grace: float = 2.0) -> None:
    """After the kill: the calls still out are never answered (the host died with the runtime,
    and AutoGen's worker never fails a call whose stream broke). Answers already on their way
    get ``grace`` seconds to arrive; the rest are cancelled."""
    if not burst.calls:
        return
    _, pending = await asyncio.wait(burst.calls, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def test_counter_keeps_every_answered_add_across_kill_9(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """200 Adds with random amounts to four counter agents, eight in flight at any time. Once
    100 are answered the runtime gets SIGKILL. Restarted on the same state file, each agent's
    count is at least the sum of the Adds answered to its key and at most the sum of all sent —
    exactly the answered ones plus some of the unanswered (the store holds whole checkpoints).
    The store's row for each key is the readable JSON {"count": N}, equal to what Get says and to
    what `agentd state save` prints."""
    database = tmp_path / "state" / "agents.db"
    keys = ["a", "b", "c", "d"]
    burst = Burst()
    first = start_runtime([COUNTER], ini_extra=state_ini(database))

    async def before_the_kill() -> None:
        async with worker(first.address) as caller:
            add_counter_serializers(caller)
            sender = asyncio.create_task(add_burst(caller, burst, keys, total=200, in_flight=8,
                                                   rng=random.Random(20261207)))

            async def half_answered() -> None:
                async with burst.progress:
                    await burst.progress.wait_for(lambda: burst.answer_count >= 100 or sender.done())

            try:
                await asyncio.wait_for(half_answered(), DEADLINE)
            except asyncio.TimeoutError:
                raise AssertionError(f"only {burst.answer_count} of 200 Adds answered within {DEADLINE}s; "
                                     f"errors: {burst.errors[:5]}") from None
            assert not sender.done(), f"the burst ended before the kill: {burst.errors[:5]}"
            kill_hard(first)
            sender.cancel()  # it may wait for a slot that never frees
            await asyncio.gather(sender, return_exceptions=True)
            await give_up_on_calls(burst)

    run(before_the_kill())
    sent = sum(len(v) for v in burst.sent.values())
    assert burst.answer_count >= 100, burst.errors[:5]
    assert sent < 200, "the kill came after the whole burst was sent"
    for key, counts in burst.counts.items():
        assert counts == sorted(counts), f"{key}: answered counts went down before the kill: {counts}"

    stored_after_kill = {key: stored_state(database, "counter", key) for key in keys}
    second = start_runtime([COUNTER], ini_extra=state_ini(database))

    async def after_the_restart() -> Dict[str, Count]:
        async with worker(second.address) as caller:
            add_counter_serializers(caller)
            return {key: await call(caller, Get(), AgentId("counter", key)) for key in keys}

    restored = run(after_the_restart())
    for key in keys:
        answered = sum(burst.answered.get(key, []))
        unanswered = burst.unanswered(key)
        count = restored[key].count
        assert restored[key] == Count(count=count, key=key)
        assert answered <= count <= answered + sum(unanswered), (
            f"{key}: count {count} after the restart; answered Adds sum to {answered}, "
            f"unanswered ones {unanswered}"
        )
        possible = {answered + sum(s) for n in range(len(unanswered) + 1) for s in itertools.combinations(unanswered, n)}
        assert count in possible, f"{key}: {count} is not the answered sum {answered} plus some of {unanswered}"
        assert stored_after_kill[key] == {"count": count}, f"{key}: the store held {stored_after_kill[key]!r}"
        assert state_save(second.address, f"counter/{key}") == json.dumps({"count": count})
    stop_gracefully(second)


def test_counter_restore_refuses_a_state_that_is_not_its_json(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """A stored state the counter cannot read (written behind the runtime's back) keeps that one
    agent from starting: its RPCs fail fast with an error naming the agent and what to do, the
    plugin's error line says why, the stored bytes are left alone, and other keys still work."""
    database = tmp_path / "state" / "agents.db"
    setup = start_runtime([COUNTER], ini_extra=state_ini(database))

    async def seed() -> None:
        async with worker(setup.address) as caller:
            add_counter_serializers(caller)
            assert await call(caller, Add(amount=3), AgentId("counter", "bad")) == Count(count=3, key="bad")

    run(seed())
    stop_gracefully(setup)
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute("UPDATE agent_state SET state = ? WHERE agent_type = 'counter' AND agent_key = 'bad'",
                       (b'{"count": "three"}',))
    finally:
        db.close()
    restarted = start_runtime([COUNTER], ini_extra=state_ini(database))
    log = RuntimeLog(restarted.runtime)

    async def refused() -> None:
        async with worker(restarted.address) as caller:
            add_counter_serializers(caller)
            with pytest.raises(Exception) as error:
                await call(caller, Get(), AgentId("counter", "bad"))
            text = str(error.value)
            assert "counter/bad" in text and "AGENTD_INVALID_ARGUMENT" in text and "agentd state" in text, text
            assert await call(caller, Add(amount=1), AgentId("counter", "good")) == Count(count=1, key="good")

    run(refused())
    lines = [e for e in log.poll() if e.message.startswith("counter: refusing a state")]
    assert len(lines) == 1, log.tail()
    assert "is not an integer" in lines[0].message and lines[0].meta.get("agent.id") == "counter/bad", lines[0]
    assert stored_state(database, "counter", "bad") == {"count": "three"}


# --- The Swift tally ------------------------------------------------------------------------------


@dataclass
class TallyAdd:
    item: str
    amount: int


@dataclass
class TallyGet:
    pass


@dataclass
class TallyTotals:
    key: str
    totals: Dict[str, int]
    total: int


def add_tally_serializers(runtime: Any) -> None:
    for t in (TallyAdd, TallyGet, TallyTotals):
        runtime.add_message_serializer(try_get_known_serializers_for_type(t))


def test_tally_keeps_its_totals_across_a_restart(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """TallyAdds as RPCs and as events on ``tally-items`` to two keys; SIGTERM (exit 0); a new
    runtime on the same state file answers TallyGet with the same totals, per key, and
    `agentd state save` prints the stored JSON, keys sorted."""
    database = tmp_path / "state" / "agents.db"
    first = start_runtime([TALLY], ini_extra=state_ini(database))
    expected = {
        "shop": TallyTotals(key="shop", totals={"apples": 5, "pears": 2}, total=7),
        "näive ✓": TallyTotals(key="näive ✓", totals={"plums": 1}, total=1),
    }

    async def fill() -> None:
        async with worker(first.address) as caller:
            add_tally_serializers(caller)
            await call(caller, TallyAdd(item="apples", amount=2), AgentId("tally", "shop"))
            await caller.publish_message(TallyAdd(item="apples", amount=3), TopicId("tally-items", "shop"))
            await caller.publish_message(TallyAdd(item="pears", amount=2), TopicId("tally-items", "shop"))
            await call(caller, TallyAdd(item="plums", amount=1), AgentId("tally", "näive ✓"))
            # Same stream, so after the events: the agent has handled them when this is answered.
            for key, totals in expected.items():
                assert await call(caller, TallyGet(), AgentId("tally", key)) == totals

    run(fill())
    stop_gracefully(first)
    second = start_runtime([TALLY], ini_extra=state_ini(database))

    async def read_back() -> None:
        async with worker(second.address) as caller:
            add_tally_serializers(caller)
            for key, totals in expected.items():
                assert await call(caller, TallyGet(), AgentId("tally", key)) == totals

    run(read_back())
    assert state_save(second.address, "tally/shop") == '{"totals":{"apples":5,"pears":2}}'
    assert stored_state(database, "tally", "shop") == {"totals": {"apples": 5, "pears": 2}}


def test_tally_keeps_its_totals_across_idle_retirement(start_runtime: RuntimeLauncher, tmp_path: Path) -> None:
    """``[agents] idle_seconds = 0.2``: after a TallyAdd the agent is retired once idle — the
    plugin's debug line "released" appears, with no message sent meanwhile — and the next
    TallyGet activates it again ("created", then "restored 2 item(s)") with the same totals.
    Twice, with the process never restarted. An agent kept busy (a message every 20 ms) is not
    retired."""
    database = tmp_path / "state" / "agents.db"
    setup = start_runtime([TALLY], ini_extra=state_ini(database, idle_seconds=0.2), log_level="debug")
    log = RuntimeLog(setup.runtime)
    pid = setup.runtime.proc.pid
    meta = {"agent_id": "tally/cart"}

    def lines(message: str) -> int:
        return len(log.find(message, **meta))

    async def scenario() -> None:
        async with worker(setup.address) as caller:
            add_tally_serializers(caller)
            cart = AgentId("tally", "cart")
            await call(caller, TallyAdd(item="tea", amount=1), cart)
            await call(caller, TallyAdd(item="milk", amount=2), cart)
            assert lines("tally cart: created") == 1
            for round_ in (1, 2):
                await log.wait_for("tally cart: released with 2 item(s)", count=round_, **meta)
                assert lines("tally cart: created") == round_, "activated again before any message"
                answer = await call(caller, TallyGet(), cart)
                assert answer == TallyTotals(key="cart", totals={"tea": 1, "milk": 2}, total=3)
                assert lines("tally cart: created") == round_ + 1
                assert lines("tally cart: restored 2 item(s)") == round_

            # Busy (resident since the last TallyGet): a message every 20 ms for 0.6 s, three
            # idle periods, keeps it resident.
            for _ in range(30):
                await call(caller, TallyGet(), cart)
                await asyncio.sleep(0.02)  # the pace of the traffic, not a wait for a condition
            assert lines("tally cart: released with 2 item(s)") == 2, "retired while messages kept coming"
            assert lines("tally cart: created") == 3

    run(scenario())
    assert setup.runtime.proc.pid == pid and setup.runtime.proc.poll() is None
    assert stored_state(database, "tally", "cart") == {"totals": {"milk": 2, "tea": 1}}
