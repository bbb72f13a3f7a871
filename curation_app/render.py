"""HTML of the page parts: the item (verify pair, pick grid, review pair), notes, progress.

Image URLs are relative (`img/<size>/<wnid>/<name>`), so the app also works under a path prefix
behind a proxy. Everything interpolated is escaped.
"""
from __future__ import annotations

import time
from html import escape
from urllib.parse import quote

from pair_manifest.decisions import TAGS
from pair_manifest.stats import Stats, format_trend

from curation_app.views import View
from curation_app.workstate import Item

SHORTCUTS = (
    ("a", "accept"), ("r", "reject"), ("s", "skip"), ("u", "undo"), ("1-6", "tags"), ("p", "verify / pick"),
    ("v", "review"),
)
PICK_SHORTCUTS = (("click or arrows + a", "pair with the anchor"), ("r", "more candidates"), ("s", "skip anchor"))
REVIEW_SHORTCUTS = (("a", "confirm: a good pair"), ("r", "refute"), ("s", "skip"))


def image_url(file: str, size: str) -> str:
    wnid, name = file.split("/", 1)
    return f"img/{size}/{quote(wnid)}/{quote(name)}"


def _figure(file: str, size: str, caption: str, extra_class: str = "", attrs: str = "") -> str:
    name = file.split("/", 1)[1]
    original = escape(image_url(file, "original"))
    return (f'<figure class="sp-fig {extra_class}" {attrs}><div class="sp-imgbox">'
            f'<img class="sp-main" src="{escape(image_url(file, size))}" alt="{escape(name)}"></div>'
            f'<figcaption><span class="sp-cap">{caption}</span>'
            f'<a class="sp-orig" href="{original}" target="_blank" rel="noopener" title="open the original">'
            "original ↗</a></figcaption></figure>")


def _bar(view: View) -> str:
    counts = view.counts
    item = view.item
    parts = []
    if item is not None and item.wnid:
        parts.append(f'<span class="sp-class">{escape(view.class_name)} <code>{escape(item.wnid)}</code></span>')
        parts.append(f'<span class="sp-chip" id="sp-class-count">{counts["class_accepted"]} / {counts["target"]} '
                     "pairs in this class</span>")
    parts.append(f'<span class="sp-chip">{counts["overall_accepted"]:,} / {counts["overall_target"]:,} overall</span>')
    mine = counts["my_decisions"]
    parts.append(f'<span class="sp-chip" id="sp-my-count">you: {mine:,} decision{"" if mine == 1 else "s"}</span>')
    if view.mode == "review" and counts.get("reviewed"):
        kappa = "–" if counts.get("kappa") is None else f"{counts['kappa']:.2f}"
        parts.append(f'<span class="sp-chip">agreement {_percent(counts.get("agreement"))} · κ {kappa} '
                     f'({counts["reviewed"]} reviewed)</span>')
    if item is not None and item.source.startswith("proposal:"):
        _, embedder, rank = item.source.split(":", 2)
        parts.append(f'<span class="sp-chip sp-muted">proposal #{escape(rank)} · {escape(embedder)}</span>')
    return '<div class="sp-bar">' + "".join(parts) + "</div>"


def _prefetch(upcoming: Item | None) -> str:
    if upcoming is None:
        return ""
    urls = [image_url(f, "preview") for f in upcoming.files] + [image_url(c, "thumb") for c in upcoming.candidates]
    return '<div class="sp-prefetch" hidden>' + "".join(
        f'<img src="{escape(u)}" alt="" loading="eager">' for u in urls) + "</div>"


def render_item(view: View) -> str:
    item = view.item
    rev = time.time_ns()  # every response changes the element, so the page knows it arrived
    key = item.key if item else ""
    head = (f'<div class="sp-item" data-mode="{view.mode}" data-key="{escape(key)}" data-rev="{rev}" '
            f'data-files="{escape(" ".join(item.files) if item else "")}">')
    body = _bar(view)
    if item is None or not item.files:
        body += f'<div class="sp-empty">{escape(view.message or "Nothing to show.")}</div>'
    elif view.mode == "pick":
        anchor = item.files[0]
        cands = "".join(
            _figure(c, "thumb", f'<span class="sp-num">{i + 1}</span>', "sp-cand",
                    f'data-file="{escape(c)}" data-index="{i}" title="{escape(c.split("/", 1)[1])}"')
            for i, c in enumerate(item.candidates))
        body += ('<div class="sp-pick">'
                 + _figure(anchor, "preview", f"anchor · {escape(anchor.split('/', 1)[1])}", "sp-anchor")
                 + f'<div class="sp-grid">{cands}</div></div>'
                 + f'<div class="sp-hint">Page {item.page + 1}: click the candidate that shows the same kind of '
                   "object in a different context (or move with the arrow keys and press <kbd>a</kbd>); "
                   "<kbd>r</kbd> shows more candidates.</div>")
    else:
        a, b = item.files
        if view.mode == "review":
            body += ('<div class="sp-banner">Review: is this a good semantic pair (same class, different photos, '
                     "different context)? <kbd>a</kbd> confirm · <kbd>r</kbd> refute · <kbd>s</kbd> skip</div>")
        body += ('<div class="sp-pair">' + _figure(a, "preview", escape(a.split("/", 1)[1]))
                 + _figure(b, "preview", escape(b.split("/", 1)[1])) + "</div>")
    if view.class_note:
        body += f'<div class="sp-classnote">⚠ {escape(view.class_note)}</div>'
    return head + body + _prefetch(view.upcoming) + "</div>"


def render_notes(view: View) -> str:
    if not view.notes:
        return '<div class="sp-notes" data-empty="1"></div>'
    items = "".join(f'<li class="{"sp-ok" if n.startswith(("Saved", "Undone")) else "sp-warn"}">{escape(n)}</li>'
                    for n in view.notes)
    return f'<div class="sp-notes"><ul>{items}</ul></div>'


def render_key_strip() -> str:
    """The main keys in one line at the top of the page, always in view."""
    return '<span class="sp-strip">' + " ".join(
        f"<kbd>{escape(k)}</kbd> {escape(v)}" for k, v in SHORTCUTS) + "</span>"


def render_shortcuts() -> str:
    def keys(pairs):
        return " · ".join(f"<kbd>{escape(k)}</kbd> {escape(v)}" for k, v in pairs)

    return (f'<div class="sp-keys"><div>{keys(SHORTCUTS)}</div>'
            f'<div><b>pick:</b> {keys(PICK_SHORTCUTS)} &nbsp; <b>review:</b> {keys(REVIEW_SHORTCUTS)}</div>'
            f'<div class="sp-muted">Tags: ' + ", ".join(f"{i + 1} {t}" for i, t in enumerate(TAGS))
            + ". Keys are ignored while you type in a text field.</div></div>")


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def render_progress(stats: Stats, wnids: list[str], names: dict[str, str], holders: dict[str, str]) -> str:
    target = stats.target
    total = sum(min(stats.per_class.get(w, {}).get("accepted", 0), target) for w in wnids)
    overall = total / (target * len(wnids)) if wnids else 0.0
    rows = []
    for wnid in wnids:
        row = stats.per_class.get(wnid, {"accepted": 0, "rejected": 0, "skipped": 0})
        share = min(row["accepted"], target) / target
        rows.append(
            f"<tr><td><code>{wnid}</code></td><td>{escape(names.get(wnid, ''))}</td>"
            f'<td class="sp-num-cell">{row["accepted"]} / {target}</td>'
            f'<td><div class="sp-meter"><div style="width:{100 * share:.1f}%"></div></div></td>'
            f'<td class="sp-num-cell">{row["rejected"]}</td><td class="sp-num-cell">{row["skipped"]}</td>'
            f'<td class="sp-num-cell">{_percent(row.get("acceptance_rate"))}</td><td>{escape(format_trend(row))}</td>'
            f"<td>{escape(holders.get(wnid, ''))}</td></tr>")
    people = []
    for name, row in stats.per_annotator.items():
        speed = f"{row['decisions_per_hour']:.0f}" if row["decisions_per_hour"] else "–"
        people.append(f"<tr><td>{escape(name)}</td><td class='sp-num-cell'>{row['decisions']}</td>"
                      f"<td class='sp-num-cell'>{row['accepted']}</td><td class='sp-num-cell'>"
                      f"{_percent(row['acceptance_rate'])}</td><td class='sp-num-cell'>{speed}</td>"
                      f"<td class='sp-num-cell'>{row['reviews']}</td></tr>")
    review = stats.review
    kappa = "–" if review.get("kappa") is None else f"{review['kappa']:.2f}"
    review_line = (f"{review['reviewed']} reviewed · {review['confirmed']} confirmed · {review['refuted']} refuted · "
                   f"agreement <b id='sp-agreement'>{_percent(review['agreement'])}</b> · "
                   f"Cohen's κ <b id='sp-kappa'>{kappa}</b>") if review.get("reviewed") else "nothing reviewed yet"
    return (
        f'<div class="sp-progress"><div class="sp-overall"><b>{total:,}</b> of {target * len(wnids):,} pairs '
        f"({100 * overall:.1f}%) in {len(wnids)} classes · {stats.decisions:,} decisions · review: {review_line}</div>"
        '<div class="sp-tables"><table class="sp-table"><thead><tr><th>class</th><th>name</th><th>pairs</th>'
        "<th></th><th>rejected</th><th>skipped</th><th>accept rate</th><th>per 50 shown</th><th>with</th></tr></thead><tbody>" + "".join(rows)
        + '</tbody></table><table class="sp-table"><thead><tr><th>annotator</th><th>decisions</th><th>accepted</th>'
        "<th>accept rate</th><th>per hour</th><th>reviews</th></tr></thead><tbody>" + "".join(people)
        + "</tbody></table></div></div>")
