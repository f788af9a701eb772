"""Screenshots of a real report for the docs: docs/images/report-*.png.

Runs the quickstart recipe into a temporary folder, writes its report with
``dcframe report``, and photographs sections of it with headless Chromium (one page per
section, the others hidden; the blank margin below is cropped). The PNGs are reduced to
a palette so each stays well under 200 KB.

    python scripts/docs_screenshots.py            # the full quickstart run (minutes)
    python scripts/docs_screenshots.py --keep /tmp/shots   # keep the run and report there
    python scripts/docs_screenshots.py --run /tmp/shots/quickstart   # an existing run

Needs ``chromium`` on the PATH (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
WIDTH = 1280
# (file name, section id, the most pixels of the section to keep from its top, extra CSS)
SHOTS = (
    ("report-curves.png", "curves", 720, ""),
    # the first gallery (the largest clusters) only
    ("report-galleries.png", "galleries", 900, ".cards ~ h3, .cards ~ .cards { display: none; }"),
    ("report-labels.png", "labels", 530, ""),
    ("report-stability.png", "stability", 1150, ""),
    ("report-transforms.png", "transforms", 1250, ""),
)
MAX_BYTES = 200_000


def dcframe(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dcframe", *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def only_section(report: Path, section: str, css: str, target: Path) -> None:
    """A copy of the report showing nothing but ``section`` (styled further by ``css``)."""
    hide = (
        f"<style>header, nav {{ display: none; }} section:not(#{section}) {{ display: none; }}"
        f" section {{ margin-top: 0; }} main {{ padding-top: 4px; }} {css}</style></head>"
    )
    target.write_text(report.read_text(encoding="utf-8").replace("</head>", hide, 1))


def screenshot(chromium: str, page: Path, shot: Path, height: int) -> None:
    subprocess.run(
        [
            *(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
            *(f"--screenshot={shot}", f"--window-size={WIDTH},{height + 400}", page.as_uri()),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def trimmed(shot: Path, height: int) -> Image.Image:
    """The screenshot cut to its content (no blank margin) and at most ``height`` tall."""
    image = Image.open(shot).convert("RGB")
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox() or (0, 0, *image.size)
    return image.crop((0, 0, min(image.width, box[2] + 12), min(height, box[3] + 12)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", type=Path, help="Folder for the run and report (kept).")
    parser.add_argument("--set", action="append", default=[], help="Recipe overrides.")
    parser.add_argument("--run", type=Path, help="Photograph the report of this run instead.")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="dcframe-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    run = args.run
    if run is None:
        overrides = [f"--set=run.output_dir={work}", *(f"--set={o}" for o in args.set)]
        run = Path(dcframe("run", str(REPO / "recipes" / "quickstart.toml"), "-q", *overrides))
    report = Path(dcframe("report", str(run), "--out", str(work / "report.html")))
    print(f"report: {report} ({report.stat().st_size:,} bytes)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, section, height, css in SHOTS:
        page, raw = work / f"only-{section}.html", work / f"raw-{name}"
        only_section(report, section, css, page)
        screenshot(chromium, page, raw, height)
        image = trimmed(raw, height).quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        image.save(IMAGES / name, optimize=True)
        size = (IMAGES / name).stat().st_size
        print(f"{IMAGES / name}: {image.width} x {image.height}, {size:,} bytes")
        if size > MAX_BYTES:
            print(f"  larger than {MAX_BYTES:,} bytes: lower its height in SHOTS", file=sys.stderr)
            return 1
    if args.keep is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
