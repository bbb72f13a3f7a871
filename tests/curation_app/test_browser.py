"""The page in a real browser (Debian's Chromium, headless, through Playwright) against the real
server: log in, decide by keyboard, tag, a held key, typing in a text field, undo, reload and
resume, pick mode; two annotators in two browser contexts; SIGKILL of the server mid-session."""
from __future__ import annotations

import subprocess

import pyarrow.parquet as pq
import pytest

from pair_manifest.file_ids import canonical_pair
from pair_manifest.store import DecisionStore
from tests.curation_app.app_server import (CLI, PASSWORDS, AppServer, launch_chromium, make_images, make_users,
                                           write_classes)

pytestmark = pytest.mark.browser

GOLDFISH, KEYBOARD, TABBY = "n01443537", "n03085013", "n02123045"
WNIDS = [GOLDFISH, TABBY, KEYBOARD]
ITEM = "#sp-view .sp-item"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    images = make_images(base / "images", WNIDS, edge_cases_into=GOLDFISH)
    users = make_users(base / "users.txt", ("alice", "bob"))
    classes = write_classes(base / "classes.csv", WNIDS)
    server = AppServer(images, base / "project", users=users, classes=classes).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def login(browser, url: str, user: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", PASSWORDS[user])
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{ITEM}[data-key]:not([data-key=''])", timeout=60_000)
    return page


def shown(page) -> dict:
    return page.evaluate("""() => { const el = document.querySelector('#sp-view .sp-item');
        return {key: el.dataset.key, rev: el.dataset.rev, mode: el.dataset.mode,
                files: el.dataset.files.split(' ').filter(Boolean),
                candidates: [...el.querySelectorAll('.sp-cand')].map(c => c.dataset.file)}; }""")


def wait_next(page, before: dict) -> dict:
    page.wait_for_function("(rev) => { const el = document.querySelector('#sp-view .sp-item');"
                           " return el && el.dataset.rev !== rev; }", arg=before["rev"], timeout=30_000)
    return shown(page)


def press(page, key: str) -> dict:
    before = shown(page)
    page.keyboard.press(key)
    return wait_next(page, before)


def tags_checked(page) -> list[bool]:
    return page.eval_on_selector_all("#sp-tags input[type=checkbox]", "boxes => boxes.map(b => b.checked)")


def store(server: AppServer) -> DecisionStore:
    return DecisionStore.for_project(server.project)


def test_keyboard_session_tags_held_keys_typing_undo_reload_and_pick(site, browser):
    page = login(browser, site.url, "alice")
    assert "a accept" in page.inner_text("#sp-shortcuts").replace("\n", " ")  # shortcuts are on screen
    first = shown(page)
    # The class holds the edge cases: the unusable ones are named on the page, never shown.
    assert first["files"][0].startswith(GOLDFISH)
    assert "4 unusable file(s) in this class are skipped" in page.inner_text(".sp-classnote")
    # The next pair's previews are already in the page (hidden), so the browser fetches them now.
    prefetched = page.eval_on_selector_all(".sp-prefetch img", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert len(prefetched) == 2 and all(src.startswith(f"img/preview/{GOLDFISH}/") for src in prefetched)

    page.keyboard.press("2")
    page.keyboard.press("5")
    assert tags_checked(page) == [False, True, False, False, True, False]
    second = press(page, "a")
    decision = store(site).decision_for_key(first["key"])
    assert decision.verdict == "accept" and decision.tags == ("occlusion", "viewpoint")
    assert "you: 1 decision" in page.inner_text("#sp-my-count")  # the counter moved with the next pair
    assert tags_checked(page) == [False] * 6 and set(second["files"]).isdisjoint(first["files"])

    # A held key: one keydown, then auto-repeats. It decides once.
    page.keyboard.down("r")
    page.keyboard.down("r")
    page.keyboard.down("r")
    page.keyboard.up("r")
    third = wait_next(page, second)
    page.wait_for_timeout(700)
    assert shown(page)["key"] == third["key"] and store(site).count() == 2

    # Two presses in the same instant (the second while the first is in flight): one decision.
    page.evaluate("""() => { for (let i = 0; i < 2; i++) document.dispatchEvent(
        new KeyboardEvent('keydown', {key: 's', bubbles: true})); }""")
    fourth = wait_next(page, third)
    page.wait_for_timeout(700)
    assert store(site).count() == 3 and store(site).decision_for_key(third["key"]).verdict == "skip"

    # Typing in a text field (the class filter) decides nothing.
    page.click("#sp-class input")
    page.keyboard.type("ars")
    page.wait_for_timeout(500)
    assert store(site).count() == 3 and shown(page)["key"] == fourth["key"]
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(800)  # leaving the dropdown may send its (unchanged) value: let that answer land

    # Undo brings back the skipped pair; reload resumes exactly there.
    back = press(page, "u")
    assert back["files"] == third["files"] and back["key"] not in (third["key"], fourth["key"])
    page.reload()
    page.wait_for_selector(f"{ITEM}[data-key='{back['key']}']", timeout=60_000)

    # Pick mode: p, arrows, a.
    pick = press(page, "p")
    assert pick["mode"] == "pick" and len(pick["files"]) == 1 and len(pick["candidates"]) >= 2
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.eval_on_selector_all(".sp-cand", "c => c.map(x => x.classList.contains('sp-selected'))")[:3] == [
        False, True, False]
    after = press(page, "a")
    decision = store(site).decision_for_key(pick["key"])
    assert decision.source == "pick" and (decision.file_a, decision.file_b) == canonical_pair(
        pick["files"][0], pick["candidates"][1])
    assert after["mode"] == "pick" and after["files"] != pick["files"]
    # Clicking a candidate pairs it too.
    clicked = after["candidates"][0]
    page.click(f".sp-cand[data-file='{clicked}'] img")
    wait_next(page, after)
    decision = store(site).decision_for_key(after["key"])
    assert {decision.file_a, decision.file_b} == {after["files"][0], clicked}
    assert press(page, "p")["mode"] == "verify"
    page.context.close()


def test_two_annotators_in_two_browser_contexts_never_get_the_same_work(site, browser):
    alice, bob = login(browser, site.url, "alice"), login(browser, site.url, "bob")
    seen = {"alice": [shown(alice)], "bob": [shown(bob)]}
    for _ in range(5):
        for name, page in (("alice", alice), ("bob", bob)):
            seen[name].append(press(page, "r"))
    pairs = {n: {canonical_pair(*s["files"]) for s in states} for n, states in seen.items()}
    assert len(pairs["alice"]) == 6 and len(pairs["bob"]) == 6
    assert not pairs["alice"] & pairs["bob"]
    classes = {n: {s["files"][0].split("/")[0] for s in states} for n, states in seen.items()}
    assert not classes["alice"] & classes["bob"]
    alice.context.close()
    bob.context.close()


def test_sigkill_mid_session_loses_no_acknowledged_decision_and_resumes(site, browser, tmp_path):
    # Last in this module: it kills the module's server and restarts it on the same project.
    page = login(browser, site.url, "alice")
    acknowledged = {}
    state = shown(page)
    for key in ["a", "r", "s", "a", "r", "1", "a", "r"]:
        if key == "1":
            page.keyboard.press("1")
            continue
        following = press(page, key)  # acknowledged: the next pair is on screen
        acknowledged[state["key"]] = {"a": "accept", "r": "reject", "s": "skip"}[key]
        state = following
    page.keyboard.press("a")  # in flight when the server dies
    site.kill()
    page.context.close()

    site.start()
    out = tmp_path / "manifest"
    subprocess.run([str(CLI), "manifest", "export", "--project", str(site.project), "--out", str(out)],
                   check=True, capture_output=True)
    logged = {r["idempotency_key"]: r for r in pq.read_table(out / "decisions.parquet").to_pylist()}
    assert {k: logged[k]["verdict"] for k in acknowledged} == acknowledged
    pairs = {(r["file_a"], r["file_b"]) for r in pq.read_table(out / "pairs.parquet").to_pylist()}
    accepted = [logged[k] for k, verdict in acknowledged.items() if verdict == "accept"]
    assert all((r["file_a"], r["file_b"]) in pairs for r in accepted)
    assert accepted[-1]["tags"] == ["background"]  # tag 1 was toggled before that accept
    page = login(browser, site.url, "alice")
    resumed = shown(page)
    if state["key"] in logged:  # the in-flight decision made it: the page has moved on
        assert resumed["key"] != state["key"]
    else:  # it did not: exactly the pair that was on screen
        assert resumed["key"] == state["key"] and resumed["files"] == state["files"]
    page.context.close()
