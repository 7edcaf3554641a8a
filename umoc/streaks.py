"""Streaks between two friends, as pure functions of UTC day numbers.

A streak is the length of the most recent run of consecutive UTC days on
which each of the two users sent the other at least one message; it
continues while that run's last day is today or yesterday.  Storage keeps
the run incrementally (`advance`) so that listing contacts reads two numbers
instead of a friendship's whole history; `streak_from_days` is the
definition itself, which the incremental form must agree with.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["advance", "shown", "streak_from_days"]


def streak_from_days(days_a_to_b: Iterable[int], days_b_to_a: Iterable[int], today: int) -> tuple[int, bool]:
    """``(streak, continue_streak)`` from the days each side sent the other a message."""
    mutual = sorted(set(days_a_to_b) & set(days_b_to_a))
    if not mutual:
        return 0, False
    run = 1
    for i in range(len(mutual) - 1, 0, -1):
        if mutual[i] - mutual[i - 1] != 1:
            break
        run += 1
    return shown(run, mutual[-1], today)


def advance(streak: int, last_day: int | None, mutual_day: int) -> tuple[int, int]:
    """The run after ``mutual_day`` became a day both sides wrote (days only move forward)."""
    if last_day == mutual_day:
        return streak, last_day
    if last_day is not None and last_day == mutual_day - 1:
        return streak + 1, mutual_day
    return 1, mutual_day


def shown(streak: int, last_day: int | None, today: int) -> tuple[int, bool]:
    """What clients see: the run's length, and whether it is still alive today."""
    if last_day is None or streak <= 0:
        return 0, False
    return streak, last_day >= today - 1
