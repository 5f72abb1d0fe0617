"""doge-dist compare, and the round trip of the issue: fit a log, generate from the YAML model through a
job spec, compare. The right model gives small distances, a deliberately wrong one clearly larger ones."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
import yaml
from conftest import service_missing
from test_fit import BANKING, PROFILES, generate, model_text

from doge_dist.cli import main
from doge_dist.learn import compare_logs, total_variation
from doge_dist.learn._compare import Reservoir
from doge_dist.learn._readers import LogBatch

FIELDS = ["--subject", "subject", "--event", "event", "--time", "timestamp"]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def batch(rows: list[tuple], source: str = "log") -> LogBatch:
    import pyarrow as pa

    subjects, events, times = zip(*rows)
    return LogBatch(pa.array(subjects), pa.array(events), np.array(times, dtype=np.int64), None, source, 1)


def test_total_variation():
    assert total_variation({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0
    assert total_variation({"a": 1}, {"b": 5}) == 1.0
    assert total_variation({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)
    assert total_variation(np.array([1.0, 0, 0]), np.array([0, 0.5, 0.5])) == 1.0


def test_metrics_of_small_logs_by_hand():
    hour = 3_600_000
    real = [(1, "a", 0), (1, "b", 60_000), (2, "a", hour), (2, "a", hour + 120_000),
            (1, "a", 2 * hour)]
    gen = [(1, "a", 0), (1, "a", 60_000), (2, "b", hour), (2, "a", hour + 60_000)]
    c = compare_logs([batch(real)], [batch(gen)])
    # shares: real a 4/5 b 1/5; generated a 3/4 b 1/4
    assert c.event_share_tv == pytest.approx(0.05)
    # after a, real: b once, a once; generated: a once -> TV 0.5 (weight 2);
    # after b, real: a; generated: a -> 0 (weight 1)
    assert c.by_event["a"]["next_event_tv"] == pytest.approx(0.5)
    assert c.by_event["b"]["next_event_tv"] == 0.0
    assert c.next_event_tv == pytest.approx(1 / 3)
    # dwell after a: real {60 s, 120 s}, generated {60 s}: KS 0.5;
    # after b: real {2 h - 60 s}, generated {60 s}: KS 1
    assert c.dwell_ks == {"a": pytest.approx(0.5), "b": pytest.approx(1.0)}
    assert c.dwell_ks_mean == pytest.approx((4 * 0.5 + 1 * 1.0) / 5)
    # hours: real 2 at 0h, 2 at 1h, 1 at 2h; generated 2 at 0h, 2 at 1h
    assert c.hourly_tv == pytest.approx(0.2)
    data = c.to_dict()
    for key in ("event_share_tv", "next_event_tv", "dwell_ks", "hourly_tv"):
        assert key in data
    json.dumps(data)  # plain data


def test_subjects_split_over_part_files_keep_their_order():
    """A generated run's part files each hold whole subjects: the same events in two files give distance 0."""
    rows = [(s, "a" if t % 2 else "b", t * 1000 + s) for t in range(20) for s in range(6)]
    whole = compare_logs([batch(rows)], [batch([r for r in rows if r[0] < 3], "p0"),
                                         batch([r for r in rows if r[0] >= 3], "p1")])
    assert whole.event_share_tv == whole.next_event_tv == whole.hourly_tv == whole.dwell_ks_mean == 0.0


def test_reservoir_is_exact_below_capacity_and_uniform_above():
    rng = np.random.default_rng(0)
    small = Reservoir(100, rng)
    small.add(np.arange(60))
    small.add(np.arange(60, 90))
    assert sorted(small.sample().tolist()) == list(range(90))
    big = Reservoir(2_000, rng)
    for start in range(0, 100_000, 7_000):
        big.add(np.arange(start, min(start + 7_000, 100_000)))
    sample = big.sample()
    assert sample.size == 2_000 and len(set(sample.tolist())) == 2_000
    assert abs(sample.mean() - 49_999.5) < 5 * 28_868 / np.sqrt(2_000)  # uniform over 0..99,999


def write_spec(path, model, out, *, subjects, ticks, seed, extra="", parts=None):
    path.write_text(textwrap.dedent(f"""\
        model: {model}
        subjects: {subjects}
        ticks: {ticks}
        tick_ms: 60000
        timestamp_start: 2024-01-01T00:00:00Z
        seed: {seed}
        sink:
          type: jsonl
          path: {out}
        """) + (f"  parts: {parts}\n" if parts else "") + extra)
    return path


def wrong_version(fitted: dict) -> dict:
    """The fitted model with the online choices swapped and offline activity made five times rarer."""
    wrong = json.loads(json.dumps(fitted))
    for t in wrong["transitions"]:
        if t["trigger"] == "logout":
            t["probability"] = round(t["probability"] * 0.3, 6)
        elif t["trigger"] == "open_loan_screen":
            t["probability"] = round(min(t["probability"] * 2.5, 100 - 21.0), 6)
        elif t["from"] not in ("login", "open_loan_screen", "close_loan_screen", "take_loan"):
            t["probability"] = round(t["probability"] / 5, 9)
    return wrong


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """real log -> fit -> good and wrong models -> generated logs (through job specs) -> comparisons."""
    tmp = tmp_path_factory.mktemp("round_trip")
    real = generate(tmp, model_text(BANKING), subjects=10_000, ticks=1440, seed=11, name="real.jsonl")
    assert main(["fit", str(real), *FIELDS, "--tick-ms", "60000", "--population", "10000", "-o",
                 str(tmp / "fitted.yaml"), "--quiet"]) == 0
    fitted = yaml.safe_load((tmp / "fitted.yaml").read_text())
    (tmp / "wrong.yaml").write_text(yaml.safe_dump(wrong_version(fitted), sort_keys=False))
    results = {}
    for name in ("fitted", "wrong"):
        spec = write_spec(tmp / f"{name}-job.yaml", f"{name}.yaml", tmp / f"{name}-{{shard}}.jsonl",
                          subjects=10_000, ticks=1440, seed=3)
        assert main(["run", str(spec), "--quiet"]) == 0
        assert main(["compare", str(real), str(tmp / f"{name}-0.jsonl"), *FIELDS, "--json",
                     str(tmp / f"{name}.json"), "--html", str(tmp / f"{name}.html")]) == 0
        results[name] = json.loads((tmp / f"{name}.json").read_text())
    return tmp, results


def test_round_trip_distances_are_small_for_the_fitted_model(round_trip):
    _, results = round_trip
    good = results["fitted"]
    assert good["event_share_tv"] < 0.02
    assert good["next_event_tv"] < 0.03
    assert good["dwell_ks_mean"] < 0.04 and max(good["dwell_ks"].values()) < 0.08
    assert good["hourly_tv"] < 0.04
    assert good["real"]["events"] > 50_000 and good["generated"]["events"] > 50_000


def test_a_wrong_model_is_clearly_further_away(round_trip):
    _, results = round_trip
    good, wrong = results["fitted"], results["wrong"]
    for metric in ("event_share_tv", "next_event_tv", "dwell_ks_mean"):
        assert wrong[metric] > max(5 * good[metric], 0.1), (metric, good[metric], wrong[metric])
    # both logs are flat over the day: the time-of-day distance cannot tell them apart (see the profile test)


def test_round_trip_with_a_daily_profile(tmp_path, capsys):
    real = generate(tmp_path, model_text(BANKING, PROFILES), subjects=10_000, ticks=2880, seed=5,
                    name="r.jsonl")
    distances = {}
    for name, profile in (("flat", "none"), ("daily", "daily")):
        assert main(["fit", str(real), *FIELDS, "--tick-ms", "60000", "--population", "10000", "--profile",
                     profile, "-o", str(tmp_path / f"{name}.yaml"), "--quiet"]) == 0
        spec = write_spec(tmp_path / f"{name}-job.yaml", f"{name}.yaml",
                          tmp_path / f"{name}-{{shard}}.jsonl", subjects=10_000, ticks=2880, seed=9)
        assert main(["run", str(spec), "--quiet"]) == 0
        assert main(["compare", str(real), str(tmp_path / f"{name}-0.jsonl"), *FIELDS, "--json",
                     str(tmp_path / f"{name}.json")]) == 0
        distances[name] = json.loads((tmp_path / f"{name}.json").read_text())["hourly_tv"]
    assert distances["daily"] < 0.04 < distances["flat"] and distances["flat"] > 3 * distances["daily"]


def test_the_compare_table_and_files(round_trip, capsys, tmp_path):
    tmp, _ = round_trip
    code, out, err = cli(capsys, "compare", tmp / "real.jsonl", tmp / "fitted-0.jsonl", *FIELDS)
    assert code == 0, err
    for words in ("event_share_tv", "next_event_tv", "dwell_ks", "hourly_tv", "login", "real share"):
        assert words in out
    page = (tmp / "fitted.html").read_text()
    assert page.count("<svg") >= 4
    assert not re.findall(r'(?:src|href)="(?!#|data:)', page) and "<link" not in page  # self-contained


def test_the_html_page_renders_in_chromium(round_trip, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        service_missing("chromium is not installed (apt-get install chromium)")
    tmp, _ = round_trip
    shot = tmp_path / "page.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
         f"file://{tmp / 'fitted.html'}"], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    ink = (pixels.min(axis=2) < 0.9).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert ink > 0.02 and colours > 20, (ink, colours)


def test_generated_part_files_and_field_names(tmp_path, capsys):
    """Generated logs may name their fields differently (--gen-*) and come in several part files."""
    rows = [{"who": s, "what": "a" if t % 3 else "b", "when": 1_000 * t + s}
            for t in range(50) for s in range(4)]
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for part in (0, 1):
        (tmp_path / f"gen-{part}.jsonl").write_text("".join(
            json.dumps({"subject": r["who"], "event": r["what"], "timestamp": r["when"]}) + "\n"
            for r in rows if r["who"] % 2 == part))
    code, out, err = cli(capsys, "compare", tmp_path / "real.jsonl", tmp_path / "gen-0.jsonl",
                         tmp_path / "gen-1.jsonl", "--subject", "who", "--event", "what", "--time", "when",
                         "--gen-subject", "subject", "--gen-event", "event", "--gen-time", "timestamp",
                         "--json", tmp_path / "c.json")
    assert code == 0, err
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["event_share_tv"] == data["next_event_tv"] == data["hourly_tv"] == 0.0
    assert data["generated"]["events"] == len(rows) and len(data["generated"]["logs"]) == 2


@pytest.mark.parametrize("generated, message", [
    ("", "is empty"),
    ('{"subject": 1, "event": "a"}\n', "no field 'timestamp'"),
    ('{"subject": 1, "event": "a", "timestamp": 5000}\n{"subject": 1, "event": "a", "timestamp": 10}\n',
     "record 2: subject 1 has an event earlier than its previous one"),
])
def test_compare_bad_input_is_status_2(tmp_path, capsys, generated, message):
    (tmp_path / "real.jsonl").write_text('{"subject": 1, "event": "a", "timestamp": 1}\n')
    (tmp_path / "gen.jsonl").write_text(generated)
    code, _, err = cli(capsys, "compare", tmp_path / "real.jsonl", tmp_path / "gen.jsonl", *FIELDS)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.ray
def test_generate_on_two_workers_and_compare(tmp_path, capsys, ray_session):
    """The walk-through's path: a YAML model in a job spec, two Ray workers writing four part files."""
    real = generate(tmp_path, model_text(BANKING), subjects=4_000, ticks=720, seed=2, name="real.jsonl")
    assert main(["fit", str(real), *FIELDS, "--tick-ms", "60000", "--population", "4000", "-o",
                 str(tmp_path / "fitted.yaml"), "--quiet"]) == 0
    spec = write_spec(tmp_path / "job.yaml", "fitted.yaml", tmp_path / "gen-{part}.jsonl", subjects=4_000,
                      ticks=720, seed=4, parts=4, extra="workers: 2\n")
    assert main(["run", str(spec), "--quiet", "--report", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    parts = sorted(tmp_path.glob("gen-*.jsonl"))
    assert [p.name for p in parts] == [f"gen-{k}.jsonl" for k in range(4)]
    assert sum(len(p.read_text().splitlines()) for p in parts) == report["total_events"] > 0
    code, _, err = cli(capsys, "compare", real, *parts, *FIELDS, "--json", tmp_path / "c.json")
    assert code == 0, err
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["event_share_tv"] < 0.04 and data["next_event_tv"] < 0.05
    assert data["generated"]["first"] == "2024-01-01T00:00:00.000Z"
    assert data["generated"]["subjects"] <= 4_000


def test_clickstream_walkthrough_at_small_scale(tmp_path, capsys, monkeypatch):
    """The README's walk-through on the committed example log: fit, inspect, graph, generate from the
    example spec (10,000 users on one worker instead of 1,000,000 on two), compare."""
    from conftest import REPO_ROOT

    examples = tmp_path / "examples" / "clickstream"
    examples.mkdir(parents=True)
    for name in ("clickstream.jsonl.gz", "generate.yaml"):
        shutil.copy(REPO_ROOT / "examples" / "clickstream" / name, examples / name)
    monkeypatch.chdir(tmp_path)
    log = "examples/clickstream/clickstream.jsonl.gz"
    code, out, err = cli(capsys, "fit", log, "--subject", "user", "--event", "event", "--time", "ts",
                         "--tick-ms", "1000", "--profile", "daily", "--population", "10000",
                         "-o", "out/clickstream.yaml")
    assert code == 0, err
    assert "60,011 events of 3,780 subjects" in err and "with a daily profile" in err  # summary: stderr
    assert cli(capsys, "inspect", "out/clickstream.yaml")[0] == 0
    assert cli(capsys, "graph", "out/clickstream.yaml", "-o", "out/clickstream.dot")[0] == 0
    code, out, err = cli(capsys, "run", "examples/clickstream/generate.yaml", "--subjects", "10000",
                         "--workers", "1", "--quiet")
    assert code == 0, err
    parts = sorted(str(p) for p in (tmp_path / "out").glob("clickstream-*.jsonl"))
    assert len(parts) == 4
    code, out, err = cli(capsys, "compare", log, *parts, "--subject", "user", "--event", "event", "--time",
                         "ts", "--gen-subject", "subject", "--gen-time", "timestamp",
                         "--json", "out/compare.json", "--html", "out/compare.html")
    assert code == 0, err
    data = json.loads((tmp_path / "out/compare.json").read_text())
    assert data["event_share_tv"] < 0.02 and data["next_event_tv"] < 0.03 and data["hourly_tv"] < 0.05
    assert data["dwell_ks_mean"] < 0.2  # think times are log-normal in the log, geometric in the model


def test_the_example_log_is_what_make_log_writes(tmp_path):
    import gzip

    from conftest import REPO_ROOT

    from examples.clickstream.make_log import make_log

    count = make_log(tmp_path / "again.jsonl.gz")
    committed = gzip.open(REPO_ROOT / "examples/clickstream/clickstream.jsonl.gz", "rt").read()
    assert gzip.open(tmp_path / "again.jsonl.gz", "rt").read() == committed
    assert count == committed.count("\n") == 60_011
