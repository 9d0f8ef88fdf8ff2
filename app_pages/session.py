"""Who this session is: its role (visitor or owner, from secrets and sign-in), its `Policy`, its
private workspace, the sidebar's access panel; and what this server lacks (TensorFlow on Python 3.14)."""

from __future__ import annotations

import sys

import streamlit as st

from core import availability
from core.app import access, workspace
from core.app.access import AccessConfig, Role

_OWNER_PASSWORD_KEY = "owner-password-ok"
_WORKSPACE_KEY = "workspace-key"
TF_MISSING_KEY = "tensorflow-missing"  # the notice's container: the browser test finds it by this key


def _secrets() -> dict:
    """`.streamlit/secrets.toml` as a dict; none at all is the normal, safe default."""
    try:
        return st.secrets.to_dict()
    except Exception:  # Streamlit raises FileNotFoundError or its own error when there is no file
        return {}


def access_config() -> AccessConfig:
    return AccessConfig.from_sources(_secrets(), argv=sys.argv)


def _signed_in_email(cfg: AccessConfig) -> str | None:
    if not cfg.oidc_configured or not st.user.get("is_logged_in", False):
        return None
    return st.user.get("email")


def role() -> Role:
    cfg = access_config()
    return cfg.role_for(_signed_in_email(cfg), bool(st.session_state.get(_OWNER_PASSWORD_KEY)))


def policy() -> access.Policy:
    """What this session may do (core.app.access): pages ask it before offering an action."""
    return access.Policy(role())


def current_workspace() -> workspace.Workspace:
    """This browser's private workspace: keyed by Streamlit's per-browser XSRF cookie, so that a
    reload finds it again and a shared link does not; a random key where there is no cookie."""
    if _WORKSPACE_KEY not in st.session_state:
        cookie = st.context.cookies.get("_streamlit_xsrf")
        st.session_state[_WORKSPACE_KEY] = (workspace.key_from_xsrf_cookie(cookie) if cookie
                                            else workspace.new_key())
    return workspace.Workspace(st.session_state[_WORKSPACE_KEY])


def access_panel() -> None:
    """The sidebar's role badge, what the owner could do more, and the owner's sign-in."""
    cfg = access_config()
    current = role()
    with st.sidebar:
        if current is Role.OWNER:
            how = ("trusted local run" if cfg.owner_everyone else
                   f"signed in as {_signed_in_email(cfg)}" if _signed_in_email(cfg) else "owner password")
            st.success(f"Role: **owner** ({how})", icon=":material/admin_panel_settings:")
            for note in cfg.notes:
                st.warning(note)
            if st.session_state.get(_OWNER_PASSWORD_KEY) and st.button("Sign out"):
                st.session_state.pop(_OWNER_PASSWORD_KEY)
                st.rerun()
            elif _signed_in_email(cfg) and st.button("Sign out"):
                st.logout()
            return
        st.info("Role: **visitor**. Your uploads and models are private to this browser; "
                f"models you train are deleted after {workspace.MAX_AGE_S // 3600} h.", icon=":material/person:")
        with st.expander("Only the owner can"):
            st.markdown("\n".join(f"- {line}" for line in access.OWNER_ONLY))
            if cfg.oidc_configured and cfg.owner_emails:
                if st.button("Owner sign-in"):
                    st.login()
            if cfg.owner_password_sha256:
                given = st.text_input("Owner password", type="password", key="owner-password")
                if given and cfg.password_matches(given):
                    st.session_state[_OWNER_PASSWORD_KEY] = True
                    st.session_state.pop("owner-password")
                    st.rerun()
                elif given:
                    st.error("Wrong password.")
            if not cfg.can_sign_in:
                st.caption("No owner sign-in is configured on this deployment.")


def tensorflow_missing_notice() -> bool:
    """Where TensorFlow is not installed (Cloud's Python 3.14): what is missing, why, and the fix.
    True when it is missing."""
    why = availability.tensorflow_missing()
    if why is not None:
        st.container(key=TF_MISSING_KEY).warning(why, icon=":material/warning:")
    return why is not None
