"""Overload admission on a `Clock` (issue 25): a group commit whose oldest write is too old refuses new writes.

The `BatchWriter` here runs its batches through a stand-in for `Database.run`
that answers when the test says (a batch that has not committed yet): what
is tested is its bookkeeping of who waits since when, and the rule read
from it; the real database is in ``tests.events.test_overload`` and
``tests.e2e.test_overload``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from umoc.config import ConfigError, parse_config
from umoc.domain.overload import (
    LAG_INTERVAL,
    MAX_RETRY_AFTER,
    OVERLOADED,
    OverloadedError,
    ReactorLag,
    WriteAdmission,
)
from umoc.metrics import Metrics
from umoc.storage.batching import BatchWriter

BOUND = 0.5


class Batches:
    """`Database.run` for the writer: each batch waits until `commit` answers it."""

    def __init__(self) -> None:
        self.pending: list[tuple[defer.Deferred[Any], list[Any]]] = []

    def run(self, desc: str, fn: Any, items: list[Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((d, items))
        return d

    def commit(self) -> None:
        d, items = self.pending.pop(0)
        d.callback([f"ok {item.args[0]}" for item in items])


class OverloadAdmissionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.batches = Batches()
        self.writer = BatchWriter(self.batches.run, now=self.clock.seconds)
        self.metrics = Metrics()
        self.admission = WriteAdmission(self.writer.oldest_wait, BOUND, self.clock, self.metrics)
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def write(self, n: int) -> defer.Deferred[Any]:
        return self.writer.run("test.write", 0, lambda txn, n: n, n)

    def refused(self, edge: str = "socket") -> float:
        return self.metrics.registry.get_sample_value("umoc_overload_refusals_total", {"edge": edge}) or 0

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get("log_namespace") == "umoc.domain.overload"]

    def test_an_idle_writer_waits_for_nothing_and_admits(self) -> None:
        self.assertEqual(self.writer.oldest_wait(), 0)
        self.assertIsNone(self.admission.refusal("socket"))

    def test_a_batch_older_than_the_bound_refuses_new_writes_until_it_drains(self) -> None:
        first = self.write(1)  # starts at once: the running batch
        self.clock.advance(0.3)
        second = self.write(2)  # queued behind it
        self.assertAlmostEqual(self.writer.oldest_wait(), 0.3)
        self.assertIsNone(self.admission.refusal("socket"), "under the bound: admitted")

        self.clock.advance(0.3)
        self.assertAlmostEqual(self.writer.oldest_wait(), 0.6, msg="the running batch's write is the oldest")
        error = self.admission.refusal("socket")
        self.assertIsInstance(error, OverloadedError)
        assert error is not None
        self.assertEqual(error.payload(), {"message": OVERLOADED, "code": "overloaded", "retry_after": 0.6})
        self.assertEqual((error.status, error.headers), (503, {"Retry-After": "1"}))
        self.assertRaises(OverloadedError, self.admission.check, "bot")
        self.assertEqual((self.refused("socket"), self.refused("bot")), (1, 1))

        # The first batch commits: the queued write (asked for 0.3 s ago) now runs, and new writes are admitted.
        self.batches.commit()
        self.assertEqual(self.successResultOf(first), "ok 1")
        self.assertAlmostEqual(self.writer.oldest_wait(), 0.3)
        self.assertIsNone(self.admission.refusal("socket"))
        self.batches.commit()
        self.assertEqual(self.successResultOf(second), "ok 2")
        self.assertEqual(self.writer.oldest_wait(), 0)
        self.assertEqual(self.refused("socket"), 1, "admissions are not counted")

    def test_a_stuck_batch_with_nothing_queued_behind_it_still_counts(self) -> None:
        self.write(1)
        self.clock.advance(BOUND + 0.01)
        self.assertEqual(self.batches.pending[0][1][0].args, (1,), "only the running batch")
        self.assertIsNotNone(self.admission.refusal("socket"))

    def test_the_most_backed_up_lane_decides(self) -> None:
        writer = BatchWriter(self.batches.run, lanes=3, now=self.clock.seconds)
        writer.run("a", 0, lambda txn, n: n, 0)
        self.clock.advance(0.2)
        writer.run("b", 1, lambda txn, n: n, 1)
        self.clock.advance(0.1)
        self.assertAlmostEqual(writer.oldest_wait(), 0.3)
        self.batches.commit()  # lane 0 done: lane 1's write is the oldest left
        self.assertAlmostEqual(writer.oldest_wait(), 0.1)

    def test_retry_after_is_the_wait_between_the_bound_and_its_cap(self) -> None:
        self.write(1)
        self.clock.advance(0.51)
        self.assertEqual(self.admission.refusal("socket").payload()["retry_after"], 0.5)  # type: ignore[union-attr]
        self.clock.advance(2)
        error = self.admission.refusal("socket")
        assert error is not None
        self.assertEqual((error.retry_after, error.headers["Retry-After"]), (2.5, "3"))
        self.clock.advance(60)
        self.assertEqual(self.admission.refusal("socket").retry_after, MAX_RETRY_AFTER)  # type: ignore[union-attr]

    def test_a_bound_of_zero_admits_everything(self) -> None:
        admission = WriteAdmission(self.writer.oldest_wait, 0, self.clock, self.metrics)
        self.write(1)
        self.clock.advance(3600)
        self.assertIsNone(admission.refusal("socket"))

    def test_refusals_warn_at_most_once_per_interval_and_recovery_is_logged_once(self) -> None:
        self.write(1)
        self.clock.advance(1)
        for _ in range(100):
            self.admission.refusal("socket")
        self.clock.advance(5)
        for _ in range(100):
            self.admission.refusal("socket")
        self.assertEqual(len(self.warnings()), 1, "one warning for 200 refusals within 10 s")
        self.clock.advance(5)
        self.admission.refusal("socket")
        warnings = self.warnings()
        self.assertEqual(len(warnings), 2)
        self.assertEqual(warnings[1]["count"], 200, "the refusals since the last warning")
        self.batches.commit()
        self.assertIsNone(self.admission.refusal("socket"))
        self.assertIsNone(self.admission.refusal("socket"))
        recovered = self.warnings()[2:]
        self.assertEqual([e["count"] for e in recovered], [201], "one line when writes are admitted again")
        self.assertEqual(self.refused("socket"), 201)


class OverloadConfigTests(unittest.TestCase):
    def test_the_bound_defaults_to_half_a_second_and_takes_a_duration_zero_or_more(self) -> None:
        self.assertEqual(parse_config({}).server.overload_wait, 0.5)
        self.assertEqual(parse_config({"server": {"overload_wait": "250ms"}}).server.overload_wait, 0.25)
        self.assertEqual(parse_config({"server": {"overload_wait": 0}}).server.overload_wait, 0)
        with self.assertRaises(ConfigError) as caught:
            parse_config({"server": {"overload_wait": -1}})
        self.assertIn("server.overload_wait", str(caught.exception))


class ReactorLagTests(unittest.TestCase):
    """`ReactorLag` on a `Clock`: a reactor running late is seen as it happens, and forgotten once it catches up."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.lag = ReactorLag(self.clock)
        self.metrics = Metrics()
        self.admission = WriteAdmission(self.lag.lag, BOUND, self.clock, self.metrics)

    def test_not_started_it_reads_zero_and_schedules_nothing(self) -> None:
        self.clock.advance(5)
        self.assertEqual(self.lag.lag(), 0.0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_reactor_on_time_has_no_lag(self) -> None:
        self.lag.start()
        for _ in range(20):
            self.clock.advance(LAG_INTERVAL)
        self.assertEqual(self.lag.lag(), 0.0)
        self.assertIsNone(self.admission.refusal("socket"))

    def test_a_long_pass_is_seen_before_the_timer_runs_and_refuses_writes(self) -> None:
        self.lag.start()
        # A pass over busy connections that has run 0.8 s: the timer due after 0.1 s has not run yet.
        self.clock.rightNow += 0.9
        self.assertAlmostEqual(self.lag.lag(), 0.8)
        refusal = self.admission.refusal("socket")
        assert refusal is not None
        self.assertEqual(refusal.code, "overloaded")
        self.assertEqual(refusal.retry_after, 0.8)

    def test_the_last_lateness_holds_until_the_next_timer_and_recovery_clears_it(self) -> None:
        self.lag.start()
        self.clock.advance(0.7)  # the timer runs 0.6 s late
        self.assertAlmostEqual(self.lag.lag(), 0.6)
        self.assertIsNotNone(self.admission.refusal("socket"))
        self.clock.advance(LAG_INTERVAL)  # the next one runs on time
        self.assertEqual(self.lag.lag(), 0.0)
        self.assertIsNone(self.admission.refusal("socket"))

    def test_stop_cancels_its_timer_and_reads_zero(self) -> None:
        self.lag.start()
        self.clock.advance(0.7)
        self.lag.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.lag.lag(), 0.0)


class TwoBoundsTests(unittest.TestCase):
    """`WriteAdmission` with both rules: either backlog past its own bound refuses; a bound of 0 ignores its backlog."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.wait = self.lag = 0.0

    def admission(self, bound: float, lag_bound: float) -> WriteAdmission:
        return WriteAdmission(lambda: self.wait, bound, self.clock, None, lambda: self.lag, lag_bound)

    def test_either_backlog_past_its_bound_refuses_and_retry_after_is_the_larger(self) -> None:
        admission = self.admission(0.5, 0.2)
        self.wait, self.lag = 0.4, 0.1
        self.assertIsNone(admission.refusal("socket"))
        self.lag = 0.3
        refusal = admission.refusal("socket")
        assert refusal is not None
        self.assertEqual(refusal.retry_after, 0.4, "the larger backlog")
        self.wait, self.lag = 0.9, 0.0
        refusal = admission.refusal("socket")
        assert refusal is not None
        self.assertEqual(refusal.retry_after, 0.9)

    def test_a_bound_of_zero_ignores_its_backlog(self) -> None:
        self.wait, self.lag = 10.0, 10.0
        self.assertIsNone(self.admission(0, 0).refusal("socket"))
        self.assertIsNotNone(self.admission(0, 0.5).refusal("socket"))
        self.assertIsNotNone(self.admission(0.5, 0).refusal("socket"))


class QueuedWriteTests(unittest.TestCase):
    """A write that already waited past the bound behind its socket's earlier events is refused when it starts."""

    def test_its_own_wait_counts_against_the_bound_and_sets_retry_after(self) -> None:
        admission = WriteAdmission(lambda: 0.0, BOUND, Clock())
        self.assertIsNone(admission.refusal("socket", queued=BOUND))
        refusal = admission.refusal("socket", queued=1.2)
        assert refusal is not None
        self.assertEqual((refusal.code, refusal.retry_after), ("overloaded", 1.2))
        self.assertIsNone(WriteAdmission(lambda: 0.0, 0, Clock()).refusal("socket", queued=9.0), "0: off")
