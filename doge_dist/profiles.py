"""Profiles: multipliers that make probabilities and arrival rates change with simulated time.

>>> from doge_dist.profiles import daily, weekly
>>> evenings = daily([0.1] * 7 + [1.0] * 11 + [2.5] * 4 + [0.5] * 2, tz="Europe/Warsaw")
>>> gen.add_transition("login", "offline", "online", 0.1, profile=evenings * weekly([1] * 5 + [0.6] * 2))

Each profile maps a tick's timestamp (epoch ms) to a multiplier >= 0; the transition's probability
in that tick is ``probability * profile(timestamp)`` percent.
"""

from .model._profiles import (
    Constant,
    Daily,
    HourOfWeek,
    Piecewise,
    Product,
    Profile,
    Weekly,
    constant,
    daily,
    hour_of_week,
    piecewise,
    profile_from_dict,
    weekly,
)

__all__ = [
    "Profile", "Constant", "Daily", "Weekly", "HourOfWeek", "Piecewise", "Product",
    "constant", "daily", "weekly", "hour_of_week", "piecewise", "profile_from_dict",
]
