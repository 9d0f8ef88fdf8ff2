"""What a visitor or a careless URL can make the server touch: nothing outside the allow-lists."""

import io
import os
import tarfile
from pathlib import Path

import pytest
from netutil import local_server, tls  # noqa: F401  (tls is a fixture)

from core.app import access, workspace
from core.model import data
from core.model.data import DownloadPolicy, UnsafeSource


def tiny_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for cls in ("a", "b"):
            for i in range(2):
                payload = f"{cls}{i}".encode()
                info = tarfile.TarInfo(f"photos/{cls}/{i}.jpg")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/flower_photos.tgz",  # loopback, and not https
    "https://127.0.0.1:{port}/flower_photos.tgz",  # https, but not on the allow-list
    "https://10.0.0.7/flower_photos.tgz", "https://192.168.1.1/x.tgz", "https://169.254.169.254/latest/meta-data",
    "file:///etc/passwd", "ftp://127.0.0.1:{port}/x.tgz", "data:application/gzip;base64,AAAA",
    "https://user:secret@storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
    "https://storage.googleapis.com/download.tensorflow.org/example_images/other.tgz",
])
def test_refused_urls_never_reach_the_network(url, tmp_path):
    with local_server() as (base, seen):
        port = base.rsplit(":", 1)[1]
        with pytest.raises(UnsafeSource):
            data.resolve(url.format(port=port), cache=tmp_path)
        assert seen == []
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").rglob("*.tgz"))


def test_redirect_to_loopback_is_stopped_before_it_is_followed(tls, tmp_path):
    with local_server() as (inner, inner_seen):
        routes = {"/flowers.tgz": (302, {"Location": f"{inner}/secret"}, b"")}
        with local_server(routes, tls[0]) as (outer, outer_seen):
            policy = DownloadPolicy((f"{outer}/",), ssl_context=tls[1])
            with pytest.raises(UnsafeSource, match="redirected"):
                data.download(f"{outer}/flowers.tgz", tmp_path, policy=policy)
        assert outer_seen == ["/flowers.tgz"] and inner_seen == []


def test_allowed_download_is_cached_by_url_and_checked_on_reuse(tls, tmp_path):
    body = tiny_archive()
    with local_server({"/flowers.tgz": (200, {}, body)}, tls[0]) as (base, seen):
        policy = DownloadPolicy((f"{base}/",), ssl_context=tls[1])
        first = data.download(f"{base}/flowers.tgz", tmp_path, policy=policy)
        assert first.read_bytes() == body and len(seen) == 1
        assert data.download(f"{base}/flowers.tgz", tmp_path, policy=policy) == first and len(seen) == 1
        first.write_bytes(b"tampered")  # a changed file is not trusted: fetched again
        assert data.download(f"{base}/flowers.tgz", tmp_path, policy=policy).read_bytes() == body
        assert len(seen) == 2
        root = data.resolve(f"{base}/flowers.tgz", cache=tmp_path, policy=policy)
        assert data.scan(root).counts == {"a": 2, "b": 2}


def test_download_size_is_bounded(tls, tmp_path):
    with local_server({"/big.tgz": (200, {}, b"x" * 5000)}, tls[0]) as (base, _):
        policy = DownloadPolicy((f"{base}/",), max_bytes=1000, ssl_context=tls[1])
        with pytest.raises(data.DatasetError, match="limit"):
            data.download(f"{base}/big.tgz", tmp_path, policy=policy)
    assert not list(tmp_path.rglob("big.tgz"))


@pytest.fixture
def roots(tmp_path):
    root = tmp_path / "data"
    (root / "flowers" / "roses").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    return (root.resolve(),), outside


@pytest.mark.parametrize("typed", ["../private", "flowers/../../private", "escape", "~", "~/", "/proc/self",
                                   "/etc", "{outside}", "{cache}"])
def test_paths_outside_the_data_roots_are_refused(roots, typed, tmp_path):
    root_tuple, outside = roots
    typed = typed.format(outside=outside, cache=workspace.root())
    with pytest.raises(data.DatasetError):
        data.resolve(typed, cache=tmp_path / "cache", roots=root_tuple)


def test_paths_inside_the_data_roots_work(roots):
    root_tuple, _ = roots
    assert data.inside_roots("flowers", root_tuple) == root_tuple[0] / "flowers"
    assert data.inside_roots(str(root_tuple[0] / "flowers" / "roses"), root_tuple).name == "roses"
    with pytest.raises(UnsafeSource, match="no data roots"):
        data.inside_roots("flowers", ())


def test_scan_never_reads_through_links_out_of_the_dataset(tmp_path):
    from conftest import make_dataset

    root = make_dataset(tmp_path / "ds", per_class=3)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    (root / "reds" / "link.jpg").symlink_to(secret)
    info = data.scan(root)
    assert all(f.name != "link.jpg" for f in info.files["reds"])
    assert any("link.jpg" in s for s in info.skipped)


def test_workspace_key_is_stable_per_browser_and_unguessable():
    token = os.urandom(16)

    def cookie(mask: bytes) -> str:
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(token))
        return f"2|{mask.hex()}|{masked.hex()}|1795699776"

    a, b = workspace.key_from_xsrf_cookie(cookie(b"\x01\x02\x03\x04")), workspace.key_from_xsrf_cookie(cookie(b"\xff\x00\xaa\x55"))
    assert a == b and len(a) == 32 and token.hex() not in a
    assert workspace.key_from_xsrf_cookie(cookie(b"\x01\x02\x03\x04").replace("|1795", "|1796")) == a
    with pytest.raises(ValueError):
        workspace.Workspace("../etc")


def test_old_workspaces_expire(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWERS_CACHE_DIR", str(tmp_path))
    old, fresh = workspace.Workspace(workspace.new_key()), workspace.Workspace(workspace.new_key())
    for ws in (old, fresh):
        ws.store_upload("x.jpg", ws.key.encode())
    past = 1_000_000_000
    for f in [old.path, *old.path.rglob("*")]:
        os.utime(f, (past, past))
    assert workspace.expire(now=past + workspace.MAX_AGE_S + 1) == [old.key]
    assert fresh.path.exists() and not old.path.exists()


def test_nothing_configured_means_everyone_is_a_visitor():
    cfg = access.AccessConfig.from_sources({}, env={})
    assert cfg.role_for() is access.Role.VISITOR and cfg.role_for("someone@example.com") is access.Role.VISITOR
    assert not cfg.can_sign_in and cfg.data_roots == () and cfg.allowed_urls == (data.OFFICIAL_URL,)
    assert access.limits_for(access.Role.VISITOR).bench_max_images == 200


def test_owner_by_email_password_or_explicit_switch(tmp_path):
    secrets = {"owner_emails": ["Owner@Example.com"], "owner_password": "correct horse", "auth": {"x": 1},
               "data_roots": [str(tmp_path), str(tmp_path / "missing")]}
    cfg = access.AccessConfig.from_sources(secrets, env={})
    assert cfg.role_for("owner@example.com") is access.Role.OWNER
    assert cfg.role_for("other@example.com") is access.Role.VISITOR
    assert cfg.password_matches("correct horse") and not cfg.password_matches("correct horse ")
    assert not cfg.password_matches("")
    assert cfg.data_roots == (tmp_path.resolve(),) and "missing" in cfg.notes[0]
    assert access.AccessConfig.from_sources({}, env={"FLOWERS_OWNER": "1"}).role_for() is access.Role.OWNER
    assert access.AccessConfig.from_sources({}, env={}, argv=["app.py", "--owner"]).owner_everyone


OIDC = {"redirect_uri": "https://flowers.streamlit.app/oauth2callback", "cookie_secret": "k" * 43,
        "client_id": "id", "client_secret": "secret",
        "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration"}


def test_secrets_slips_a_newcomer_makes_are_caught():
    """Keys typed after the [auth] header belong to it in TOML: not read, and said so. An [auth]
    table with a placeholder left in does not switch OIDC sign-in on."""
    slipped = access.AccessConfig.from_sources({"auth": {**OIDC, "owner_password": "pw", "owner_emails": ["a@b.c"]}},
                                               env={})
    assert slipped.owner_password_sha256 is None and slipped.owner_emails == ()
    assert any("owner_emails" in note and "owner_password" in note for note in slipped.notes)
    placeholder = access.AccessConfig.from_sources({"owner_emails": ["a@b.c"], "auth": {**OIDC, "client_id": "..."}},
                                                   env={})
    assert not placeholder.oidc_configured and not placeholder.can_sign_in
    ready = access.AccessConfig.from_sources({"owner_emails": ["a@b.c"], "auth": OIDC}, env={})
    assert ready.oidc_configured and ready.can_sign_in and not ready.notes
    password_only = access.AccessConfig.from_sources({"owner_password": "a long passphrase"}, env={})
    assert password_only.can_sign_in and not password_only.oidc_configured and not password_only.notes


def test_the_policy_gives_visitors_none_of_the_owner_actions():
    visitor, owner = access.Policy(access.Role.VISITOR), access.Policy(access.Role.OWNER)
    assert not any(visitor.allows(action) for action in access.Action)
    assert all(owner.allows(action) for action in access.Action)
    assert visitor.may_write(private_model=True) and not visitor.may_write(private_model=False)
    assert owner.may_write(private_model=False)
    shared, own = Path("/shared"), Path("/workspace")
    assert visitor.output_root(shared, own) == own and owner.output_root(shared, own) == shared
    assert visitor.limits.bench_max_seconds and owner.limits.bench_max_seconds is None
    assert len(access.OWNER_ONLY) == len(access.Action)  # what visitors are told is what is checked
    assert access.Page.SHARED_MODELS in owner.pages() and access.Page.SHARED_MODELS not in visitor.pages()
    assert set(visitor.pages()) == set(access.Page) - {access.Page.SHARED_MODELS}
