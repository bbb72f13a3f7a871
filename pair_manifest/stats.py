"""Progress and quality figures from a decision log: per class against the target, with the
acceptance rate of the pairs shown and its trend (per block of `TREND_BLOCK` decisions, so a lead
sees where proposals help and where they do not), per annotator (decisions/hour, acceptance
rate), per tag, review agreement (percent and Cohen's kappa), and proposal quality (acceptance
rate per embedder and per rank bucket).

Imported decisions (`manifest import`) all carry the time of the import, not of a decision: they
count everywhere except in decisions per hour, which is unknown for them.

Used by `manifest stats` and by the app's progress panel, so both always show the same numbers.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from pair_manifest.protocol import PAIRS_PER_CLASS
from pair_manifest.store import TAGS, Decision

ACTIVE_GAP_SECONDS = 300  # a pause longer than this is not annotation time
RANK_BUCKETS = ((0, 10), (10, 50), (50, 200), (200, None))
TREND_BLOCK = 50  # decisions per block of a class's acceptance trend (benchmarks/proposals_precision.py's blocks)
IMPORTED = "import"  # the source of imported decisions: their time is the import's
UNJUDGED_SOURCES = (IMPORTED, "pick")  # not a shown pair accepted or rejected (pick mode records accepts only)


@dataclass
class Stats:
    target: int
    per_class: dict[str, dict] = field(default_factory=dict)
    per_annotator: dict[str, dict] = field(default_factory=dict)
    per_tag: dict[str, int] = field(default_factory=dict)
    review: dict = field(default_factory=dict)
    per_embedder: dict[str, dict] = field(default_factory=dict)
    per_rank_bucket: dict[str, dict] = field(default_factory=dict)
    accepted: int = 0
    decisions: int = 0

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in (
            "target", "accepted", "decisions", "per_class", "per_annotator", "per_tag", "review",
            "per_embedder", "per_rank_bucket")}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def live_decisions(decisions: list[Decision]) -> list[Decision]:
    """Decisions still in effect: no undo records, nothing that was undone."""
    undone = {d.undo_of for d in decisions if d.verdict == "undo"}
    return [d for d in decisions if d.verdict != "undo" and d.seq not in undone]


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Agreement beyond chance between two raters' labels; None when undefined (no items, or
    both raters always gave one and the same label)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[label] * second[label] for label in set(first) | set(second)) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _rate(accepts: int, total: int) -> float | None:
    return accepts / total if total else None


def proposal_source(source: str) -> tuple[str, int] | None:
    """('pixels', 3) for 'proposal:pixels:3'; None for manual or imported decisions."""
    parts = source.split(":")
    if len(parts) == 3 and parts[0] == "proposal" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def _bucket(rank: int) -> str:
    for low, high in RANK_BUCKETS:
        if rank >= low and (high is None or rank < high):
            return f"{low}-{high - 1}" if high else f"{low}+"
    raise ValueError(rank)


def compute_stats(decisions: list[Decision], *, target: int = PAIRS_PER_CLASS, class_names: dict[str, str] | None = None,
                  accepted_by_class: dict[str, int] | None = None) -> Stats:
    live = live_decisions(decisions)
    annotations = [d for d in live if d.review_of is None]
    reviews = [d for d in live if d.review_of is not None]
    stats = Stats(target=target, decisions=len(annotations) + len(reviews))

    by_seq = {d.seq: d for d in decisions}
    refuted = {r.review_of for r in reviews if r.verdict == "reject"}
    # The latest live annotate verdict per pair decides whether it is accepted.
    latest: dict[tuple[str, str], Decision] = {}
    for d in annotations:
        if d.verdict in ("accept", "reject"):
            latest[(d.file_a, d.file_b)] = d
    accepted = [d for d in latest.values() if d.verdict == "accept" and d.seq not in refuted]
    stats.accepted = len(accepted)

    counts: dict[str, Counter] = defaultdict(Counter)
    shown: dict[str, list[bool]] = defaultdict(list)  # accepted?, in log order, of the pairs shown per class
    for d in annotations:
        counts[d.wnid][d.verdict] += 1
        if d.verdict in ("accept", "reject") and d.source not in UNJUDGED_SOURCES:
            shown[d.wnid].append(d.verdict == "accept")
    accepted_count = accepted_by_class if accepted_by_class is not None else Counter(d.wnid for d in accepted)
    for wnid in sorted(set(counts) | set(accepted_count)):
        done = accepted_count.get(wnid, 0)
        stats.per_class[wnid] = {
            "name": (class_names or {}).get(wnid, ""), "accepted": done, "target": target,
            "percent": round(100.0 * min(done, target) / target, 1) if target else 0.0,
            "rejected": counts[wnid]["reject"], "skipped": counts[wnid]["skip"],
            **acceptance_trend(shown.get(wnid, [])),
        }

    per_annotator: dict[str, list[Decision]] = defaultdict(list)
    for d in live:
        per_annotator[d.annotator].append(d)
    for annotator, own in sorted(per_annotator.items()):
        verdicts = Counter(d.verdict for d in own if d.review_of is None)
        decided = verdicts["accept"] + verdicts["reject"]
        timed = [d for d in own if d.source != IMPORTED]
        hours = _active_hours(sorted(_time(d.decided_at) for d in decisions
                                     if d.annotator == annotator and d.source != IMPORTED))
        total = len(own)
        stats.per_annotator[annotator] = {
            "decisions": total, "accepted": verdicts["accept"], "rejected": verdicts["reject"],
            "skipped": verdicts["skip"], "reviews": sum(d.review_of is not None for d in own),
            "acceptance_rate": _rate(verdicts["accept"], decided), "imported": total - len(timed),
            "active_hours": round(hours, 3),
            # Imported decisions share the import's time: a rate over them would be meaningless.
            "decisions_per_hour": round(len(timed) / hours, 1) if timed and hours else None,
        }

    tag_counts = Counter(tag for d in accepted for tag in d.tags)
    stats.per_tag = {tag: tag_counts.get(tag, 0) for tag in TAGS}

    judged = [(by_seq[r.review_of].verdict, r.verdict) for r in reviews if r.review_of in by_seq]
    agree = sum(a == b for a, b in judged)
    stats.review = {
        "reviewed": len(judged), "confirmed": sum(b == "accept" for _, b in judged),
        "refuted": sum(b == "reject" for _, b in judged),
        "agreement": _rate(agree, len(judged)), "kappa": cohen_kappa(judged),
    }

    by_embedder: dict[str, Counter] = defaultdict(Counter)
    by_bucket: dict[str, Counter] = defaultdict(Counter)
    for d in annotations:
        origin = proposal_source(d.source)
        if origin is None or d.verdict == "skip":
            continue
        embedder, rank = origin
        by_embedder[embedder][d.verdict] += 1
        by_bucket[_bucket(rank)][d.verdict] += 1
    stats.per_embedder = {k: _summary(v) for k, v in sorted(by_embedder.items())}
    order = [_bucket(low) for low, _ in RANK_BUCKETS]
    stats.per_rank_bucket = {k: _summary(by_bucket[k]) for k in order if k in by_bucket}
    return stats


def acceptance_trend(accepted: list[bool], block: int = TREND_BLOCK) -> dict:
    """A class's acceptance rate of the pairs shown, per block of `block` decisions in log order
    (the last block may be shorter), and the change from the first block to the last."""
    blocks = [accepted[i:i + block] for i in range(0, len(accepted), block)]
    rates = [sum(b) / len(b) for b in blocks]
    return {"shown": len(accepted), "acceptance_rate": _rate(sum(accepted), len(accepted)),
            "acceptance_by_block": [round(r, 4) for r in rates],
            "trend": round(rates[-1] - rates[0], 4) if len(rates) > 1 else None}


def _summary(counter: Counter) -> dict:
    total = counter["accept"] + counter["reject"]
    return {"decided": total, "accepted": counter["accept"], "acceptance_rate": _rate(counter["accept"], total)}


def _active_hours(times: list[datetime]) -> float:
    seconds = sum(min((b - a).total_seconds(), ACTIVE_GAP_SECONDS) for a, b in zip(times, times[1:]))
    if times:
        seconds += min(ACTIVE_GAP_SECONDS, 10.0)  # the first decision took some time too
    return seconds / 3600.0


def _percent(value) -> str:
    return f"{100 * value:.0f}%" if value is not None else "-"


def format_trend(row: dict) -> str:
    """'62% 70% 81% (+19)': the acceptance rate per block of shown pairs, and the change."""
    rates = row.get("acceptance_by_block") or []
    if not rates:
        return "-"
    text = " ".join(_percent(r) for r in rates[-6:])
    if len(rates) > 6:
        text = "... " + text
    return text + (f" ({100 * row['trend']:+.0f})" if row.get("trend") is not None else "")


def format_stats(stats: Stats) -> str:
    lines = [f"accepted pairs: {stats.accepted} (target {stats.target} per class), decisions: {stats.decisions}", ""]
    lines.append(f"{'class':<10} {'name':<24} {'accepted':>8} {'target':>6} {'done':>6} {'rejected':>8} {'skipped':>7} "
                 f"{'accept%':>7}  trend per {TREND_BLOCK} shown")
    for wnid, row in stats.per_class.items():
        lines.append(f"{wnid:<10} {row['name'][:24]:<24} {row['accepted']:>8} {row['target']:>6} "
                     f"{row['percent']:>5.1f}% {row['rejected']:>8} {row['skipped']:>7} "
                     f"{_percent(row['acceptance_rate']):>7}  {format_trend(row)}")
    lines += ["", f"{'annotator':<16} {'decisions':>9} {'accepted':>8} {'accept%':>7} {'per hour':>8} {'reviews':>7}"]
    imported = False
    for name, row in stats.per_annotator.items():
        if row["decisions_per_hour"]:
            speed = f"{row['decisions_per_hour']:.0f}"
        else:
            speed = "unknown" if row.get("imported") else "-"
        imported = imported or bool(row.get("imported"))
        lines.append(f"{name[:16]:<16} {row['decisions']:>9} {row['accepted']:>8} {_percent(row['acceptance_rate']):>7} "
                     f"{speed:>8} {row['reviews']:>7}")
    if imported:
        lines.append("per hour: imported decisions carry the time of the import, so their rate is unknown "
                     "(left out of the figure)")
    total_tags = max(1, stats.accepted)
    lines += ["", "tags on accepted pairs: " + ", ".join(
        f"{tag} {n} ({100 * n / total_tags:.0f}%)" for tag, n in stats.per_tag.items())]
    review = stats.review
    if review["reviewed"]:
        kappa = f"{review['kappa']:.2f}" if review["kappa"] is not None else "undefined"
        lines.append(f"review: {review['reviewed']} reviewed, {review['confirmed']} confirmed, "
                     f"{review['refuted']} refuted, agreement {100 * review['agreement']:.0f}%, Cohen's kappa {kappa}")
    else:
        lines.append("review: nothing reviewed yet")
    for title, table in (("embedder", stats.per_embedder), ("proposal rank", stats.per_rank_bucket)):
        for key, row in table.items():
            rate = f"{100 * row['acceptance_rate']:.0f}%" if row["acceptance_rate"] is not None else "-"
            lines.append(f"{title} {key}: {row['accepted']}/{row['decided']} accepted ({rate})")
    return "\n".join(lines)
