"""Profiles: multipliers >= 0 that make a probability or a rate change with simulated time.

A profile maps a tick's timestamp (epoch milliseconds) to a multiplier. They are immutable,
picklable values, compare by value and multiply (``daily(...) * weekly(...)``). Besides the
scalar call, each profile evaluates a whole array of timestamps at once (what the engine uses)
and lists its *breakpoints*: the timestamps where its value may change (step profiles) or where
its slope may change (linear ones), so that validation and the engine's bounds look at those
points instead of at every tick.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import Any

import numpy as np

from .._errors import ModelError

__all__ = [
    "Profile", "Constant", "Daily", "Weekly", "HourOfWeek", "Piecewise", "Product",
    "constant", "daily", "weekly", "hour_of_week", "piecewise", "profile_from_dict", "scaled_by_profiles",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
_QUARTER_MS = 900_000  # UTC offsets change on quarter-hour boundaries (every IANA zone in use)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _multipliers(name: str, values: Any, length: int | None) -> tuple[float, ...]:
    """Validated multipliers: finite numbers >= 0 (and exactly ``length`` of them)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ModelError(f"{name}: expected a list of multipliers, got {values!r}")
    out = []
    for k, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ModelError(f"{name}: multiplier {k} must be a number, got {value!r}")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ModelError(f"{name}: multiplier {k} must be finite, got {number}")
        if number < 0:
            raise ModelError(f"{name}: multiplier {k} must be >= 0, got {number:g}")
        out.append(number)
    if length is not None and len(out) != length:
        raise ModelError(f"{name}: expected {length} multipliers, got {len(out)}")
    return tuple(out)


def _zone(name: str, tz: Any) -> Any:
    """A ZoneInfo for ``tz`` (an IANA name); ModelError naming the profile when it is unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(tz, str) or not tz:
        raise ModelError(f"{name}: tz must be an IANA time zone name such as 'Europe/Warsaw', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ModelError(f"{name}: unknown time zone {tz!r} ({exc})") from None


class Profile(ABC):
    """A multiplier >= 0 as a function of the timestamp (epoch ms)."""

    __slots__ = ()

    #: True when the value is linear (not constant) between breakpoints.
    linear: bool = False

    def __call__(self, timestamp_ms: int) -> float:
        return float(self.values(np.array([timestamp_ms], dtype=np.int64))[0])

    @abstractmethod
    def values(self, timestamps: np.ndarray) -> np.ndarray:
        """The multiplier at each timestamp (int64 epoch ms) as float64."""

    @abstractmethod
    def breakpoints(self, start_ms: int, stop_ms: int) -> np.ndarray:
        """Sorted timestamps in ``(start_ms, stop_ms)`` where the value (or slope) may change."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (the YAML model format)."""

    def maximum(self) -> float:
        """An upper bound of the multiplier over all time."""
        return self._maximum()

    @abstractmethod
    def _maximum(self) -> float: ...

    @property
    def period_ms(self) -> int | None:
        """The period after which the profile repeats (None: it does not, e.g. piecewise)."""
        return None

    @property
    def horizon_ms(self) -> int | None:
        """The last timestamp after which the value no longer changes (piecewise), else None."""
        return None

    def __mul__(self, other: Any) -> Profile:
        if isinstance(other, Real) and not isinstance(other, bool):
            other = Constant(other)
        if not isinstance(other, Profile):
            return NotImplemented
        return Product((self, other))

    __rmul__ = __mul__

    def _key(self) -> tuple:
        return (type(self).__name__, *(getattr(self, name) for name in _fields(type(self))))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profile) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self):
        return (_rebuild, (type(self), tuple(getattr(self, n) for n in _fields(type(self)))))

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)


def _fields(cls: type) -> tuple[str, ...]:
    """Every slot of ``cls`` and its bases, base classes first."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        names.extend(klass.__dict__.get("__slots__", ()))
    return tuple(names)


def _rebuild(cls: type, fields: tuple) -> Profile:
    obj = cls.__new__(cls)
    for name, value in zip(_fields(cls), fields):
        object.__setattr__(obj, name, value)
    return obj


class Constant(Profile):
    """The same multiplier at every time."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self._set(value=_multipliers("constant profile", [value], 1)[0])

    def values(self, timestamps: np.ndarray) -> np.ndarray:
        return np.full(len(timestamps), self.value)

    def breakpoints(self, start_ms: int, stop_ms: int) -> np.ndarray:
        return np.empty(0, dtype=np.int64)

    def _maximum(self) -> float:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"constant": self.value}

    def __repr__(self) -> str:
        return f"constant({self.value:g})"


class _Calendar(Profile):
    """Multipliers by local calendar position: ``slot(local time)`` indexes ``table``."""

    __slots__ = ("table", "tz")
    _kind = ""
    _length = 0
    _slot_ms = HOUR_MS

    def __init__(self, multipliers: Sequence[float], tz: str = "UTC") -> None:
        name = f"{self._kind} profile"
        table = _multipliers(name, multipliers, self._length)
        _zone(name, tz)
        self._set(table=table, tz=tz)

    def _local(self, timestamps: np.ndarray) -> np.ndarray:
        """Local wall-clock milliseconds since the epoch, per timestamp (DST-aware)."""
        ts = np.asarray(timestamps, dtype=np.int64)
        if self.tz == "UTC":
            return ts
        import datetime as dt

        zone = _zone(self._kind, self.tz)
        quarters = ts // _QUARTER_MS
        unique, inverse = np.unique(quarters, return_inverse=True)
        ms = dt.timedelta(milliseconds=1)
        offsets = np.array([  # the zone's offset at that instant (fromtimestamp in the zone: no guessing)
            dt.datetime.fromtimestamp(int(q) * _QUARTER_MS / 1000, zone).utcoffset() // ms
            for q in unique.tolist()], dtype=np.int64)
        return ts + offsets[inverse.reshape(-1)]

    def _slots(self, timestamps: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def values(self, timestamps: np.ndarray) -> np.ndarray:
        return np.asarray(self.table)[self._slots(timestamps)]

    def breakpoints(self, start_ms: int, stop_ms: int) -> np.ndarray:
        if stop_ms <= start_ms + 1:
            return np.empty(0, dtype=np.int64)
        # every quarter hour in UTC is a candidate (local hours start on UTC quarter hours);
        # keep those where the slot changes
        first = (start_ms // _QUARTER_MS + 1) * _QUARTER_MS
        candidates = np.arange(first, stop_ms, _QUARTER_MS, dtype=np.int64)
        if candidates.size == 0:
            return candidates
        before = self._slots(candidates - 1)
        after = self._slots(candidates)
        table = np.asarray(self.table)
        return candidates[table[before] != table[after]]

    def _maximum(self) -> float:
        return max(self.table)

    @property
    def period_ms(self) -> int | None:
        return WEEK_MS if self.tz == "UTC" else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {self._kind: list(self.table)}
        if self.tz != "UTC":
            data["tz"] = self.tz
        return data

    def __repr__(self) -> str:
        tz = "" if self.tz == "UTC" else f", tz={self.tz!r}"
        return f"{self._kind}([{', '.join(f'{v:g}' for v in self.table)}]{tz})"


class Daily(_Calendar):
    """24 multipliers by local hour of day (0 = midnight to 1 am)."""

    __slots__ = ()
    _kind = "daily"
    _length = 24

    def _slots(self, timestamps: np.ndarray) -> np.ndarray:
        return (self._local(timestamps) // HOUR_MS) % 24


class Weekly(_Calendar):
    """7 multipliers by local day of week, Monday first."""

    __slots__ = ()
    _kind = "weekly"
    _length = 7

    def _slots(self, timestamps: np.ndarray) -> np.ndarray:
        return (self._local(timestamps) // DAY_MS + _EPOCH_WEEKDAY) % 7


class HourOfWeek(_Calendar):
    """168 multipliers by local hour of the week: Monday 00:00-01:00 is 0, Sunday 23:00 is 167."""

    __slots__ = ()
    _kind = "hour_of_week"
    _length = 168

    def _slots(self, timestamps: np.ndarray) -> np.ndarray:
        local = self._local(timestamps)
        return ((local // DAY_MS + _EPOCH_WEEKDAY) % 7) * 24 + (local // HOUR_MS) % 24


class Piecewise(Profile):
    """Multipliers at given timestamps: held until the next point (``step``) or interpolated
    (``linear``). Before the first point the first value holds, after the last the last one."""

    __slots__ = ("points", "interpolation")

    def __init__(self, points: Iterable[tuple[int, float]], interpolation: str = "step") -> None:
        name = "piecewise profile"
        if interpolation not in ("step", "linear"):
            raise ModelError(f"{name}: interpolation must be 'step' or 'linear', got {interpolation!r}")
        if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
            raise ModelError(f"{name}: expected a list of (timestamp_ms, multiplier) pairs, got {points!r}")
        pairs = []
        for k, point in enumerate(points):
            if isinstance(point, dict):
                point = (point.get("at", point.get("timestamp")), point.get("multiplier", point.get("value")))
            try:
                ts, value = point
            except (TypeError, ValueError):
                raise ModelError(f"{name}: point {k} must be a (timestamp_ms, multiplier) pair, "
                                 f"got {point!r}") from None
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise ModelError(f"{name}: point {k}: timestamp must be an integer (epoch ms), got {ts!r}")
            pairs.append((int(ts), _multipliers(f"{name} point {k}", [value], 1)[0]))
        if not pairs:
            raise ModelError(f"{name}: needs at least one (timestamp_ms, multiplier) point")
        for k in range(1, len(pairs)):
            if pairs[k][0] <= pairs[k - 1][0]:
                raise ModelError(f"{name}: timestamps must increase; point {k} ({pairs[k][0]}) is not "
                                 f"after point {k - 1} ({pairs[k - 1][0]})")
        self._set(points=tuple(pairs), interpolation=interpolation)

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return self.interpolation == "linear" and len(self.points) > 1

    def values(self, timestamps: np.ndarray) -> np.ndarray:
        xs = np.array([p[0] for p in self.points], dtype=np.int64)
        ys = np.array([p[1] for p in self.points])
        ts = np.asarray(timestamps, dtype=np.int64)
        if self.interpolation == "linear":
            return np.interp(ts.astype(np.float64), xs.astype(np.float64), ys)
        idx = np.searchsorted(xs, ts, side="right") - 1
        return ys[np.maximum(idx, 0)]

    def breakpoints(self, start_ms: int, stop_ms: int) -> np.ndarray:
        xs = np.array([p[0] for p in self.points], dtype=np.int64)
        return xs[(xs > start_ms) & (xs < stop_ms)]

    def _maximum(self) -> float:
        return max(p[1] for p in self.points)

    @property
    def horizon_ms(self) -> int | None:
        return self.points[-1][0]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"piecewise": [[ts, value] for ts, value in self.points]}
        if self.interpolation != "step":
            data["interpolation"] = self.interpolation
        return data

    def __repr__(self) -> str:
        return f"piecewise({list(self.points)!r}, interpolation={self.interpolation!r})"


class Product(Profile):
    """The product of several profiles (``daily(...) * weekly(...)``)."""

    __slots__ = ("factors",)

    def __init__(self, factors: Iterable[Profile]) -> None:
        flat: list[Profile] = []
        for factor in factors:
            if not isinstance(factor, Profile):
                raise ModelError(f"product profile: factors must be profiles, got {factor!r}")
            flat.extend(factor.factors if isinstance(factor, Product) else (factor,))
        self._set(factors=tuple(flat))

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return any(f.linear for f in self.factors)

    @property
    def linear_factors(self) -> int:
        return sum(1 for f in self.factors if f.linear)

    def values(self, timestamps: np.ndarray) -> np.ndarray:
        out = np.ones(len(timestamps))
        for factor in self.factors:
            out *= factor.values(timestamps)
        return out

    def breakpoints(self, start_ms: int, stop_ms: int) -> np.ndarray:
        parts = [f.breakpoints(start_ms, stop_ms) for f in self.factors]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def _maximum(self) -> float:
        return math.prod(f.maximum() for f in self.factors)

    @property
    def period_ms(self) -> int | None:
        periods = [f.period_ms for f in self.factors if not isinstance(f, Constant)]
        if any(p is None for p in periods):
            return None
        return max(periods, default=WEEK_MS)

    @property
    def horizon_ms(self) -> int | None:
        horizons = [f.horizon_ms for f in self.factors if f.horizon_ms is not None]
        return max(horizons) if horizons else None

    def to_dict(self) -> dict[str, Any]:
        return {"product": [f.to_dict() for f in self.factors]}

    def __repr__(self) -> str:
        return " * ".join(repr(f) for f in self.factors)


def scaled_by_profiles(base: np.ndarray, profiles: Sequence[Profile | None],
                       timestamps: np.ndarray) -> np.ndarray:
    """[timestamp, column]: ``base[column] * profiles[column](timestamp)`` (a column without a profile
    keeps its base); each distinct profile is evaluated once."""
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.tile(np.asarray(base, dtype=np.float64), (ts.size, 1))
    evaluated: dict[int, np.ndarray] = {}
    for column, profile in enumerate(profiles):
        if profile is None:
            continue
        values = evaluated.get(id(profile))
        if values is None:
            values = evaluated[id(profile)] = profile.values(ts)
        out[:, column] *= values
    return out


# -- the public constructors ------------------------------------------------------------------


def constant(multiplier: float) -> Constant:
    """The same multiplier at every tick."""
    return Constant(multiplier)


def daily(multipliers: Sequence[float], tz: str = "UTC") -> Daily:
    """24 multipliers by hour of day in time zone ``tz`` (an IANA name)."""
    return Daily(multipliers, tz)


def weekly(multipliers: Sequence[float], tz: str = "UTC") -> Weekly:
    """7 multipliers by day of week (Monday first) in time zone ``tz``."""
    return Weekly(multipliers, tz)


def hour_of_week(multipliers: Sequence[float], tz: str = "UTC") -> HourOfWeek:
    """168 multipliers by hour of the week (Monday 00:00 first) in time zone ``tz``."""
    return HourOfWeek(multipliers, tz)


def piecewise(points: Iterable[tuple[int, float]], interpolation: str = "step") -> Piecewise:
    """Multipliers at timestamps (epoch ms), held (``step``) or interpolated (``linear``) between them."""
    return Piecewise(points, interpolation)


_FROM_DICT_KEYS = {"daily": daily, "weekly": weekly, "hour_of_week": hour_of_week}


def profile_from_dict(data: Any, where: str = "profile") -> Profile:
    """A profile from its plain-data form (``{daily: [...], tz: ...}``, ``{weekly: [...]}``,
    ``{hour_of_week: [...]}``, ``{piecewise: [[ts, m], ...], interpolation: linear}``,
    ``{constant: m}``, ``{product: [...]}``); ModelError naming ``where`` otherwise."""
    if isinstance(data, Profile):
        return data
    if not isinstance(data, dict):
        raise ModelError(f"{where}: expected a mapping such as {{daily: [24 numbers]}}, got {data!r}")
    kinds = [k for k in ("daily", "weekly", "hour_of_week", "piecewise", "constant", "product") if k in data]
    if len(kinds) != 1:
        raise ModelError(f"{where}: expected exactly one of daily, weekly, hour_of_week, piecewise, "
                         f"constant, product; got keys {sorted(data)}")
    kind = kinds[0]
    allowed = {kind} | ({"tz"} if kind in _FROM_DICT_KEYS else set()) | (
        {"interpolation"} if kind == "piecewise" else set())
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {unknown} for a {kind} profile")
    try:
        if kind in _FROM_DICT_KEYS:
            return _FROM_DICT_KEYS[kind](data[kind], tz=data.get("tz", "UTC"))
        if kind == "piecewise":
            return piecewise([tuple(p) if isinstance(p, list) else p for p in data[kind]],
                             interpolation=data.get("interpolation", "step"))
        if kind == "constant":
            return constant(data[kind])
        factors = data[kind]
        if not isinstance(factors, list) or not factors:
            raise ModelError("product needs a non-empty list of profiles")
        return Product([profile_from_dict(f, f"{where}.product[{k}]") for k, f in enumerate(factors)])
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
