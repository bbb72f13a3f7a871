"""Take the README's screenshots of the curation app: verify mode, pick mode, the review queue.

    .venv/bin/python docs/screenshots/take_screenshots.py

A real server on the bundled sample (its full-resolution and Imagenette classes, so the photos
look like photos), proposals computed by `semantic-pairs propose`, two annotators logged in
through the login form, keys pressed in headless Chromium. Writes verify.png, pick.png and
review.png next to this script.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from tests.curation_app.app_server import (CLI, PASSWORDS, AppServer, launch_chromium, make_images,  # noqa: E402
                                           make_users, write_classes)

TRUCK, WASHER, BOTTLE, LION = "n03417042", "n04554684", "n04557648", "n02129165"
ITEM = "#sp-view .sp-item"


def login(browser, url: str, user: str):
    page = browser.new_context(viewport={"width": 1440, "height": 1020}, device_scale_factor=1).new_page()
    page.goto(url)
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", PASSWORDS[user])
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{ITEM}[data-key]:not([data-key=''])", timeout=120_000)
    return page


def press(page, key: str) -> None:
    rev = page.get_attribute(ITEM, "data-rev")
    page.keyboard.press(key)
    page.wait_for_function("(rev) => document.querySelector('#sp-view .sp-item').dataset.rev !== rev", arg=rev)


def settle(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#sp-view img.sp-main')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    page.wait_for_timeout(400)


def choose_class(page, label: str) -> None:
    rev = page.get_attribute(ITEM, "data-rev")
    page.fill("#sp-class input", label)
    page.keyboard.press("Enter")
    page.wait_for_function("(rev) => document.querySelector('#sp-view .sp-item').dataset.rev !== rev", arg=rev)
    page.evaluate("document.activeElement && document.activeElement.blur()")


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="screens-") as tmp:
        base = Path(tmp)
        wnids = [LION, TRUCK, WASHER, BOTTLE]
        images = make_images(base / "images", wnids)
        classes = write_classes(base / "classes.csv", wnids)
        subprocess.run([str(CLI), "propose", "--images", str(images), "--project", str(base / "project"),
                        "--classes", str(classes)], check=True, capture_output=True)
        server = AppServer(images, base / "project", users=make_users(base / "users.txt", ("alice", "bob")),
                           classes=classes).start()
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                alice = login(browser, server.url, "alice")
                choose_class(alice, "washer")
                alice.keyboard.press("5")  # tags are toggled on the page, no round trip
                press(alice, "a")  # accepted with "viewpoint"
                press(alice, "a")
                choose_class(alice, "water_bottle")
                for _ in range(8):  # one reject in four joins the review queue
                    press(alice, "r")
                alice.keyboard.press("1")
                alice.keyboard.press("5")
                settle(alice)
                alice.screenshot(path=HERE / "verify.png")

                press(alice, "p")
                choose_class(alice, "garbage_truck")
                alice.keyboard.press("ArrowRight")
                alice.keyboard.press("ArrowRight")
                settle(alice)
                alice.screenshot(path=HERE / "pick.png")
                press(alice, "a")

                bob = login(browser, server.url, "bob")
                press(bob, "v")
                for key in ("a", "r", "r"):  # confirm, refute, ...: blind, as annotators review
                    press(bob, key)
                bob.click("#sp-refresh")
                bob.wait_for_timeout(800)
                settle(bob)
                bob.screenshot(path=HERE / "review.png", full_page=True)
                browser.close()
        finally:
            server.stop()
    for name in ("verify", "pick", "review"):
        print(HERE / f"{name}.png")


if __name__ == "__main__":
    main()
