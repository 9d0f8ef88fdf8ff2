"""A real browser tries what a careless owner might, against a real server: an owner's typed URLs
and paths are held to the allow-list and the data roots; each refusal is a clear message, and the
local servers the test starts receive no request they should not. (What a stranger might try, no
URL or path input at all, another browser's models and uploads out of sight, a malicious archive
refused, runs in test_browser on the run's shared visitor server.)
"""

import io
import zipfile

import pytest
from conftest import make_dataset, needs_chromium, streamlit_server
from netutil import local_server, tls  # noqa: F401  (tls is a fixture)

pytestmark = [needs_chromium]


@pytest.fixture
def owner_server(tls, tmp_path):
    """A trusted run (FLOWERS_OWNER=1) with one data root and one extra allowed https host (a
    local server whose certificate the app's process trusts through SSL_CERT_FILE)."""
    roots = tmp_path / "roots"
    make_dataset(roots / "colours", per_class=3)
    (roots / "escape").symlink_to(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in (roots / "colours").rglob("*.jpg"):
            zf.write(f, f"colours/{f.relative_to(roots / 'colours')}")
    with local_server() as (plain, plain_seen):
        routes = {"/good.zip": (200, {}, buf.getvalue()),
                  "/redirect.zip": (302, {"Location": f"{plain}/internal-secret"}, b"")}
        with local_server(routes, tls[0]) as (secure, secure_seen):
            env = {"FLOWERS_OWNER": "1", "FLOWERS_DATA_ROOTS": str(roots), "FLOWERS_ALLOWED_URLS": f"{secure}/",
                   "SSL_CERT_FILE": str(tls[2])}
            with streamlit_server(f"owner-{tmp_path.name}", env=env) as (url, _):
                yield {"url": url, "plain": plain, "plain_seen": plain_seen, "secure": secure,
                       "secure_seen": secure_seen, "roots": roots}


def test_owner_urls_and_paths_are_held_to_the_allow_list_and_data_roots(owner_server, browser):
    s = owner_server
    page = browser.new_page()
    page.goto(f"{s['url']}/train", timeout=60_000)
    page.get_by_text("Role: owner").wait_for(timeout=120_000)

    def try_source(kind: str, box: str, value: str, expect: str) -> str:
        page.get_by_text(kind).click()
        field = page.get_by_role("textbox", name=box)
        field.fill("")  # first clear the previous answer, so the one read below is this value's
        field.press("Enter")
        page.get_by_text("This dataset cannot be used").or_(page.get_by_text("images in 3 classes")).first.wait_for(
            state="detached", timeout=60_000)
        field.fill(value)
        field.press("Enter")
        answer = page.get_by_text(expect).first
        answer.wait_for(timeout=60_000)
        return answer.inner_text()

    plain, secure = s["plain"], s["secure"]
    # One of each kind through the page; tests/test_safety.py holds every case against the same policy.
    refused_urls = {
        f"{plain}/flower_photos.tgz": "only https",
        "https://169.254.169.254/latest/meta-data": "allow-list",
        f"{secure}/redirect.zip": "redirected",
    }
    for value, reason in refused_urls.items():
        text = try_source("Archive URL (allow-listed)", "Archive URL", value, "This dataset cannot be used")
        assert reason in text, (value, text)
    assert s["plain_seen"] == []  # nothing reached the loopback server, not even through the redirect
    assert s["secure_seen"] == ["/redirect.zip"]

    assert try_source("Archive URL (allow-listed)", "Archive URL", f"{secure}/good.zip",
                      "images in 3 classes") == "9 images in 3 classes"

    cache = s["roots"].parent / "cache"
    for typed in ("..", "escape", str(cache / "workspaces")):  # up, a link out, the visitors' files
        text = try_source("Folder on the server (data roots)", "Folder path", typed, "This dataset cannot be used")
        assert "outside the data roots" in text or "not a path inside" in text or "no such" in text, (typed, text)
    assert try_source("Folder on the server (data roots)", "Folder path", "colours",
                      "images in 3 classes") == "9 images in 3 classes"
    page.close()
