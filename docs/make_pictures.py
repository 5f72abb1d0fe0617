"""Make the README's pictures of the dynamics: run the two example jobs with ``--report-html``, render
each page with headless Chromium to PNG, and draw three small charts as PNG.

Run from the repository root (needs matplotlib and Debian's chromium)::

    python docs/make_pictures.py          # writes docs/*.png, leaves the runs' output in out/pictures/

The load test is paced by the wall clock, so its picture differs a little from run to run; the banking
week is seeded and gives the same events every time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
OUT = REPO / "out" / "pictures"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))

WIDTH_PX = 900          # the page screenshots are scaled down to this width
PAGE_HEIGHT_PX = 3400   # tall enough for each whole page at 1200 px wide


def run_job(spec: str, name: str) -> Path:
    """``doge-dist run`` the example job with --report-html and --report; return the HTML path."""
    page = OUT / f"{name}.html"
    subprocess.run([sys.executable, "-m", "doge_dist", "run", str(REPO / "examples" / "jobs" / spec),
                    "--report-html", str(page), "--report", str(OUT / f"{name}.json"), "--quiet"],
                   cwd=OUT, check=True, timeout=600)
    return page


def screenshot(page: Path, png: Path) -> None:
    """The page in headless Chromium at 1200 px wide, trimmed of the blank bottom and scaled down."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "shot.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
                        f"--window-size=1200,{PAGE_HEIGHT_PX}", f"file://{page}"],
                       check=True, capture_output=True, timeout=120)
        image = Image.open(shot).convert("RGB")
    blank = Image.new("RGB", image.size, (255, 255, 255))
    box = ImageChops.difference(image, blank).getbbox()
    if box is not None:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
    scale = WIDTH_PX / image.width
    image = image.resize((WIDTH_PX, round(image.height * scale)), Image.Resampling.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)  # 8-bit: small


def save_png(fig, path: Path, dpi: int = 80) -> None:
    fig.savefig(str(path), dpi=dpi)  # a Figure made outside pyplot draws with Agg for PNG


def charts() -> None:
    """Three small charts: a week of the banking model (logins, spending), its live users, a load shape."""
    import logging

    from banking_dynamics import build_generator

    from doge_dist.model._expected import expected_timeline
    from doge_dist.report._charts import events_chart, population_chart, rate_chart

    logging.getLogger("doge_dist").setLevel(logging.ERROR)
    gen = build_generator("count", subjects=2000, days=7, seed=7)  # the banking-dynamics job's settings
    result = gen.start()
    timeline = result.timeline
    expected = expected_timeline(gen, timeline.bucket_ticks, ticks=result.ticks)
    fig = events_chart(timeline, expected.buckets, expected.by_trigger(), triggers=["login", "spending"],
                       width=9)
    save_png(fig, DOCS / "dynamics-events.png")
    save_png(population_chart(timeline, expected.buckets, expected.live), DOCS / "dynamics-population.png")
    report = json.loads((OUT / "load-test.json").read_text())["result"]["rate"]
    from doge_dist.run._result import RateReport

    rate = RateReport(steps=report["steps"], per_second=report["per_second"],
                      target_events=report["target_events"], achieved_events=report["achieved_events"])
    save_png(rate_chart(rate), DOCS / "load-rate.png")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    screenshot(run_job("banking-dynamics.yaml", "banking-dynamics"), DOCS / "report-banking-dynamics.png")
    screenshot(run_job("load-test.yaml", "load-test"), DOCS / "report-load-test.png")
    charts()
    for name in ("report-banking-dynamics.png", "report-load-test.png", "dynamics-events.png",
                 "dynamics-population.png", "load-rate.png"):
        print(f"docs/{name}: {(DOCS / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
