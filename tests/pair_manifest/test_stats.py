"""`manifest stats` figures that need care: decisions per hour when decisions were imported (they
all carry the import's time), and each class's acceptance rate of the pairs shown and its trend."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from pair_manifest.decisions import Decision
from pair_manifest.stats import TREND_BLOCK, compute_stats, format_stats

WNID = "n03085013"
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def decision(seq: int, verdict: str, *, wnid: str = WNID, annotator: str = "ann", seconds: float = 0.0,
             source: str = "proposal:pixels:0") -> Decision:
    when = (START + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return Decision(seq, f"k{seq}", wnid, f"{wnid}/a{seq}.JPEG", f"{wnid}/b{seq}.JPEG", "0" * 64, "1" * 64, verdict,
                    (), annotator, when, source, None, None)


def cli(*args):
    result = subprocess.run([sys.executable, "-m", "semantic_pairs_cli", *map(str, args)], capture_output=True,
                            text=True)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_imported_decisions_have_no_rate_through_the_cli(tmp_path, sample_images):
    """30 pairs imported at one instant: the rate is unknown, not thousands of decisions per hour."""
    rows = []
    for wnid in ("n03085013", "n02129165", "n01443537"):
        names = sorted(p.name for p in (sample_images / wnid).iterdir())
        rows += [(wnid, f"{wnid}/{a}", f"{wnid}/{b}") for a, b in zip(names[0:20:2], names[1:20:2])]
    with open(tmp_path / "pairs.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("wnid", "file_a", "file_b"), *rows])
    assert cli("manifest", "import", tmp_path / "pairs.csv", "--images", sample_images, "--out",
               tmp_path / "m").returncode == 0
    as_json = json.loads(cli("manifest", "stats", tmp_path / "m", "--json").stdout)
    row = as_json["per_annotator"]["import"]
    assert row["decisions"] == len(rows) == row["imported"] and row["decisions_per_hour"] is None
    text = cli("manifest", "stats", tmp_path / "m").stdout
    assert [line.split() for line in text.splitlines() if line.startswith("import ")] == [
        ["import", str(len(rows)), str(len(rows)), "100%", "unknown", "0"]]
    assert "per hour: imported decisions carry the time of the import, so their rate is unknown" in text


def test_an_annotators_rate_counts_only_the_decisions_they_timed():
    imported = [decision(i, "accept", source="import", annotator="ann", seconds=0) for i in range(1, 101)]
    live = [decision(100 + i, "accept", annotator="ann", seconds=3600 + 60 * i) for i in range(1, 31)]  # one a minute
    row = compute_stats(imported + live).per_annotator["ann"]
    assert row["decisions"] == 130 and row["imported"] == 100
    assert row["decisions_per_hour"] == pytest.approx(30 / ((29 * 60 + 10) / 3600), rel=1e-3)


def test_each_class_shows_its_acceptance_rate_per_block_and_the_trend():
    """The first 50 pairs shown: 20 accepted; the next 50: 40; then 10 more, all accepted. Pick
    accepts and skips are not pairs shown and judged; another class keeps its own figures."""
    verdicts = ["accept"] * 20 + ["reject"] * 30 + ["accept"] * 40 + ["reject"] * 10 + ["accept"] * 10
    log = [decision(i + 1, v, seconds=i) for i, v in enumerate(verdicts)]
    log += [decision(200, "accept", source="pick"), decision(201, "skip"),
            decision(202, "reject", wnid="n02129165"), decision(203, "accept", wnid="n02129165")]
    stats = compute_stats(log)
    row = stats.per_class[WNID]
    assert row["shown"] == 110 and row["acceptance_rate"] == pytest.approx(70 / 110)
    assert row["acceptance_by_block"] == [0.4, 0.8, 1.0] and row["trend"] == pytest.approx(0.6)
    other = stats.per_class["n02129165"]
    assert other["acceptance_by_block"] == [0.5] and other["trend"] is None
    line = next(line for line in format_stats(stats).splitlines() if line.startswith(WNID))
    assert line.endswith("64%  40% 80% 100% (+60)")
    assert f"trend per {TREND_BLOCK} shown" in format_stats(stats)


def test_an_undone_decision_leaves_the_trend():
    log = [decision(1, "reject"), decision(2, "accept")]
    undo = Decision(3, "u", WNID, log[0].file_a, log[0].file_b, "", "", "undo", (), "ann",
                    log[0].decided_at, "undo", None, 1)
    row = compute_stats([*log, undo]).per_class[WNID]
    assert row["shown"] == 1 and row["acceptance_by_block"] == [1.0]
