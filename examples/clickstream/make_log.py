"""Make the example clickstream log: two days of a shop's app, 10,000 registered users.

Not made with doge-dist, on purpose: users differ in how often they come (gamma-distributed
activity), sessions start with a daily rhythm (quiet nights, a lunch bump, busy evenings), the
time between two screens is log-normal (not geometric) and events carry millisecond times and
extra fields. A per-tick Markov chain fitted to it is an approximation, as it would be for a real
log, and ``doge-dist compare`` shows where.

    python examples/clickstream/make_log.py            # writes examples/clickstream/clickstream.jsonl.gz
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
from pathlib import Path

import numpy as np

__all__ = ["make_log", "SESSION_RHYTHM"]

START = dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc)  # a Monday
#: relative session starts per UTC hour
SESSION_RHYTHM = np.array([0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.45, 0.8, 1.0, 0.9, 0.85, 0.9,
                           1.3, 1.2, 0.9, 0.85, 0.9, 1.1, 1.5, 1.9, 2.1, 1.8, 1.1, 0.5])
#: where each screen leads: (next event, weight)
FLOW = {
    "app_open": [("view_home", 0.7), ("search", 0.3)],
    "view_home": [("view_product", 0.5), ("search", 0.3), ("app_close", 0.2)],
    "search": [("view_product", 0.75), ("search", 0.1), ("app_close", 0.15)],
    "view_product": [("view_product", 0.35), ("add_to_cart", 0.2), ("search", 0.2), ("view_home", 0.1),
                     ("app_close", 0.15)],
    "add_to_cart": [("checkout", 0.45), ("view_product", 0.35), ("app_close", 0.2)],
    "checkout": [("purchase", 0.7), ("app_close", 0.3)],
    "purchase": [("view_home", 0.4), ("app_close", 0.6)],
}
#: median seconds spent on each screen (log-normal, sigma 0.9)
THINK_S = {"app_open": 4, "view_home": 12, "search": 20, "view_product": 35, "add_to_cart": 15,
           "checkout": 60, "purchase": 10}
DEVICES = ["ios", "android", "web"]


def _session(rng: np.random.Generator, start_s: float) -> list[tuple[float, str]]:
    events = [(start_s, "app_open")]
    now, screen = start_s, "app_open"
    while screen != "app_close":
        now += float(rng.lognormal(np.log(THINK_S[screen]), 0.9))
        choices, weights = zip(*FLOW[screen])
        screen = choices[rng.choice(len(choices), p=np.array(weights) / sum(weights))]
        events.append((now, screen))
    return events


def make_log(path: Path, users: int = 10_000, days: int = 2, seed: int = 2024) -> int:
    """Write the log (gzip JSON Lines, in time order); returns the number of events."""
    rng = np.random.default_rng(seed)
    activity = rng.gamma(0.5, 0.8, users)  # sessions per day; many users rarely come
    hours = days * 24
    rhythm = np.tile(SESSION_RHYTHM / SESSION_RHYTHM.mean(), days)
    records: list[tuple[float, int, str]] = []
    for user in range(users):
        counts = rng.poisson(activity[user] / 24 * rhythm)
        for hour in np.flatnonzero(counts):
            for _ in range(int(counts[hour])):
                start_s = (hour + float(rng.random())) * 3600
                for t, event in _session(rng, start_s):
                    if t < hours * 3600:
                        records.append((t, user, event))
    records.sort()
    device = rng.integers(0, len(DEVICES), users)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=9) as fh:
        for t, user, event in records:
            moment = START + dt.timedelta(milliseconds=int(t * 1000))
            fh.write(json.dumps({"ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                 "user": f"u{user:05d}", "event": event,
                                 "device": DEVICES[device[user]]}) + "\n")
    return len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("clickstream.jsonl.gz")))
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    count = make_log(Path(args.out), args.users, args.days, args.seed)
    print(f"{count:,} events written to {args.out}")


if __name__ == "__main__":
    main()
