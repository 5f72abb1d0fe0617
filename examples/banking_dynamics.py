"""The banking model over a week: people log in and spend by time of day and day of week, new users
sign up all day (more in the evening), and some users close their account (churn, a final state).

Importable (``build_generator`` returns the generator) and runnable::

    python examples/banking_dynamics.py --subjects 2000 --days 7 --seed 7

or as a job: ``doge-dist run examples/jobs/banking-dynamics.yaml --report-html out/banking-dynamics.html``.
"""

from __future__ import annotations

import argparse
import functools

from doge_dist import DataOnlineGenerator, EventSink
from doge_dist import rand as doge_rand
from doge_dist.profiles import daily, weekly

try:  # the banking example's callbacks, factory and event record (as a script or as examples.banking)
    from banking import UserFactory, event_record, income_callback, spending_callback, take_loan_callback
except ImportError:  # pragma: no cover - imported as a package module
    from .banking import UserFactory, event_record, income_callback, spending_callback, take_loan_callback

__all__ = ["build_generator", "LOGINS_BY_HOUR", "SPENDING_BY_HOUR", "SIGNUPS_BY_HOUR", "WORKDAYS_AND_WEEKEND",
           "MINUTE_MS", "DAY_TICKS"]

MINUTE_MS = 60_000
DAY_TICKS = 24 * 60  # one-minute ticks

# multipliers of the base probabilities by local hour (0 = midnight to 1 am): a quiet night, a morning
# peak before work, lunch, and the evening peak
LOGINS_BY_HOUR = [0.15, 0.08, 0.05, 0.05, 0.08, 0.2, 0.6, 1.4, 1.9, 1.5, 1.1, 1.2,
                  1.6, 1.4, 1.0, 1.0, 1.1, 1.4, 1.8, 2.3, 2.4, 1.9, 1.0, 0.4]
SPENDING_BY_HOUR = [0.1, 0.05, 0.02, 0.02, 0.05, 0.1, 0.3, 0.8, 1.2, 1.3, 1.4, 1.6,
                    2.0, 1.8, 1.5, 1.4, 1.6, 2.0, 2.2, 2.0, 1.5, 1.0, 0.5, 0.2]
SIGNUPS_BY_HOUR = [0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.0, 1.1,
                   1.2, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 2.0, 2.3, 2.2, 1.5, 0.7]
# Monday first: busy workdays, a quieter weekend (and more sign-ups on Sunday evening)
WORKDAYS_AND_WEEKEND = [1.1, 1.0, 1.0, 1.0, 1.15, 0.8, 0.7]
SIGNUP_DAYS = [1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 1.3]


def build_generator(sink: str | EventSink | None = "jsonl", subjects: int = 2000, days: float = 7,
                    seed: int | None = 7, *, path: str = "out/ev-{part}.jsonl", parts: int = 4,
                    signups_per_day: float = 150.0, churn_per_week: float = 0.03, tz: str = "UTC",
                    timestamp_start: int = 1_704_067_200_000) -> DataOnlineGenerator:
    """The week-long banking model: ``subjects`` users at the start (2024-01-01, a Monday), one-minute
    ticks for ``days`` days, ``signups_per_day`` new users a day on average, and a share
    ``churn_per_week`` of the offline users closing their account each week. Events go to JSON Lines
    in ``parts`` files (``path`` with ``{part}``), or to ``sink`` when it is a sink object or 'count'."""
    if isinstance(sink, str) and sink == "jsonl":
        from doge_dist import JsonLinesSink

        sink = JsonLinesSink(path, event_record, parts=parts)
    elif sink == "count" or sink is None:
        from doge_dist import CountingSink

        sink = CountingSink()
    gen = DataOnlineGenerator(["offline", "online", "loan_screen", "churned"], "offline",
                              UserFactory(fast_random=True), subjects, MINUTE_MS, round(days * DAY_TICKS),
                              timestamp_start, seed=seed, reseed_python_random=False, drop_final=True)
    week = weekly(WORKDAYS_AND_WEEKEND, tz=tz)
    income = functools.partial(income_callback, draw=doge_rand.randrange)
    spending = functools.partial(spending_callback, draw=doge_rand.randrange)
    gen.add_transition("income", "offline", "offline", 0.01, action_callback=income, event_sinks=[sink])
    gen.add_transition("spending", "offline", "offline", 0.1, action_callback=spending, event_sinks=[sink],
                       profile=daily(SPENDING_BY_HOUR, tz=tz) * week)
    gen.add_transition("login", "offline", "online", 0.1, event_sinks=[sink],
                       profile=daily(LOGINS_BY_HOUR, tz=tz) * week)
    # churn: p per minute so that 1 - (1 - p)^(7 days of minutes) = churn_per_week
    churn = 100.0 * (1.0 - (1.0 - churn_per_week) ** (1.0 / (7 * DAY_TICKS)))
    gen.add_transition("close_account", "offline", "churned", churn, event_sinks=[sink])
    gen.add_transition("logout", "online", "offline", 70, event_sinks=[sink])
    gen.add_transition("open_loan_screen", "online", "loan_screen", 30, event_sinks=[sink])
    gen.add_transition("close_loan_screen", "loan_screen", "online", 40, event_sinks=[sink])
    gen.add_transition("take_loan", "loan_screen", "online", 10, action_callback=take_loan_callback,
                       event_sinks=[sink])
    mean_signup = sum(SIGNUPS_BY_HOUR) / 24 * sum(SIGNUP_DAYS) / 7
    gen.add_arrivals(signups_per_day / DAY_TICKS / mean_signup,
                     profile=daily(SIGNUPS_BY_HOUR, tz=tz) * weekly(SIGNUP_DAYS, tz=tz))
    return gen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--path", default="out/ev-{part}.jsonl")
    args = parser.parse_args(argv)
    result = build_generator("jsonl", args.subjects, args.days, args.seed, path=args.path).start()
    print(f"{result.total_events:,} events; {result.created:,} users created, {result.departed:,} closed "
          f"their account, {result.live:,} left: {result.events_by_trigger}")


if __name__ == "__main__":
    main()
