"""Acknowledged delivery between our runtimes and our host, tried the way a user would.

An external ``agentd host`` on a fixed port, and two ``agentd run`` runtimes joined to it: the
publisher serves the ``burst`` agent type (Tests/Plugins/DeliveryBurstPlugin), which publishes
numbered events from a thread of its own at a steady rate; the subscriber serves ``burst-tally``
(Tests/Plugins/DeliveryTallyPlugin), which records which numbers arrived, how many twice, how many
out of order. The burst numbers only the publishes ``publish`` accepted, with no gap, so "every
accepted publish arrived exactly once, in order" is: missing 0, duplicates 0, out of order 0,
nothing beyond. Everything is driven from the shell's side, with ``agentd send`` (Burst,
BurstStatus, Tally), and the host is killed with SIGKILL in the middle of the burst and started
again on the same port a second later:

- ``test_host_killed_mid_burst_loses_nothing``: both runtimes come back on their own.
- ``test_subscriber_back_after_the_publisher_flushed``: the subscriber runtime is stopped
  (SIGSTOP) while the host is down and continued a second after the host is back, so the
  publisher has sent again what was not acknowledged before the subscriber has subscribed: the
  host's late-subscriber window must keep those events and hand them over, in order, once.
- ``test_autogen_worker_unchanged_beside_acknowledged_runtimes``: AutoGen's Python worker on the
  same host receives our runtime's publishes, publishes to our runtime, and makes and answers RPCs.
- ``test_unacknowledged_kill_runs``: the same kill with ``[runtime] acknowledged_delivery = false``;
  it only has to run (losses are possible then, and printed for contrast, not asserted).

The default is the scenario of issue 18: 20,000 publishes at 4,000/s, the kill 1.5 s in, the host
back 1 s later. ``INTEROP_DELIVERY_SCALE`` (e.g. 0.5) scales the count for a slow machine; the
rate stays, so the kill still falls in the middle of the burst (the scale may not make the burst
end before the host is back).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest
from autogen_core import AgentId, MessageContext, RoutedAgent, TopicId, TypeSubscription, event, rpc
from autogen_core import try_get_known_serializers_for_type

from cluster_support import agentd_cli
from conftest import ChildProcess, HostProcess, agentd_path, host_kind
from interop_support import DEADLINE, run, worker
from runtime_support import RuntimeLog, RuntimeProcess, runtime_folder, write_ini

pytestmark = pytest.mark.agentd_only  # the feature is our host's and our runtime's

BURST = "libDeliveryBurstPlugin.so"
TALLY = "libDeliveryTallyPlugin.so"
TEST_AGENTS = "libTestAgentsPlugin.so"

RATE = 4_000
COUNT = int(20_000 * float(os.environ.get("INTEROP_DELIVERY_SCALE", "1")))
KILL_AFTER = 1.5  # seconds into the burst
DOWN_FOR = 1.0  # seconds the host stays dead
if COUNT / RATE <= KILL_AFTER + DOWN_FOR:
    raise pytest.UsageError(
        f"INTEROP_DELIVERY_SCALE makes the burst {COUNT / RATE:.2f} s long: it must outlast the kill at "
        f"{KILL_AFTER} s and the host's return {DOWN_FOR} s later"
    )

#: How far ahead the burst is told to start: an `agentd send` round trip (a process start) takes
#: a moment, and the kill must still fall KILL_AFTER s into the burst.
START_LEAD = 1.0
#: How long the tally may stay unchanged, the burst being done, before the test stops waiting
#: for the rest (a runtime reconnects within ~1.5 s of the host's return; its backoff is capped at 5 s).
STALL = 6.0
#: How long a burst may take to be delivered in all, after its last publish.
SETTLE_DEADLINE = 30.0
#: The runtime's count of its publishes the host acknowledged.
ACKNOWLEDGED = "agentd_runtime_publishes_acknowledged_total"
#: What a runtime logs once it has registered again with a host that came back.
RECONNECTED = "reconnected to the host"
#: `agentd send`'s error while the host does not know an agent type (yet).
NOT_SERVED = "is not registered with the host"


METRICS_ON = re.compile(r"^metrics on (http://\S+/metrics)\s*$")


def scrape(url: str, name: str) -> float:
    """The value of the unlabelled metric ``name`` at ``url`` (0 when it is not there yet)."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode("utf-8")
    for line in text.splitlines():
        metric, _, value = line.partition(" ")
        if metric == name:
            return float(value)
    return 0.0


def wait_metric(url: str, name: str, at_least: float, deadline: float = DEADLINE) -> float:
    """Polls ``name`` at ``url`` until it reaches ``at_least``; returns it (fails at the deadline)."""
    end = time.monotonic() + deadline
    while True:
        value = scrape(url, name)
        if value >= at_least:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{name} at {url} is {value:g} after {deadline} s, not {at_least:g} or more")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- The processes ---------------------------------------------------------------------------------


def metrics_url(process: ChildProcess) -> str:
    """The metrics address a host or runtime printed (``metrics on http://HOST:PORT/metrics``),
    among the lines it printed so far or the next ones."""
    for line in process.stdout_lines:
        match = METRICS_ON.match(line)
        if match:
            return match.group(1)
    return process.wait_line(METRICS_ON, "metrics on http://HOST:PORT/metrics").group(1)


@dataclass
class TallyReport:
    """DeliveryTallyPlugin's answer to Tally: what the tests read, and what AutoGen's worker decodes."""

    run: str
    received: int
    distinct: int
    duplicates: int
    out_of_order: int
    malformed: int
    of: int
    missing: int
    first_missing: List[int]
    beyond: int
    first_ns: int
    last_ns: int


class DeliveryRig:
    """A host on a fixed port (killed and restarted by the tests) and the runtimes joined to it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.hosts: List[HostProcess] = []
        self.runtimes: List[RuntimeProcess] = []
        self.killed: List[HostProcess] = []

    # Hosts

    def start_host(self) -> HostProcess:
        agentd = agentd_path()
        if not (agentd.is_file() and os.access(agentd, os.X_OK)):
            pytest.fail(f"agentd binary not found at {agentd}: build it (swift build) or set AGENTD", pytrace=False)
        host = HostProcess([str(agentd), "host", "--listen", self.address, "--metrics-listen", "127.0.0.1:0"])
        self.hosts.append(host)
        host.metrics_url = metrics_url(host)  # type: ignore[attr-defined]
        return host

    @property
    def host(self) -> HostProcess:
        return self.hosts[-1]

    def kill_host(self) -> None:
        """SIGKILL, and wait until it is gone."""
        host = self.host
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait(timeout=10)
        self.killed.append(host)

    # Runtimes

    def start_runtime(self, plugins: List[str], *, acknowledged: Optional[bool] = None) -> RuntimeProcess:
        """``agentd run`` with copies of ``plugins``, joined to the host by ``[runtime] host``;
        ``acknowledged`` sets ``[runtime] acknowledged_delivery`` (None: the default)."""
        directory, _ = runtime_folder(self.base, f"run{len(self.runtimes)}-", plugins)
        runtime_section = f"[runtime]\nhost = {self.address}\nmetrics_listen = 127.0.0.1:0\n"
        if acknowledged is not None:
            runtime_section += f"acknowledged_delivery = {'true' if acknowledged else 'false'}\n"
        ini = directory / "agentd.ini"
        write_ini(ini, extra=runtime_section)
        runtime = RuntimeProcess([str(agentd_path()), "run", "--config", str(ini)], cwd=directory, embedded=False)
        self.runtimes.append(runtime)
        runtime.metrics_url = metrics_url(runtime)  # type: ignore[attr-defined]
        return runtime

    # Agents, from the shell's side

    def send(self, agent: str, message_type: str, payload: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        """``agentd send`` to the host; the answer's JSON (the test fails on an error answer)."""
        result = agentd_cli("send", "--host", self.address, "--agent", agent, "--type", message_type,
                            "--json", json.dumps(payload), timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"agentd send {message_type} to {agent} failed:\n{result}")
        answer_type, _, text = result.stdout.strip().partition(" ")
        return dict(json.loads(text), _type=answer_type)

    def start_burst(self, run_id: str, count: int, rate: int, lead: float = 0.0) -> float:
        """Starts burst run ``run_id`` on the publisher, its first publish ``lead`` seconds from
        now; returns that time (time.monotonic, the plugin's CLOCK_MONOTONIC)."""
        start = time.monotonic() + lead
        self.send(f"burst/{run_id}", "Burst", {"count": count, "rate": rate, "run": run_id,
                                               "start_ns": int(start * 1e9)})
        return start

    def tally(self, run_id: str, of: int, deadline: float = 0.0) -> TallyReport:
        answer = self.send_when_served(f"burst-tally/{run_id}", "Tally", {"of": of}, deadline)
        del answer["_type"]
        return TallyReport(**answer)

    def send_when_served(self, agent: str, message_type: str, payload: Dict[str, Any], deadline: float
                         ) -> Dict[str, Any]:
        """``send``, tried again while the host does not know the agent's type yet (a runtime
        registers again a moment after the host is back), until ``deadline`` seconds from now."""
        end = time.monotonic() + deadline
        while True:
            try:
                return self.send(agent, message_type, payload)
            except AssertionError as e:
                if NOT_SERVED not in str(e) or time.monotonic() > end:
                    raise
            time.sleep(0.1)

    def wait_burst_done(self, run_id: str, deadline: float) -> Dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            status = self.send_when_served(f"burst/{run_id}", "BurstStatus", {"run": run_id}, deadline)
            if status["done"]:
                return status
            if time.monotonic() > end:
                raise AssertionError(f"burst {run_id} not done within {deadline} s: {status}")
            time.sleep(0.1)

    def wait_delivered(self, run_id: str, accepted: int) -> TallyReport:
        """Polls the tally until every one of the ``accepted`` numbers has arrived, or until it
        has not changed for STALL seconds (then returns what arrived), within SETTLE_DEADLINE.

        Nothing sent again can come after the last number: a runtime resends what was not
        acknowledged before it sends anything newer, on the same stream, so once 0...accepted-1
        are all in, a duplicate that was coming would have come."""
        end = time.monotonic() + SETTLE_DEADLINE
        last: Optional[TallyReport] = None
        changed = time.monotonic()
        while True:
            tally = self.tally(run_id, accepted, deadline=SETTLE_DEADLINE)
            if tally.missing == 0:
                return tally
            if last is None or tally.received != last.received:
                last, changed = tally, time.monotonic()
            elif time.monotonic() - changed > STALL or time.monotonic() > end:
                return tally
            time.sleep(0.2)

    # The rest

    def report_sections(self) -> Iterable[Tuple[str, str]]:
        def clip(text: str) -> str:
            return "...\n" + text[-20000:] if len(text) > 20000 else text

        for i, host in enumerate(self.hosts):
            yield (f"host #{i} stderr", f"$ {' '.join(host.argv)}\n{clip(host.stderr()) or '(empty)'}")
        for i, runtime in enumerate(self.runtimes):
            yield (f"agentd run #{i} stderr", f"$ {' '.join(runtime.argv)}\nstdout:\n"
                   f"{chr(10).join(runtime.stdout_lines)}\nstderr:\n{clip(runtime.stderr()) or '(empty)'}")

    def stop_all(self) -> List[str]:
        problems: List[str] = []
        for runtime in self.runtimes:
            if runtime.proc.poll() is None:
                runtime.signal_all(signal.SIGCONT)  # a test that failed may have left it stopped
            died, killed = runtime.terminate()
            if died is not None:
                problems.append(f"agentd run exited during the test with status {died}\nstderr:\n{runtime.stderr()}")
            if killed:
                problems.append("agentd run ignored SIGTERM for 10s and was killed")
        for host in self.hosts:
            died, killed = host.terminate()
            if died is not None and host not in self.killed:
                problems.append(f"host exited during the test with status {died}\nstderr:\n{host.stderr()}")
        return problems


@pytest.fixture
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryRig]:
    if host_kind() == "autogen":
        pytest.skip("acknowledged delivery is between our runtime and our host")
    r = DeliveryRig(tmp_path)
    request.node._interop_reports = r.report_sections  # read by conftest's report hook
    yield r
    problems = r.stop_all()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def start_pair(rig: DeliveryRig, acknowledged: Optional[bool] = None) -> Tuple[RuntimeProcess, RuntimeProcess]:
    """The host, then the subscriber and the publisher; returns (publisher, subscriber) once a
    first event has gone from one to the other."""
    rig.start_host()
    subscriber = rig.start_runtime([TALLY], acknowledged=acknowledged)
    publisher = rig.start_runtime([BURST], acknowledged=acknowledged)
    rig.start_burst("warm-up", 1, 0)
    warm = rig.wait_delivered("warm-up", 1)
    assert (warm.missing, warm.duplicates) == (0, 0), warm
    return publisher, subscriber


def kill_mid_burst(rig: DeliveryRig, run_id: str, *,
                   late: Optional[Tuple[RuntimeProcess, RuntimeProcess]] = None) -> Tuple[Dict[str, Any], TallyReport]:
    """The scenario: a burst of COUNT at RATE/s; the host killed KILL_AFTER s in and started again
    on its port DOWN_FOR s later. With ``late`` = (publisher, subscriber), the subscriber runtime
    is stopped (SIGSTOP) right after the kill and continued one second after the host is back,
    and not before the publisher has reconnected (so the publisher has sent again what was not
    acknowledged before the subscriber subscribes again). Returns the burst's final status and
    the tally once everything accepted has arrived (or stopped arriving)."""
    started = rig.start_burst(run_id, COUNT, RATE, lead=START_LEAD)
    assert time.monotonic() < started + KILL_AFTER, (
        f"starting the burst took {time.monotonic() - started + START_LEAD:.1f} s: the kill could not fall "
        f"{KILL_AFTER} s into it (is the machine overloaded?)")
    pause_until(started + KILL_AFTER)
    rig.kill_host()
    killed_at = time.monotonic()
    assert rig.killed[-1].proc.returncode == -signal.SIGKILL
    if late is not None:
        publisher, subscriber = late
        publisher_log = RuntimeLog(publisher)
        reconnections = len(publisher_log.find(RECONNECTED))
        subscriber.signal_all(signal.SIGSTOP)
    pause_until(killed_at + DOWN_FOR)
    rig.start_host()
    if late is not None:
        back = time.monotonic()
        end = back + DEADLINE
        while len(publisher_log.find(RECONNECTED)) == reconnections:
            assert time.monotonic() < end, f"the publisher did not reconnect within {DEADLINE} s of the host's return"
            time.sleep(0.02)
        pause_until(back + 1.0)
        subscriber.signal_all(signal.SIGCONT)
    status = rig.wait_burst_done(run_id, deadline=COUNT / RATE + 20)
    # The kill must have fallen in the middle of the burst, or the test proved nothing.
    assert status["finished_ns"] / 1e9 > killed_at + DOWN_FOR, (
        f"the burst ended {status['finished_ns'] / 1e9 - killed_at:.2f} s after the kill, before the host was back")
    return status, rig.wait_delivered(run_id, status["accepted"])


def pause_until(when: float) -> None:
    """The scenario's own timing (the kill 1.5 s in, the host back 1 s later), not a wait for a condition."""
    remaining = when - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def assert_exactly_once_in_order(status: Dict[str, Any], tally: TallyReport) -> None:
    assert status["accepted"] > 0, status
    summary = (f"{status['accepted']:,} accepted ({status['refused']:,} refused) of {status['count']:,}; "
               f"tally: {tally}")
    assert tally.missing == 0, f"{tally.missing:,} accepted publishes never arrived (first {tally.first_missing}): {summary}"
    assert tally.duplicates == 0, f"{tally.duplicates:,} arrived twice: {summary}"
    assert tally.out_of_order == 0, f"{tally.out_of_order:,} arrived out of order: {summary}"
    assert (tally.beyond, tally.malformed) == (0, 0), summary
    assert tally.received == tally.distinct == status["accepted"], summary


# --- The kill ------------------------------------------------------------------------------------------


def report(what: str, status: Dict[str, Any], tally: TallyReport, publisher: RuntimeProcess,
           subscriber: RuntimeProcess) -> None:
    """One line for ``-s`` / ``-rP``: what was accepted, lost, doubled, and what the runtimes counted."""
    def metric(runtime: RuntimeProcess, name: str) -> str:
        return f"{scrape(runtime.metrics_url, name):g}"  # type: ignore[attr-defined]

    print(f"\n{what}: {status['accepted']:,} accepted, {status['refused']:,} refused; lost {tally.missing:,}, "
          f"duplicated {tally.duplicates:,}, out of order {tally.out_of_order:,}; publisher: acknowledged "
          f"{metric(publisher, ACKNOWLEDGED)}, resent {metric(publisher, 'agentd_runtime_publishes_resent_total')}; "
          f"subscriber: duplicates dropped {metric(subscriber, 'agentd_runtime_events_duplicates_dropped_total')}")


def test_host_killed_mid_burst_loses_nothing(rig: DeliveryRig) -> None:
    publisher, subscriber = start_pair(rig)
    status, tally = kill_mid_burst(rig, "kill")
    report("acknowledged, host killed", status, tally, publisher, subscriber)
    assert_exactly_once_in_order(status, tally)
    # Acknowledgements were in force: the host acknowledged every publish (the warm-up's too).
    wait_metric(publisher.metrics_url, ACKNOWLEDGED, status["accepted"] + 1)  # type: ignore[attr-defined]


def test_subscriber_back_after_the_publisher_flushed(rig: DeliveryRig) -> None:
    publisher, subscriber = start_pair(rig)
    status, tally = kill_mid_burst(rig, "late", late=(publisher, subscriber))
    report("acknowledged, subscriber back late", status, tally, publisher, subscriber)
    assert_exactly_once_in_order(status, tally)
    wait_metric(publisher.metrics_url, ACKNOWLEDGED, status["accepted"] + 1)  # type: ignore[attr-defined]
    # The restarted host handed the subscriber events it had kept for it.
    wait_metric(rig.host.metrics_url, "agentd_host_events_delivered_late_total", 1)  # type: ignore[attr-defined]


def test_unacknowledged_kill_runs(rig: DeliveryRig) -> None:
    """The contrast: the same kill without acknowledgements. Losses are possible; this only checks
    that the runtimes take the setting and come through it (what was lost is printed)."""
    publisher, subscriber = start_pair(rig, acknowledged=False)
    status, tally = kill_mid_burst(rig, "unacknowledged")
    report("unacknowledged, host killed", status, tally, publisher, subscriber)
    assert status["done"] and status["attempted"] == COUNT, status
    assert tally.malformed == 0 and tally.beyond == 0, tally
    assert scrape(publisher.metrics_url, ACKNOWLEDGED) == 0  # type: ignore[attr-defined]


# --- AutoGen's worker beside our runtimes ------------------------------------------------------------


@dataclass
class BurstEvent:
    """DeliveryBurstPlugin's event, as AutoGen's worker decodes it (the bare class name is the type)."""

    run: str
    seq: int


@dataclass
class Tally:
    """DeliveryTallyPlugin's RPC."""

    of: int


@dataclass
class Echo:
    """TestAgentsPlugin's relay sends Echo {"text"}; the Python agent answers with an Echo."""

    text: str


class BurstListener(RoutedAgent):
    def __init__(self, seen: List[int]) -> None:
        super().__init__("records the burst's numbers")
        self._seen = seen

    @event
    async def on_burst_event(self, message: BurstEvent, ctx: MessageContext) -> None:
        self._seen.append(message.seq)


class PyEcho(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("answers Echo")

    @rpc
    async def on_echo(self, message: Echo, ctx: MessageContext) -> Echo:
        return Echo(text=f"{message.text} (answered by python {self.id.key} for {ctx.sender})")


def test_autogen_worker_unchanged_beside_acknowledged_runtimes(rig: DeliveryRig) -> None:
    rig.start_host()
    rig.start_runtime([TALLY])
    rig.start_runtime([BURST, TEST_AGENTS])
    seen: List[int] = []
    count = 500

    async def scenario() -> None:
        async with worker(rig.address) as py:
            # Every message the host sends AutoGen's worker, as the worker sees it: one of
            # AutoGen's own kinds, never something it cannot place (an acknowledgement).
            kinds: List[Optional[str]] = []
            conn = py._host_connection  # noqa: SLF001
            assert conn is not None
            original_recv = conn.recv

            async def recording_recv() -> Any:
                message = await original_recv()
                kinds.append(message.WhichOneof("message"))
                return message

            conn.recv = recording_recv  # type: ignore[method-assign]
            for cls in (BurstEvent, Tally, TallyReport, Echo):
                py.add_message_serializer(try_get_known_serializers_for_type(cls))
            await BurstListener.register(py, "py-burst-listener", lambda: BurstListener(seen))
            await py.add_subscription(TypeSubscription("burst", "py-burst-listener"))
            await PyEcho.register(py, "py-echo", PyEcho)

            # Our runtime publishes: our tally and AutoGen's agent each get every event once, in order.
            await asyncio.to_thread(rig.send, "burst/autogen", "Burst", {"count": count, "rate": 2_000, "run": "autogen"})
            status = await asyncio.to_thread(rig.wait_burst_done, "autogen", 20.0)
            assert status["accepted"] == count, status
            ours = await asyncio.to_thread(rig.wait_delivered, "autogen", count)
            assert (ours.missing, ours.duplicates, ours.out_of_order, ours.received) == (0, 0, 0, count), ours
            end = time.monotonic() + DEADLINE
            while len(seen) < count and time.monotonic() < end:
                await asyncio.sleep(0.05)
            assert seen == list(range(count)), f"AutoGen's agent got {len(seen)} events: {seen[:10]}...{seen[-10:]}"

            # AutoGen's worker calls our agent, and gets the answer.
            tally_answer = await asyncio.wait_for(
                py.send_message(Tally(of=count), AgentId("burst-tally", "autogen")), DEADLINE)
            assert isinstance(tally_answer, TallyReport) and (tally_answer.received, tally_answer.missing) == (count, 0), \
                tally_answer

            # AutoGen's worker publishes (its event ids are its own uuids): our runtime takes each once.
            for seq in range(100):
                await py.publish_message(BurstEvent(run="from-python", seq=seq), TopicId("burst", "from-python"))
            theirs = await asyncio.to_thread(rig.wait_delivered, "from-python", 100)
            assert (theirs.missing, theirs.duplicates, theirs.out_of_order, theirs.received) == (0, 0, 0, 100), \
                theirs

            # Our runtime's agent calls AutoGen's (relay → py-echo), and gets its answer.
            answer = await asyncio.to_thread(
                rig.send, "relay/r", "Relay", {"to_type": "py-echo", "to_key": "k", "text": "hi"})
            assert answer["_type"] == "Echo" and answer["text"].startswith("hi (answered by python k"), answer
            assert None not in kinds and kinds.count("cloudEvent") >= count, \
                f"AutoGen's worker received {len(kinds)} messages, of kinds {sorted(set(map(str, kinds)))}"

    run(scenario())


def test_agentd_publish_exits_once_the_host_acknowledged(rig: DeliveryRig) -> None:
    """``agentd publish`` to our host exits 0 once the host has acknowledged the event — handed
    to every subscriber, our runtime having confirmed it — and with status 1, saying so, when the
    host does not acknowledge it in time: here its only subscriber, one of our runtimes, is
    frozen and cannot confirm. The event is not lost for that: it arrives once the runtime runs."""
    rig.start_host()
    subscriber = rig.start_runtime([TALLY])
    assert rig.tally("cli", of=0, deadline=DEADLINE).received == 0  # served: the subscription is in

    def publish(seq: int, ack_timeout: float) -> Any:
        return agentd_cli("publish", "--host", rig.address, "--topic", "burst/cli", "--type", "BurstEvent",
                          "--json", json.dumps({"run": "cli", "seq": seq}), "--ack-timeout", str(ack_timeout))

    first = publish(0, 10)
    assert first.returncode == 0, first.stderr
    assert rig.tally("cli", of=1).received == 1, "acknowledged: the subscriber has it"

    subscriber.signal_all(signal.SIGSTOP)
    try:
        second = publish(1, 1)
    finally:
        subscriber.signal_all(signal.SIGCONT)
    assert second.returncode == 1, (second.returncode, second.stderr)
    assert f"the host at {rig.address} did not acknowledge the event within 1.0 seconds" in second.stderr, second.stderr
    report = rig.wait_delivered("cli", 2)
    assert (report.received, report.missing, report.duplicates) == (2, 0, 0), report
