"""Who may do what: the *visitor* (anyone with the link) and the *owner* (whoever deployed it).

Safe by default: with nothing configured every session is a visitor. The owner is recognised
by an e-mail allow-list (after Streamlit's OIDC `st.login`), by an owner password kept in
secrets (compared in constant time), or by an explicit switch for a trusted local run
(`FLOWERS_OWNER=1`, or `streamlit run streamlit_app.py -- --owner`).

This module reads settings from plain mappings (Streamlit's secrets and the environment are
passed in by the UI layer), so it has no Streamlit import and is tested directly.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from core.model.data import OFFICIAL_URL, allowed_urls

OWNER_ENV = "FLOWERS_OWNER"
DATA_ROOTS_ENV = "FLOWERS_DATA_ROOTS"  # os.pathsep-separated folders the owner may train from

TOP_LEVEL_KEYS = {"owner_emails", "owner_password", "allowed_urls", "data_roots"}  # read from the top level only
OIDC_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")  # st.login's

# The whole app (server plus one job) must stay under Community Cloud's ~2.7 GB; this leaves headroom.
MEMORY_BUDGET_MB = 2500


class Role(str, Enum):
    VISITOR = "visitor"
    OWNER = "owner"


@dataclass(frozen=True)
class Limits:
    """Caps on what one job may cost; `None` means no cap."""

    bench_max_images: int | None = 200
    bench_max_repeats: int | None = 5
    bench_max_seconds: float | None = 300
    train_max_seconds: float | None = 1800
    memory_budget_mb: float | None = MEMORY_BUDGET_MB


VISITOR_LIMITS = Limits()
OWNER_LIMITS = Limits(None, None, None, None, None)

class Action(str, Enum):
    """What only the owner may do; the value is what visitors are shown, so they know what the
    deployment could do and why they cannot."""

    TRAIN_FROM_DATA_ROOTS = "train from folders on the server (inside the configured data roots)"
    TRAIN_FROM_URL = "download datasets from other allowed URLs"
    PUBLISH = "publish a model for everyone, delete shared models, choose the default model"
    WRITE_SHARED_MODEL = "tune a shared model or make its peers' files (both write into its folder)"
    UNCAPPED_JOBS = "run jobs beyond the visitor caps (benchmark photos, repeats and time; training time and memory)"


@dataclass(frozen=True)
class Policy:
    """What one session may do. Every page asks this before it offers an action; pages only
    draw what it allows."""

    role: Role

    @property
    def limits(self) -> Limits:
        return OWNER_LIMITS if self.role is Role.OWNER else VISITOR_LIMITS

    def allows(self, action: Action) -> bool:
        return self.role is Role.OWNER

    def may_write(self, private_model: bool) -> bool:
        """Write into a model's folder (tuning, peers' files): one's own, or a shared one as the owner."""
        return private_model or self.allows(Action.WRITE_SHARED_MODEL)

    def output_root(self, shared: Path, own: Path) -> Path:
        """Where this session's models and runs go: shared for the owner, the workspace otherwise."""
        return shared if self.allows(Action.PUBLISH) else own


    def pages(self) -> tuple[Page, ...]:
        """The pages this session's navigation lists: the shared models' page is the owner's."""
        return tuple(p for p in Page if p is not Page.SHARED_MODELS or self.allows(Action.PUBLISH))


class Page(str, Enum):
    """The app's pages, in navigation order; the value is the file in `app_pages/`."""

    HOME = "home"
    PREDICT = "predict"
    BENCHMARK = "benchmark"
    TUNE = "tune"
    TRAIN = "train"
    SHARED_MODELS = "shared_models"


OWNER_ONLY = tuple(action.value for action in Action)


@dataclass(frozen=True)
class AccessConfig:
    """The owner's settings, from `.streamlit/secrets.toml` and the environment."""

    owner_everyone: bool = False
    owner_emails: tuple[str, ...] = ()
    owner_password_sha256: str | None = None  # a digest, so the secret is never kept in memory as given
    oidc_configured: bool = False
    data_roots: tuple[Path, ...] = ()
    allowed_urls: tuple[str, ...] = (OFFICIAL_URL,)
    notes: tuple[str, ...] = field(default=(), compare=False)  # configuration problems, shown to the owner

    @classmethod
    def from_sources(cls, secrets: Mapping[str, Any], env: Mapping[str, str] | None = None,
                     argv: list[str] | None = None) -> "AccessConfig":
        env = os.environ if env is None else env
        argv = argv or []
        emails = secrets.get("owner_emails", ())
        if isinstance(emails, str):
            emails = [emails]
        password = secrets.get("owner_password")
        roots_text = env.get(DATA_ROOTS_ENV, "")
        roots = [*secrets.get("data_roots", ()), *(r for r in roots_text.split(os.pathsep) if r)]
        notes = []
        resolved_roots = []
        for r in roots:
            path = Path(r).expanduser()  # the owner's own setting; browser input never gets `~` expanded
            if path.is_dir():
                resolved_roots.append(path.resolve())
            else:
                notes.append(f"data root {r!r} is not a folder; ignored")
        auth = secrets.get("auth") or {}
        # TOML puts every key after a [table] header into that table: a frequent slip in the secrets box.
        misplaced = sorted(set(auth) & TOP_LEVEL_KEYS) if isinstance(auth, Mapping) else []
        if misplaced:
            notes.append(f"{', '.join(misplaced)} stand under [auth] in the secrets, where they are not read: "
                         "move them above the first [table] header")
        oidc = isinstance(auth, Mapping) and all(str(auth.get(k, "")).strip() not in ("", "...") for k in OIDC_KEYS)
        if auth and not oidc:
            notes.append("[auth] in the secrets lacks some of " + ", ".join(OIDC_KEYS) + " (or holds a placeholder): "
                         "OIDC sign-in is off")
        for note in notes:
            _warn_once(note)
        return cls(
            owner_everyone=env.get(OWNER_ENV, "").lower() in ("1", "true", "yes") or "--owner" in argv,
            owner_emails=tuple(e.strip().casefold() for e in emails if e.strip()),
            owner_password_sha256=_digest(password) if password else None,
            oidc_configured=oidc,
            data_roots=tuple(resolved_roots),
            allowed_urls=allowed_urls(tuple(secrets.get("allowed_urls", ())), env),
            notes=tuple(notes),
        )

    def role_for(self, email: str | None = None, password_ok: bool = False) -> Role:
        if self.owner_everyone or password_ok:
            return Role.OWNER
        if email and email.strip().casefold() in self.owner_emails:
            return Role.OWNER
        return Role.VISITOR

    def password_matches(self, given: str) -> bool:
        """Constant-time comparison of digests, so timing reveals nothing about the password."""
        if not self.owner_password_sha256 or not given:
            return False
        return hmac.compare_digest(_digest(given), self.owner_password_sha256)

    @property
    def can_sign_in(self) -> bool:
        return bool(self.owner_password_sha256) or (self.oidc_configured and bool(self.owner_emails))


_warned: set[str] = set()


def _warn_once(note: str) -> None:
    """Configuration problems go to the server log (Cloud's "Manage app" logs), once each: with a
    misplaced password there is no owner to show them to."""
    if note not in _warned:
        _warned.add(note)
        logging.getLogger(__name__).warning("secrets: %s", note)


def _digest(text: str) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()


def limits_for(role: Role) -> Limits:
    return Policy(role).limits
