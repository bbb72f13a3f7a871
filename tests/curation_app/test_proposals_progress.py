"""The app's progress panel shows each class's acceptance rate of the pairs shown and its trend,
the same figures `manifest stats` prints (one computation, `pair_manifest.stats`)."""
from __future__ import annotations

import itertools

from curation_app.progress import ProgressBoard
from curation_app.render import render_progress
from pair_manifest.stats import TREND_BLOCK, compute_stats
from pair_manifest.store import DecisionStore, NewDecision

WNID = "n02129165"


def test_the_panel_shows_the_acceptance_trend_of_each_class(tmp_path, sample_images):
    files = [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]
    store = DecisionStore(tmp_path / "decisions.sqlite", images_root=sample_images)
    rejected = list(itertools.combinations(files[:20], 2))[:TREND_BLOCK]  # a first block of rejects
    for number, (a, b) in enumerate(rejected):
        store.record(NewDecision(f"r{number}", WNID, a, b, "reject", "ann", source=f"proposal:pixels:{number}"))
    for number, (a, b) in enumerate(zip(files[20:30], files[30:40])):  # then ten accepts
        store.record(NewDecision(f"a{number}", WNID, a, b, "accept", "ann", source=f"proposal:pixels:{50 + number}"))
    stats, covered = ProgressBoard(store, target=157).stats()
    assert covered == TREND_BLOCK + 10
    row = stats.per_class[WNID]
    assert row["acceptance_by_block"] == [0.0, 1.0] and row["trend"] == 1.0
    assert row == compute_stats(store.decisions(), target=157).per_class[WNID] | {"name": row["name"]}
    html = render_progress(stats, [WNID, "n03085013"], {WNID: "Persian cat"}, {})
    assert "<th>accept rate</th><th>per 50 shown</th>" in html
    assert '<td class="sp-num-cell">17%</td><td>0% 100% (+100)</td>' in html  # 10 of 60 shown
    assert '<td class="sp-num-cell">–</td><td>-</td>' in html  # a class with nothing shown yet
    store.close()
