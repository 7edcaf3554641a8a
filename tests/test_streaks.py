"""The streak rule as pure functions of UTC days, with fixed dates."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from twisted.trial import unittest

from umoc.streaks import advance, shown, streak_from_days
from umoc.timefmt import utc_day


def day(text: str) -> int:
    return utc_day(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


class StreakFromDaysTests(unittest.TestCase):
    def test_no_messages_is_no_streak(self) -> None:
        self.assertEqual(streak_from_days([], [], day("2024-03-10")), (0, False))

    def test_one_sided_days_do_not_count(self) -> None:
        self.assertEqual(streak_from_days([day("2024-03-09"), day("2024-03-10")], [], day("2024-03-10")), (0, False))

    def test_three_consecutive_mutual_days_ending_today(self) -> None:
        days = [day("2024-03-08"), day("2024-03-09"), day("2024-03-10")]
        self.assertEqual(streak_from_days(days, days, day("2024-03-10")), (3, True))

    def test_run_ending_yesterday_still_continues(self) -> None:
        days = [day("2024-03-08"), day("2024-03-09")]
        self.assertEqual(streak_from_days(days, days, day("2024-03-10")), (2, True))

    def test_run_ending_two_days_ago_is_broken_but_keeps_its_length(self) -> None:
        days = [day("2024-03-07"), day("2024-03-08")]
        self.assertEqual(streak_from_days(days, days, day("2024-03-10")), (2, False))

    def test_gap_starts_a_new_run(self) -> None:
        a = [day("2024-03-01"), day("2024-03-02"), day("2024-03-03"), day("2024-03-05"), day("2024-03-06")]
        self.assertEqual(streak_from_days(a, a, day("2024-03-06")), (2, True))

    def test_day_counts_only_when_both_sides_wrote_it(self) -> None:
        a = [day("2024-03-08"), day("2024-03-09"), day("2024-03-10")]
        b = [day("2024-03-08"), day("2024-03-10")]
        self.assertEqual(streak_from_days(a, b, day("2024-03-10")), (1, True))

    def test_utc_day_boundary_is_midnight_utc(self) -> None:
        late = datetime(2024, 3, 9, 23, 59, 59, tzinfo=UTC).timestamp()
        early = datetime(2024, 3, 10, 0, 0, 0, tzinfo=UTC).timestamp()
        self.assertEqual(utc_day(early) - utc_day(late), 1)

    def test_across_a_month_and_year_end(self) -> None:
        days = [day("2023-12-30"), day("2023-12-31"), day("2024-01-01")]
        self.assertEqual(streak_from_days(days, days, day("2024-01-02")), (3, True))


class IncrementalStreakTests(unittest.TestCase):
    def test_advance_extends_repeats_and_restarts(self) -> None:
        d = day("2024-03-10")
        self.assertEqual(advance(0, None, d), (1, d))
        self.assertEqual(advance(1, d, d), (1, d))
        self.assertEqual(advance(1, d, d + 1), (2, d + 1))
        self.assertEqual(advance(2, d + 1, d + 3), (1, d + 3))

    def test_shown_hides_nothing_but_expiry(self) -> None:
        d = day("2024-03-10")
        self.assertEqual(shown(4, d, d + 1), (4, True))
        self.assertEqual(shown(4, d, d + 2), (4, False))
        self.assertEqual(shown(0, None, d), (0, False))

    def test_incremental_agrees_with_the_definition(self) -> None:
        rng = random.Random(7)
        start = day("2024-01-01")
        for _ in range(200):
            sent_a: set[int] = set()
            sent_b: set[int] = set()
            streak, last = 0, None
            # Messages in time order: (day, sender); storage sees them the same way.
            events = sorted((start + rng.randrange(30), rng.choice("ab")) for _ in range(rng.randrange(1, 40)))
            for when, who in events:
                mine, theirs = (sent_a, sent_b) if who == "a" else (sent_b, sent_a)
                if when not in mine:
                    mine.add(when)
                    if when in theirs:
                        streak, last = advance(streak, last, when)
            today = start + 30
            self.assertEqual(shown(streak, last, today), streak_from_days(sent_a, sent_b, today), events)
