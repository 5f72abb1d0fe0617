"""The HTML run report: self-contained, readable, the model's expectation drawn for the run's own
timeline buckets, and checked in a real browser (headless Chromium, a screenshot)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import service_missing

from doge_dist.model._expected import expected_timeline
from doge_dist.report import render_run_report, write_run_report
from doge_dist.report._charts import (
    MAX_POINTS,
    PALETTE,
    display_factor,
    events_chart,
    group_last,
    group_sum,
    observed_by_trigger,
    population_chart,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "examples"))

from banking_dynamics import build_generator  # noqa: E402


def day_of_banking(**kwargs):
    return build_generator("count", subjects=1500, days=1, seed=5, signups_per_day=400, churn_per_week=0.5,
                           **kwargs)


@pytest.fixture(scope="module")
def day_run():
    gen = day_of_banking()
    return gen, gen.start()


@pytest.fixture(scope="module")
def load_run():
    """A 3-second load shape on the unbounded banking model: every chart of the page has data."""
    gen = day_of_banking()
    gen.configure(ticks_num=None)
    result = gen.start(load_shape=[{"rate": 3000, "for": "1s"}, {"ramp": [3000, 9000], "for": "2s"}])
    return gen, result


def test_the_page_is_self_contained_and_readable(day_run, tmp_path):
    gen, result = day_run
    path = write_run_report(tmp_path / "sub" / "report.html", result, gen, title="one banking day",
                            details=[("model", "examples/banking_dynamics.py:build_generator")])
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>one banking day</title>" in page
    assert not re.findall(r'(?:src|href)="(?!#|data:)', page)
    assert "<link" not in page and "<script" not in page
    assert page.count("<svg") == 2  # events per trigger, live subjects (no rate chart: not paced)
    for text in ("Summary", "Events per trigger", "expected (model)", "observed (one colour per trigger)",
                 "events per 6 ticks = 6 min", "simulated time (UTC)", "live subjects",
                 "the run&#x27;s timeline buckets of 2 ticks = 2 min, in groups of 3",
                 "examples/banking_dynamics.py:build_generator", f"{result.total_events:,}",
                 f"{result.created:,} / {result.departed:,} / {result.live:,}"):
        assert text in page, text
    assert "Target and achieved event rate" not in page
    assert "vetoed triggers come out below it" in page  # the banking callbacks veto spending


def test_the_expected_line_is_the_models_for_the_runs_buckets(day_run):
    gen, result = day_run
    timeline = result.timeline
    expected = expected_timeline(gen, timeline.bucket_ticks, ticks=result.ticks)
    assert expected.bucket_ticks == timeline.bucket_ticks
    assert set(timeline.events) <= set(expected.buckets.tolist())
    by_trigger = expected.by_trigger()
    factor = display_factor(expected.buckets.size)
    assert factor == 3 and expected.buckets.size == 720 > MAX_POINTS  # 1,440 ticks in buckets of 2
    figure = events_chart(timeline, expected.buckets, by_trigger)
    observed = observed_by_trigger(timeline, expected.buckets)
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == len(set(timeline.triggers))
    for ax in panels:
        trigger = ax.get_title(loc="left")
        observed_line, expected_line = ax.get_lines()
        assert np.array_equal(observed_line.get_ydata(), group_sum(observed[trigger], factor))
        assert np.array_equal(expected_line.get_ydata(), group_sum(by_trigger[trigger], factor))
        assert observed_line.get_ydata().sum() == result.events_by_trigger[trigger]
        assert ax.get_xlabel() in ("", "simulated time (UTC)")
    assert any(ax.get_ylabel() == "events per 6 ticks = 6 min" for ax in panels)
    # grouping adds up whole buckets: group k is buckets 3k, 3k+1, 3k+2 of the model's expectation
    assert group_sum(by_trigger["login"], 3)[5] == pytest.approx(by_trigger["login"][15:18].sum())
    # the observed run follows the expectation: logins per bucket correlate with it, and not with the
    # same expectation 12 hours off
    assert np.corrcoef(observed["login"], by_trigger["login"])[0, 1] > 0.6
    shifted = np.roll(by_trigger["login"], by_trigger["login"].size // 2)
    assert np.corrcoef(observed["login"], shifted)[0, 1] < 0.3
    # the table's expected column is the same expectation
    page = render_run_report(result, gen)
    row = f"<td>login</td><td>{result.events_by_trigger['login']:,}</td><td>{by_trigger['login'].sum():,.1f}"
    assert row in page
    live = population_chart(timeline, expected.buckets, expected.live).axes[0].get_lines()
    assert np.array_equal(live[1].get_ydata(), group_last(expected.live, factor))
    assert live[0].get_ydata()[-1] == result.live


def test_a_page_without_the_model_draws_no_expectation(day_run):
    _, result = day_run
    page = render_run_report(result)
    assert page.count("<svg") == 2 and "No model was given" in page
    assert "expected (model)</th>" in page and "observed (one colour per trigger)" in page


def test_a_load_run_shows_target_and_achieved_per_step_and_second(load_run):
    gen, result = load_run
    page = render_run_report(result, gen)
    assert page.count("<svg") == 3
    for text in ("Target and achieved event rate", "target events/s", "achieved events/s",
                 "wall-clock seconds since the start of the run", "events per second", "step 2: ramp 3,000",
                 "ramp 3,000 -&gt; 9,000", "shortfall"):
        assert text in page, text
    assert [step["step"] for step in result.rate.steps] == [1, 2]


def test_the_page_renders_in_chromium(load_run, tmp_path):
    """A real browser draws the page: the screenshot is not blank and shows the charts' colours."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        service_missing("chromium is not installed (apt-get install chromium)")
    gen, result = load_run
    page = write_run_report(tmp_path / "load.html", result, gen, title="doge-dist load test")
    shot = tmp_path / "page.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400",
         f"file://{page}"], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from matplotlib.image import imread

    pixels = (imread(str(shot))[..., :3] * 255).round().astype(np.int16)
    assert pixels.shape[:2] == (2400, 1200)
    ink = (pixels.min(axis=2) < 230).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert ink > 0.03 and colours > 100, (ink, colours)
    shown = []
    for colour in PALETTE[:6]:  # the rate bars and the first trigger panels
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        if (np.abs(pixels - rgb).max(axis=2) <= 30).sum() > 150:
            shown.append(colour)
    assert len(shown) >= 5, shown
