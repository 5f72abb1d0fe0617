"""Arrival streams: new subjects joining a run as a Poisson process (the model side: plain data)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .._errors import ModelError
from ._profiles import Profile, profile_from_dict

__all__ = ["ArrivalStream", "make_arrival_stream"]


@dataclass(frozen=True)
class ArrivalStream:
    """``rate_per_tick`` new subjects per tick on average (times ``profile(timestamp)``), entering
    ``state``; at most ``limit`` of them over the run (None: no cap)."""

    rate_per_tick: float
    profile: Profile | None
    limit: int | None
    state: str

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rate": self.rate_per_tick}
        if self.profile is not None:
            data["profile"] = self.profile.to_dict()
        if self.limit is not None:
            data["limit"] = self.limit
        data["state"] = self.state
        return data


def make_arrival_stream(rate_per_tick: Any, profile: Any, limit: Any, state: str,
                        states: list[str]) -> ArrivalStream:
    """A validated ArrivalStream; ModelError naming the bad argument."""
    if isinstance(rate_per_tick, bool) or not isinstance(rate_per_tick, Real):
        raise ModelError("add_arrivals: rate_per_tick must be a number (subjects per tick), "
                         f"got {rate_per_tick!r}")
    rate = float(rate_per_tick)
    if math.isnan(rate) or math.isinf(rate) or rate < 0:
        raise ModelError(f"add_arrivals: rate_per_tick must be a finite number >= 0, got {rate_per_tick!r}")
    if profile is not None and not isinstance(profile, Profile):
        profile = profile_from_dict(profile, "add_arrivals: profile")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, Integral) or limit < 0):
        raise ModelError(f"add_arrivals: limit must be an integer >= 0 or None, got {limit!r}")
    if state not in states:
        raise ModelError(f"add_arrivals: state {state!r} is not present in machine states {states}")
    return ArrivalStream(rate, profile, None if limit is None else int(limit), state)
