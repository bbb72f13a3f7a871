"""The image route over real HTTP: previews, thumbnails and originals of the project's images,
and nothing else, whatever the request looks like. Requests go out byte for byte as written
(http.client), so `..` and encodings reach the server unnormalised."""
from __future__ import annotations

import http.client
import io
import urllib.parse

import pytest
from PIL import Image

from tests.curation_app.app_server import PASSWORDS
from tests.curation_app.conftest import GOLDFISH, KEYBOARD, WASHER


def login_cookie(url: str, user: str = "alice") -> str:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = urllib.parse.urlencode({"username": user, "password": PASSWORDS[user]})
    connection.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    cookies = [v.split(";", 1)[0] for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return "; ".join(cookies)


def get(url: str, raw_path: str, cookie: str | None = None) -> tuple[int, bytes, dict]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("GET", raw_path, skip_accept_encoding=True)
    if cookie:
        connection.putheader("Cookie", cookie)
    connection.endheaders()
    response = connection.getresponse()
    return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}


@pytest.fixture(scope="module")
def cookie(served):
    return login_cookie(served.url)


def test_previews_thumbnails_and_originals_are_served(served, cookie):
    name = sorted(p.name for p in (served.images / WASHER).iterdir() if p.suffix == ".JPEG")[0]
    original = (served.images / WASHER / name).read_bytes()
    sizes = {}
    for size in ("preview", "thumb"):
        status, body, headers = get(served.url, f"/img/{size}/{WASHER}/{name}", cookie)
        assert status == 200 and headers["content-type"] == "image/jpeg"
        assert "max-age" in headers["cache-control"]  # the page prefetches into the browser cache
        sizes[size] = Image.open(io.BytesIO(body)).size
    assert max(sizes["thumb"]) <= 256 and max(sizes["preview"]) <= 768
    status, body, headers = get(served.url, f"/img/original/{WASHER}/{name}", cookie)
    assert status == 200 and body == original


def test_a_png_named_jpeg_is_served_with_its_real_type(served, cookie):
    status, body, headers = get(served.url, f"/img/original/{GOLDFISH}/edge_n01443537_png_bytes.JPEG", cookie)
    assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")


SECRET_MARKERS = (b"root:", b"SQLite format", b"scrypt")

ATTEMPTS = {
    "raw dot-dot": f"/img/original/{WASHER}/../../../../../../etc/passwd",
    "dot-dot to the users file": f"/img/original/{WASHER}/../{WASHER}/users.txt",
    "dot-dot as the class": "/img/original/../n04557648/project_inside_the_root/decisions.sqlite",
    "url-encoded slashes": f"/img/original/{WASHER}/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "url-encoded dots": f"/img/original/{WASHER}/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "double-encoded": f"/img/original/{WASHER}/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "double-encoded to the store": "/img/original/n04557648/%252e%252e%252fn04557648%252fproject_inside_the_root"
                                   "%252fdecisions.sqlite",
    "absolute": "/img/original//etc/passwd",
    "encoded absolute": "/img/original/%2Fetc%2Fpasswd",
    "backslashes": f"/img/original/{WASHER}/..%5C..%5Cetc%5Cpasswd",
    "nested folder": "/img/original/n04557648/project_inside_the_root/decisions.sqlite",
    "not an image name": f"/img/original/{WASHER}/users.txt",
    "symlink out of the root": f"/img/original/{KEYBOARD}/escape.JPEG",
    "symlink to /etc/passwd": f"/img/preview/{KEYBOARD}/passwd.JPEG",
    "symlink to the decision store": f"/img/original/{KEYBOARD}/store.JPEG",
    "symlink to the users file": f"/img/original/{KEYBOARD}/users.JPEG",
    "hard link to the decision store": f"/img/preview/{KEYBOARD}/hard_store.JPEG",
    "hard link to the users file": f"/img/original/{KEYBOARD}/hard_users.JPEG",
    "unknown class": "/img/original/n01440764/n01440764_1.JPEG",
    "unknown size": f"/img/huge/{WASHER}/x.JPEG",
    "null byte": f"/img/original/{WASHER}/x%00.JPEG",
}


@pytest.mark.parametrize("what", sorted(ATTEMPTS))
def test_traversal_attempts_are_refused(served, cookie, what):
    status, body, _ = get(served.url, ATTEMPTS[what], cookie)
    assert status in (400, 403, 404, 422), (what, status)
    assert not any(marker in body for marker in SECRET_MARKERS)
    assert str(served.images).encode() not in body  # refusals never show a server path


def test_links_to_project_files_are_refused_by_the_deny_list(served, cookie):
    # These links stay inside the images root: only the rule "never the project or users file" stops
    # them (for the hard links, their device and inode: their paths are ordinary image paths).
    for name in ("store.JPEG", "users.JPEG", "hard_store.JPEG", "hard_users.JPEG"):
        status, body, _ = get(served.url, f"/img/original/{KEYBOARD}/{name}", cookie)
        assert status == 403 and b"not an image of this project" in body


def test_gradio_file_routes_serve_nothing_of_the_project(served, cookie):
    for target in (served.project / "decisions.sqlite", served.users, served.images / WASHER / "users.txt",
                   served.outside):
        status, body, _ = get(served.url, "/gradio_api/file=" + urllib.parse.quote(str(target)), cookie)
        assert status in (403, 404), (target, status)
        assert not any(marker in body for marker in SECRET_MARKERS)


def test_a_broken_image_is_refused_with_its_reason(served, cookie):
    status, body, _ = get(served.url, f"/img/preview/{GOLDFISH}/edge_n01443537_truncated.JPEG", cookie)
    assert status == 422 and b"truncated" in body


# -- generated request paths ------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SEGMENTS = st.one_of(
    st.sampled_from(["..", ".", "", WASHER, KEYBOARD, GOLDFISH, "n01440764", "store.JPEG", "hard_store.JPEG",
                     "users.txt", "escape.JPEG", "passwd.JPEG", "x" * 300 + ".JPEG", "project_inside_the_root",
                     "decisions.sqlite", "%2e%2e", "%252e%252e%252f", "%00", "%ff%fe.JPEG", "%C3%A9.JPEG", "%5C",
                     "~", "*", "etc", "passwd", ".JPEG", "a.JPEG;b", "a.JPEG?x=1", "%2F"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?"), max_size=20),
    st.binary(max_size=12).map(lambda b: urllib.parse.quote(b, safe="")),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from(["original", "preview", "thumb", "huge", ""]),
       segments=st.lists(SEGMENTS, min_size=0, max_size=5))
def test_generated_image_paths_get_a_clear_refusal_never_a_server_error(served, cookie, size, segments):
    path = f"/img/{size}/" + "/".join(segments)
    status, body, _ = get(served.url, path, cookie)
    assert status in (200, 400, 403, 404, 405, 422), (path, status, body[:200])
    if status == 200:  # only an image of the project, by a name that leads to one
        assert body[:2] in (b"\xff\xd8", b"\x89P") and path.count("/") == 4, path
        return
    # The refusal may echo the name asked for ("..._root: not an image"), never a file's content.
    assert not any(marker in body for marker in (b"root:x:", b"SQLite format 3", b":scrypt:")), path
    assert str(served.images).encode() not in body and str(served.project).encode() not in body


def test_a_name_longer_than_a_file_system_allows_is_a_clear_404(served, cookie):
    status, body, _ = get(served.url, f"/img/original/{WASHER}/{'x' * 300}.JPEG", cookie)
    assert status == 404 and b"a file name longer than a file system allows" in body
