"""The Gradio page: one Blocks app, a thin layer over `Curation`.

Each handler asks the login session who is calling (`gr.Request.username`; on a loopback address
without login, the local user) and returns the whole page state. The buttons are also the API
(`/accept`, `/reject`, `/skip`, `/pick`, `/undo`, `/mode`, `/toggle_mode`, `/class`, `/current`,
`/progress`), which `gradio_client` calls in the tests. Keyboard shortcuts are a script in the
page head (`keys.js`) that clicks these buttons.
"""
from __future__ import annotations

import logging
import uuid
from html import escape
from importlib import resources

import gradio as gr

from pair_manifest.decisions import TAGS
from pair_manifest.errors import UserError
from pair_manifest.sqlite_db import StorageError

from curation_app.progress import ProgressBoard
from curation_app.render import render_item, render_key_strip, render_notes, render_progress, render_shortcuts
from curation_app.service import Curation
from curation_app.views import View
from curation_app.workstate import MODES

log = logging.getLogger("curation_app")
PROGRESS_REFRESH_SECONDS = 10


def asset(name: str) -> str:
    return resources.files("curation_app").joinpath(name).read_text(encoding="utf-8")


def page_head() -> str:
    return f"<script>\n{asset('keys.js')}\n</script>"


def page_css() -> str:
    return asset("app.css")


class Handlers:
    """Gradio callbacks. Errors a user can act on become a note; anything else is logged with its
    traceback and the page shows a one-line message with a reference."""

    def __init__(self, curation: Curation, board: ProgressBoard, local_user: str | None):
        self.curation = curation
        self.board = board
        self.local_user = local_user  # None: a login is required

    def who(self, request: gr.Request | None) -> str:
        name = getattr(request, "username", None) if request is not None else None
        if name:
            return name
        if self.local_user is None:  # cannot happen behind the login check; refuse rather than guess
            raise UserError("not signed in")
        return self.local_user

    def _outputs(self, view: View):
        if view.mode == "review":  # the reviewer sees the agreement figures move
            stats, _ = self.board.stats()
            view.counts.update({k: stats.review.get(k) for k in ("reviewed", "agreement", "kappa")})
        preferred = self.curation.work.preferred_class(view.annotator) or "auto"
        tags = gr.CheckboxGroup(value=[], visible=view.mode != "review")  # a review has no tags: cleared, hidden
        return (render_item(view), view.item.key if view.item else "", tags, view.to_json(), render_notes(view),
                view.mode, preferred)

    def _run(self, request, action, key: str = ""):
        try:
            annotator = self.who(request)
        except UserError as error:
            raise gr.Error(str(error)) from None
        try:
            view = action(annotator)
        except StorageError as error:  # a full or read-only disk: say whether this key was saved
            log.error("storage refused a write for %s: %s", annotator, error)
            view = self.curation.after_storage_error(annotator, key, error)
        except UserError as error:
            view = self._current_view(annotator, key)
            view.notes.append(str(error))
        except Exception:  # noqa: BLE001 - never a stack trace in the page
            reference = uuid.uuid4().hex[:8]
            log.exception("internal error %s for %s", reference, annotator)
            view = self._current_view(annotator, key)
            saved = self.curation.store.decision_for_key(key) if key else None
            view.notes.append(f"Something went wrong on the server (reference {reference}, details in curation.log); "
                              + (f"your decision was saved (decision {saved.seq})." if saved else
                                 "nothing was recorded by this action."))
        return self._outputs(view)

    def _current_view(self, annotator: str, key: str) -> View:
        try:
            return self.curation.view(annotator)
        except StorageError as error:
            log.error("storage refused a write for %s: %s", annotator, error)
            return self.curation.after_storage_error(annotator, key, error)

    def current(self, request: gr.Request):
        return self._run(request, self.curation.view)

    def accept(self, key, tags, request: gr.Request):
        return self._run(request, lambda who: self.curation.decide(who, key or "", "accept", tags or ()), key or "")

    def reject(self, key, tags, request: gr.Request):  # noqa: ARG002 - same inputs as accept
        return self._run(request, lambda who: self.curation.decide(who, key or "", "reject"), key or "")

    def skip(self, key, tags, request: gr.Request):  # noqa: ARG002
        return self._run(request, lambda who: self.curation.decide(who, key or "", "skip"), key or "")

    def pick(self, key, file, tags, request: gr.Request):
        return self._run(request, lambda who: self.curation.pick(who, key or "", file or "", tags or ()), key or "")

    def undo(self, key, request: gr.Request):
        return self._run(request, lambda who: self.curation.undo(who, key or ""), key or "")

    def mode(self, mode, request: gr.Request):
        return self._run(request, lambda who: self.curation.set_mode(who, mode))

    def toggle_mode(self, request: gr.Request):
        return self._run(request, self.curation.toggle_mode)

    def review_mode(self, request: gr.Request):
        return self._run(request, lambda who: self.curation.set_mode(who, "review"))

    def choose_class(self, wnid, request: gr.Request):
        return self._run(request, lambda who: self.curation.set_class(who, None if wnid in (None, "", "auto") else wnid))

    def progress(self, request: gr.Request):
        self.who(request)
        stats, covered = self.board.stats()
        holders = {w: who for (kind, w), who in self.curation.work.leases().items() if kind == "annotate"}
        html = render_progress(stats, self.curation.catalog.wnids, self.curation.catalog.names, holders)
        return html, {"covers_decisions": covered, **stats.to_json()}

    def header(self, request: gr.Request):
        who = self.who(request)
        sign_out = ' · <a href="logout">sign out</a>' if self.local_user is None else ""
        return (f'<div class="sp-header"><span class="sp-title">Semantic pairs</span>{render_key_strip()}'
                f'<span class="sp-who">signed in as <b>{escape(who)}</b>{sign_out}</span></div>')


def build_blocks(curation: Curation, board: ProgressBoard, *, local_user: str | None) -> gr.Blocks:
    h = Handlers(curation, board, local_user)
    class_choices = [("any class that needs work", "auto")] + [
        (f"{curation.catalog.names[w]} ({w})", w) for w in curation.catalog.wnids]
    with gr.Blocks(title="Semantic pairs: curation", analytics_enabled=False) as blocks:
        header = gr.HTML('<div class="sp-header"><span class="sp-title">Semantic pairs</span></div>', elem_id="sp-header")
        with gr.Row(elem_id="sp-controls", equal_height=True):
            mode = gr.Radio(list(MODES), value="verify", label="mode", show_label=False, elem_id="sp-mode",
                            container=False, scale=2)
            klass = gr.Dropdown(class_choices, value="auto", label="class", show_label=False, elem_id="sp-class",
                                container=False, filterable=True, scale=3)
        view = gr.HTML('<div class="sp-item sp-loading" data-mode="" data-key="">Loading…</div>', elem_id="sp-view")
        tags = gr.CheckboxGroup([(f"{i + 1} {t}", t) for i, t in enumerate(TAGS)], value=[], label="tags",
                                show_label=False, elem_id="sp-tags", container=False)
        with gr.Row(elem_id="sp-buttons"):
            accept = gr.Button("Accept (a)", variant="primary", elem_id="sp-accept")
            reject = gr.Button("Reject (r)", variant="stop", elem_id="sp-reject")
            skip = gr.Button("Skip (s)", elem_id="sp-skip")
            undo = gr.Button("Undo (u)", elem_id="sp-undo")
        notes = gr.HTML(render_notes(View("", "verify", None)), elem_id="sp-notes")
        gr.HTML(render_shortcuts(), elem_id="sp-shortcuts")
        with gr.Accordion("Progress", open=True, elem_id="sp-progress-box"):
            progress = gr.HTML("", elem_id="sp-progress", apply_default_css=False)
            refresh = gr.Button("Refresh progress", size="sm", elem_id="sp-refresh")
        # Hidden plumbing: the current item's key, the picked candidate, the state as JSON.
        key = gr.Textbox(visible=False)
        choice = gr.Textbox(visible=False)
        state = gr.JSON(elem_id="sp-state", elem_classes=["sp-hidden"])
        stats_json = gr.JSON(elem_id="sp-stats", elem_classes=["sp-hidden"])
        pick = gr.Button("pick", elem_id="sp-pick", elem_classes=["sp-hidden"])
        toggle = gr.Button("toggle mode", elem_id="sp-toggle", elem_classes=["sp-hidden"])
        review = gr.Button("review mode", elem_id="sp-review", elem_classes=["sp-hidden"])
        timer = gr.Timer(PROGRESS_REFRESH_SECONDS)

        outputs = [view, key, tags, state, notes, mode, klass]
        # Outside Gradio's queue: one plain POST per action, about half the keypress-to-render time
        # of the queued path (measured in benchmarks/app_latency.py); the service serialises each
        # annotator's actions itself, and the page sends one action at a time ("once").
        fast = dict(outputs=outputs, show_progress="hidden", queue=False, trigger_mode="once")
        blocks.load(h.current, None, api_name="current", **fast)
        blocks.load(h.header, None, header, api_name=False, show_progress="hidden")
        accept.click(h.accept, [key, tags], api_name="accept", **fast)
        reject.click(h.reject, [key, tags], api_name="reject", **fast)
        skip.click(h.skip, [key, tags], api_name="skip", **fast)
        undo.click(h.undo, [key], api_name="undo", **fast)
        pick.click(h.pick, [key, choice, tags], api_name="pick",
                   js="(k, c, t) => [k, (window.__sp && window.__sp.choice) || c, t]", **fast)
        toggle.click(h.toggle_mode, None, api_name="toggle_mode", **fast)
        review.click(h.review_mode, None, api_name="review_mode", **fast)
        mode.input(h.mode, [mode], api_name="mode", **fast)
        klass.input(h.choose_class, [klass], api_name="class", **fast)
        slow = dict(outputs=[progress, stats_json], show_progress="hidden", concurrency_limit=2)
        blocks.load(h.progress, None, api_name="progress", **slow)
        refresh.click(h.progress, None, api_name=False, **slow)
        timer.tick(h.progress, None, api_name=False, **slow)
    return blocks
