"""Repeated failed logins: paused per name and per address before any password is hashed, a few
checks at a time (curation_app.login_guard), over real HTTP against the session's server. The
failing attempts come from their own loopback addresses (127.0.0.3, .4), so the other tests'
logins from 127.0.0.1 are never paused."""
from __future__ import annotations

import http.client
import json
import time
import urllib.parse

from tests.curation_app.app_server import PASSWORDS

from curation_app.login_guard import FIRST_PAUSE, FREE_FAILURES, LONGEST_PAUSE, CheckSlots, LoginThrottle


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_or_an_address_pauses_after_five_failures_and_the_pause_doubles():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(1, FREE_FAILURES):
        assert throttle.failed("dora", "10.0.0.1") == (n, 0.0) and throttle.wait("dora", "10.0.0.1") == 0
    assert throttle.failed("dora", "10.0.0.1") == (FREE_FAILURES, FIRST_PAUSE)
    assert throttle.wait("dora", "10.0.0.2") == FIRST_PAUSE  # the name is paused from any address
    assert throttle.wait("erin", "10.0.0.1") == FIRST_PAUSE  # and the address for any name
    assert throttle.wait("erin", "10.0.0.2") == 0
    clock.now += FIRST_PAUSE
    assert throttle.wait("dora", "10.0.0.1") == 0
    assert throttle.failed("dora", "10.0.0.1")[1] == 2 * FIRST_PAUSE  # doubles
    for _ in range(20):
        clock.now += LONGEST_PAUSE
        pause = throttle.failed("dora", "10.0.0.1")[1]
    assert pause == LONGEST_PAUSE  # capped: the real user waits at most this long
    throttle.succeeded("dora", "10.0.0.1")
    assert throttle.wait("dora", "10.0.0.1") == 0 and throttle.failed("dora", "10.0.0.1") == (1, 0.0)


def test_guesses_per_hour_are_few():
    """Every attempt the pauses allow, for one name, over an hour."""
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    end, tries = clock.now + 3600, 0
    while clock.now < end:
        clock.now += throttle.wait("dora", "10.0.0.1")
        throttle.failed("dora", "10.0.0.1")
        tries += 1
    assert tries <= 30


def test_at_most_a_few_checks_at_once_and_a_bounded_queue():
    slots = CheckSlots(concurrent=2, waiting=3)
    assert [slots.admit() for _ in range(6)] == [True] * 5 + [False]
    assert slots.run(lambda: "checked") == "checked"  # frees its place in the queue
    assert slots.admit()


def login(url: str, user: str, password: str, source: str) -> tuple[int, dict, dict]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60, source_address=(source, 0))
    connection.request("POST", "/login", urllib.parse.urlencode({"username": user, "password": password}),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    body = response.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    return response.status, data, {k.lower(): v for k, v in response.getheaders()}


def test_a_paused_name_is_refused_unchecked_even_with_the_right_password(served):
    for _ in range(FREE_FAILURES):
        assert login(served.url, "dora", "wrong password", "127.0.0.3")[0] == 400
    status, body, headers = login(served.url, "dora", PASSWORDS["dora"], "127.0.0.3")
    # Refused unchecked, the refusal held back until the 1 s pause is over.
    assert status == 429 and headers["retry-after"] == "0"
    assert body["detail"] == ("Too many failed sign-ins for this name or from this address: sign-in was paused; "
                              "try again now.")
    log = (served.project / "curation.log").read_text()
    assert f"login refused for dora from 127.0.0.3 ({FREE_FAILURES} failures in a row): sign-in paused for 1 s" in log
    time.sleep(0.2)
    status, _, headers = login(served.url, "dora", PASSWORDS["dora"], "127.0.0.3")
    assert status == 200 and "set-cookie" in headers  # the pause is over; success clears the count
    assert login(served.url, "dora", "wrong again", "127.0.0.3")[0] == 400


def test_a_paused_address_is_refused_for_every_name_and_others_still_sign_in(served):
    for n in range(FREE_FAILURES):
        assert login(served.url, f"guess{n}", "wrong password", "127.0.0.4")[0] == 400
    assert login(served.url, "bob", PASSWORDS["bob"], "127.0.0.4")[0] == 429
    assert login(served.url, "bob", PASSWORDS["bob"], "127.0.0.1")[0] == 200


def test_the_login_page_says_when_sign_in_pauses(served):
    parts = urllib.parse.urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("GET", "/")
    page = connection.getresponse().read().decode()
    assert '"auth_required":true' in page  # the login form, not the app
    assert "After 5 failed attempts for one name or from one address, sign-in pauses" in page


def test_counters_of_a_flood_of_made_up_names_are_forgotten():
    """Memory stays bounded: counters idle for an hour go; past MAX_TRACKED the oldest half go."""
    from curation_app import login_guard

    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(1500):
        throttle.failed(f"guess{n}", f"10.1.0.{n % 6}")
    assert len(throttle._records) == 1500 + 6  # 1500 names, 6 addresses
    clock.now += login_guard.FORGET_AFTER + 1
    throttle.failed("dora", "10.0.0.1")
    assert len(throttle._records) == 2  # only dora's name and address are left
