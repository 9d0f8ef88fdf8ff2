"""A real browser tries what a stranger (or a careless owner) might, against real servers.

A visitor gets no URL or path input at all, cannot see another browser's models or uploads,
and malicious archives are refused. An owner's typed URLs and paths are still held to the
allow-list and the data roots: each refusal is a clear message, and the local servers the
test starts receive no request they should not.
"""

import io
import shutil
import tarfile
import zipfile

import pytest
from conftest import choose, make_dataset, needs_chromium, streamlit_server
from netutil import local_server, tls  # noqa: F401  (tls is a fixture)

from core.app import workspace

pytestmark = [needs_chromium]


def workspace_of(context) -> workspace.Workspace:
    """The private workspace the server gives this browser (derived from its XSRF cookie)."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "_streamlit_xsrf")
    return workspace.Workspace(workspace.key_from_xsrf_cookie(cookie))


def evil_tar(tmp_path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for cls in ("a", "b"):
            info = tarfile.TarInfo(f"set/{cls}/1.jpg")
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("set/a/passwd.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return buf.getvalue()


def test_visitor_has_no_paths_and_sees_only_their_own_models(app_url, browser, tiny_model, tmp_path):
    from conftest import _session_tmp

    a, b = browser.new_context(), browser.new_context()
    page_a, page_b = a.new_page(), b.new_page()
    for page in (page_a, page_b):
        page.goto(f"{app_url}/train", timeout=60_000)
        page.get_by_text("Role: visitor").wait_for(timeout=120_000)
    assert not page_a.get_by_text("Folder on the server").count() and not page_a.get_by_text("Archive URL").count()
    assert not page_a.get_by_role("textbox", name="Folder path").count()

    # Browser A has a model of its own and an uploaded archive; browser B sees neither.
    cache = _session_tmp / "visitor-server" / "cache"
    ws_a = workspace_of(a)
    mine = cache / "workspaces" / ws_a.key / "models" / "a-private-model"
    shutil.copytree(tiny_model, mine)
    archive = tmp_path / "evil.tgz"
    archive.write_bytes(evil_tar(tmp_path))
    page_a.get_by_text("Upload an archive of class folders").click()
    page_a.locator("input[type=file]").first.set_input_files(str(archive))
    refusal = page_a.get_by_text("This dataset cannot be used")
    refusal.wait_for(timeout=60_000)
    assert "unsafe" in refusal.inner_text() or "link" in refusal.inner_text()
    assert list((cache / "workspaces" / ws_a.key / "uploads").glob("*.tgz"))

    page_a.reload()
    choose(page_a, "Model", "a-private-model (yours)")
    page_b.reload()
    page_b.get_by_text("Your models").wait_for(timeout=60_000)
    page_b.locator('[data-testid="stSelectbox"]').filter(has_text="Model").click()
    options = page_b.locator('[role="option"]').all_inner_texts()
    assert options and not any("a-private-model" in o for o in options)
    page_b.keyboard.press("Escape")
    page_b.get_by_text("Models you train appear here").wait_for(timeout=30_000)  # B's own list: empty
    a.close()
    b.close()


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
