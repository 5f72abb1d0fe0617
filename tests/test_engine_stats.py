"""The event-driven engine draws the same distribution as doge-datagen's per-tick rule.

Expectations are derived here from the Markov chain itself, not from the engine. All runs are
seeded (so the test is deterministic), and tolerances are set so that a correct engine passes
for practically any seed while a wrong rate, an off-by-one in the geometric delay or a wrong
split between transitions fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from doge_dist import CountingSink, DataOnlineGenerator, EventSink, SubjectFactory
from examples.banking import build_generator

SUBJECTS = 10_000
TICKS = 1_000

# (trigger, from_state, to_state, probability %) of the banking model, copied from doge-datagen 1.0.4
BANKING = [
    ("income", "offline", "offline", 0.01),
    ("spending", "offline", "offline", 0.1),
    ("login", "offline", "online", 0.1),
    ("logout", "online", "offline", 70),
    ("open_loan_screen", "online", "loan_screen", 30),
    ("close_loan_screen", "loan_screen", "online", 40),
    ("take_loan", "loan_screen", "online", 10),
]
STATES = ["offline", "online", "loan_screen"]


def chain_occupancy(states, transitions, initial, ticks):
    """Expected number of ticks spent in each state, summed over ticks 0..ticks-1, for one subject.

    The state at tick t is where the subject is when tick t is evaluated; a transition taken at
    tick t is counted with the state's occupancy at tick t.
    """
    index = {s: i for i, s in enumerate(states)}
    matrix = np.zeros((len(states), len(states)))
    for _, src, dst, p in transitions:
        matrix[index[src], index[dst]] += p / 100
    for i in range(len(states)):
        matrix[i, i] += 1 - matrix[i].sum()  # staying put
    dist = np.zeros(len(states))
    dist[index[initial]] = 1.0
    occupancy = np.zeros(len(states))
    for _ in range(ticks):
        occupancy += dist
        dist = dist @ matrix
    return dict(zip(states, occupancy))


def expected_counts(states, transitions, initial, subjects, ticks):
    occ = chain_occupancy(states, transitions, initial, ticks)
    return {trig: subjects * occ[src] * p / 100 for trig, src, _, p in transitions}


class IntFactory(SubjectFactory):
    def create(self, index):
        return index


class TickRecorder(EventSink):
    """Records (tick, subject, trigger) as three parallel lists."""

    def __init__(self, tick_ms: int) -> None:
        self.tick_ms = tick_ms
        self.ticks: list[int] = []
        self.subjects: list[int] = []
        self.triggers: list[str] = []

    def collect(self, timestamp, subject, transition) -> None:
        self.ticks.append(timestamp // self.tick_ms)
        self.subjects.append(subject)
        self.triggers.append(transition.trigger)


def test_banking_event_counts_match_the_markov_chain():
    gen = build_generator(CountingSink(), subjects=SUBJECTS, ticks=TICKS, seed=20240611)
    result = gen.start()
    expected = expected_counts(STATES, BANKING, "offline", SUBJECTS, TICKS)
    # the chain's expectations, computed independently: 9,977 logins and 852 loans
    assert (round(expected["login"]), round(expected["take_loan"])) == (9977, 852)
    # Subjects are independent, so Var(total) = N * Var(per-subject count). A subject's count of a
    # trigger is a sum over its login sessions (K ~ at most Poisson, Var K <= E K) of Y per-session
    # events, so Var/mean <= E[Y^2]/E[Y]. Per session: login/logout Y = 1 (ratio 1);
    # open_loan_screen Y ~ Geometric with q = 0.3 (ratio (1+q)/(1-q) = 1.86); close_loan_screen and
    # take_loan thin those visits (ratios 1.69 and 1.17); income/spending are offline self-loops
    # with a near-binomial count (ratio <= 1). So variance <= 2 * mean for every trigger, and we
    # accept 4 such standard deviations.
    for trigger, mean in expected.items():
        observed = result.events_by_trigger[trigger]
        if trigger == "spending":  # vetoed when the payment exceeds the balance; the draw still happened
            observed += result.vetoed_by_trigger[trigger]
        sd = math.sqrt(2 * mean)
        assert abs(observed - mean) <= 4 * sd, (trigger, observed, mean, sd)
    for trigger in ("income", "login", "logout", "open_loan_screen", "close_loan_screen", "take_loan"):
        assert result.vetoed_by_trigger[trigger] == 0, trigger
    assert result.vetoed_by_trigger["spending"] > 0  # users whose balance is below the payment
    assert result.total_events == sum(result.events_by_trigger.values())


def test_split_between_transitions_of_one_state():
    # three ways out of one state at 5 %, 15 % and 30 %, plus stay: counts in ratio 1 : 3 : 6
    transitions = [("x", "s", "s", 5), ("y", "s", "s", 15), ("z", "s", "s", 30)]
    gen = DataOnlineGenerator(["s"], "s", IntFactory(), 2_000, 1, 100, seed=11)
    for trig, src, dst, p in transitions:
        gen.add_transition(trig, src, dst, p)
    result = gen.start()
    n = 2_000 * 100
    for trig, _, _, p in transitions:
        mean, sd = n * p / 100, math.sqrt(n * p / 100 * (1 - p / 100))
        assert abs(result.events_by_trigger[trig] - mean) <= 4 * sd, trig


@pytest.mark.parametrize("p,subjects,ticks", [(3, 2_000, 500), (0.5, 5_000, 400), (60, 500, 200)])
def test_self_loop_count_is_binomial(p, subjects, ticks):
    recorder = TickRecorder(tick_ms=1)
    gen = DataOnlineGenerator(["s"], "s", IntFactory(), subjects, 1, ticks, seed=int(p * 100) + subjects)
    gen.add_transition("act", "s", "s", p, event_sinks=[recorder])
    result = gen.start()
    q = p / 100
    n = subjects * ticks
    mean, var = n * q, n * q * (1 - q)
    assert abs(result.total_events - mean) <= 4 * math.sqrt(var)
    # Each tick's count is Binomial(subjects, q), independently across ticks: check the dispersion
    # too, which catches correlated or clumped delays that still have the right mean.
    per_tick = np.bincount(np.array(recorder.ticks), minlength=ticks)
    tick_var = subjects * q * (1 - q)
    sample_var = per_tick.var(ddof=1)
    # sd of a sample variance of ~normal data is var * sqrt(2 / (ticks - 1))
    assert abs(sample_var - tick_var) <= 5 * tick_var * math.sqrt(2 / (ticks - 1)), (sample_var, tick_var)
    assert chi_square_of_gaps(recorder, subjects, ticks, q) < 40  # df = 10: p ~ 2e-5


def chi_square_of_gaps(recorder: TickRecorder, subjects: int, ticks: int, q: float, k_max: int = 10) -> float:
    """Chi-square of the delays between a subject's consecutive actions against Geometric(q).

    A delay starts at each event (and at tick -1, before the first draw) and is 1 when the subject
    acts again on the next tick. Only starts at ticks <= ticks-1-k_max are used, so delays 1..k_max
    and "more than k_max" are always observable and the histogram is free of censoring bias.
    """
    tick = np.array(recorder.ticks, dtype=np.int64)
    subj = np.array(recorder.subjects, dtype=np.int64)
    order = np.lexsort((tick, subj))
    tick, subj = tick[order], subj[order]
    # starts: every event, plus a virtual one at tick -1 per subject
    start_tick = np.concatenate((np.full(subjects, -1), tick))
    start_subj = np.concatenate((np.arange(subjects), subj))
    # the next event of the same subject after each start (or none)
    first = np.searchsorted(subj, np.arange(subjects))  # index of each subject's first event
    nxt = np.concatenate((first, np.arange(1, tick.size + 1)))
    has_next = nxt < tick.size
    has_next[has_next] &= subj[nxt[has_next]] == start_subj[has_next]
    delay = np.full(start_tick.size, k_max + 1)
    delay[has_next] = np.minimum(tick[nxt[has_next]] - start_tick[has_next], k_max + 1)
    usable = start_tick <= ticks - 1 - k_max
    assert delay[usable].min() >= 1  # never two actions of one subject in one tick
    observed = np.bincount(delay[usable], minlength=k_max + 2)[1:]
    probs = np.array([q * (1 - q) ** (k - 1) for k in range(1, k_max + 1)] + [(1 - q) ** k_max])
    expected = probs * usable.sum()
    return float(((observed - expected) ** 2 / expected).sum())


def test_certain_self_loop_fires_every_tick():
    sink = CountingSink()
    gen = DataOnlineGenerator(["s"], "s", IntFactory(), 300, 1, 70, seed=1)
    gen.add_transition("act", "s", "s", 100, event_sinks=[sink])
    assert gen.start().total_events == 300 * 70 == sink.count


def test_two_state_round_trip_matches_the_per_tick_rule():
    # A -> B with 30 % per tick, B -> A with 100 %: B lasts exactly one tick and the number of
    # ticks a subject stays in A before leaving is Geometric: P(k) = 0.7**k * 0.3.
    subjects, ticks = 1_000, 200
    recorder = TickRecorder(tick_ms=1)
    gen = DataOnlineGenerator(["A", "B"], "A", IntFactory(), subjects, 1, ticks, seed=99)
    gen.add_transition("go", "A", "B", 30, event_sinks=[recorder])
    gen.add_transition("back", "B", "A", 100, event_sinks=[recorder])
    result = gen.start()

    chain = [("go", "A", "B", 30), ("back", "B", "A", 100)]
    expected = expected_counts(["A", "B"], chain, "A", subjects, ticks)
    # a renewal count (cycle = Geometric + 1 tick) has variance below its mean: sd <= sqrt(mean)
    for trigger in ("go", "back"):
        assert abs(result.events_by_trigger[trigger] - expected[trigger]) <= 4 * math.sqrt(expected[trigger])

    # fraction of subject-ticks spent in A, from the chain: about 1 / 1.3 in the long run
    occ = chain_occupancy(["A", "B"], chain, "A", ticks)
    in_b = sum(1 for tick, trig in zip(recorder.ticks, recorder.triggers)
               if trig == "go" and tick < ticks - 1)  # a 'go' at tick t means B at tick t + 1
    frac_a = 1 - in_b / (subjects * ticks)
    assert frac_a == pytest.approx(occ["A"] / ticks, abs=0.01)

    _assert_b_lasts_one_tick(recorder)

    sojourns: list[int] = []
    entered_a: dict[int, int] = {}  # subject -> first tick of its current stay in A
    for tick, subj, trig in zip(recorder.ticks, recorder.subjects, recorder.triggers):
        if trig == "go":
            entered = entered_a.get(subj, 0)
            if entered <= ticks - 40:  # P(k >= 40) ~ 6e-7: no censoring bias from the run's end
                sojourns.append(tick - entered)
        else:
            entered_a[subj] = tick + 1
    assert len(sojourns) > 30_000

    counts = np.bincount(np.array(sojourns), minlength=11)
    observed = np.append(counts[:10], counts[10:].sum())
    probs = np.array([0.7**k * 0.3 for k in range(10)] + [0.7**10])
    expected_bins = probs * len(sojourns)
    chi2 = float(((observed - expected_bins) ** 2 / expected_bins).sum())
    assert chi2 < 40, (chi2, observed.tolist(), expected_bins.round().tolist())  # df = 10: p ~ 2e-5


def _assert_b_lasts_one_tick(recorder: TickRecorder) -> None:
    """B has 100 % out, so every 'back' comes exactly one tick after the subject's 'go'."""
    went: dict[int, int] = {}
    for tick, subj, trig in zip(recorder.ticks, recorder.subjects, recorder.triggers):
        if trig == "go":
            assert subj not in went
            went[subj] = tick
        else:
            assert went.pop(subj) == tick - 1


# -- independence of the chosen transition and the next delay ----------------------------------

# Two states with the same total outgoing probability (60 %), so the delay until a subject's next
# action is Geometric(0.6) whichever transition it just took: under the per-tick rule the delay
# is independent of the choice. The engine takes both from one 64-bit hash per (subject, tick).
INDEPENDENCE_MODEL = [("x", "s", "s", 10), ("y", "s", "u", 20), ("z", "s", "s", 30),
                      ("w", "u", "s", 25), ("v", "u", "u", 35)]
DELAY_BUCKETS = 3  # delays 1, 2, 3 and "4 or more"
# For a correct engine the p-value is uniform on [0, 1], so a threshold of 1e-6 raises a false
# alarm for one seed in a million; the run is seeded, so this test never flakes.
P_FALSE_ALARM = 1e-6


def choice_delay_table(recorder: TickRecorder, subjects: int, ticks: int) -> np.ndarray:
    """Counts of (trigger chosen at a tick) x (delay until the subject's next action, bucketed).

    Only choices at ticks <= ticks-1-DELAY_BUCKETS are used, so every bucket is observable
    (no censoring by the run's end).
    """
    triggers = [t for t, *_ in INDEPENDENCE_MODEL]
    tick = np.array(recorder.ticks, dtype=np.int64)
    subj = np.array(recorder.subjects, dtype=np.int64)
    trig = np.array([triggers.index(t) for t in recorder.triggers], dtype=np.int64)
    order = np.lexsort((tick, subj))
    tick, subj, trig = tick[order], subj[order], trig[order]
    same_next = np.append(subj[1:] == subj[:-1], False)  # the next row is this subject's next action
    delay = np.full(tick.size, DELAY_BUCKETS + 1)
    delay[same_next] = np.minimum(tick[1:][same_next[:-1]] - tick[same_next], DELAY_BUCKETS + 1)
    usable = tick <= ticks - 1 - DELAY_BUCKETS
    assert delay[usable].min() >= 1
    table = np.zeros((len(triggers), DELAY_BUCKETS + 1), dtype=np.int64)
    np.add.at(table, (trig[usable], delay[usable] - 1), 1)
    return table


def independence_p_value(subjects: int = 10_000, ticks: int = 100,
                         seed: int = 77) -> tuple[float, np.ndarray]:
    from scipy.stats import chi2_contingency

    recorder = TickRecorder(tick_ms=1)
    gen = DataOnlineGenerator(["s", "u"], "s", IntFactory(), subjects, 1, ticks, seed=seed)
    for trigger, src, dst, p in INDEPENDENCE_MODEL:
        gen.add_transition(trigger, src, dst, p, event_sinks=[recorder])
    gen.start()
    table = choice_delay_table(recorder, subjects, ticks)
    return float(chi2_contingency(table).pvalue), table


def test_chosen_transition_and_next_delay_are_independent():
    p_value, table = independence_p_value()
    assert table.sum() > 400_000
    # the delay from either state is Geometric(0.6): P(1), P(2), P(3), P(>=4)
    shares = table.sum(axis=0) / table.sum()
    assert shares == pytest.approx([0.6, 0.24, 0.096, 0.064], abs=0.005)
    assert p_value > P_FALSE_ALARM, (p_value, table.tolist())


def test_the_independence_test_detects_a_coupled_hash(monkeypatch):
    """Couple one bit: the delay's top uniform bit copies the choice's top bit. The test must see it."""
    from doge_dist.engine import _shard_engine

    mix64 = _shard_engine.mix64
    top, choice_top = np.uint64(1 << 63), np.uint64(1 << 31)

    def coupled(x: np.ndarray) -> np.ndarray:
        h = mix64(x)
        h &= ~top
        h |= (h & choice_top) << np.uint64(32)
        return h

    monkeypatch.setattr(_shard_engine, "mix64", coupled)
    p_value, table = independence_p_value()
    assert p_value < 1e-30, ("a deliberately coupled engine was not detected; if the engine no longer "
                             "hashes through _shard_engine.mix64, move this patch to where it does",
                             p_value, table.tolist())
