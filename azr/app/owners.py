"""Owners and visitors: owners control the app (train, stop, resume, delete, push, verify files, Hub settings);
visitors watch.

Who is an owner is decided from the environment when the app starts (:meth:`Access.from_environment`):

- On a Hugging Face Space with ``hf_oauth: true`` in its card: owners sign in with Hugging Face (the page's
  button). The owners are the Space's owner (``SPACE_AUTHOR_NAME``; for an organisation, its members) and the
  users or organisations listed in ``AZR_OWNERS`` (comma-separated).
- ``AZR_OWNER_PASSWORD`` (anywhere, a Space too): whoever gives this password is an owner: the page's
  *Owner password* field, or ``owner_password=`` in an API call. Visitors still watch without it.
- ``AZR_PRIVATE=1`` with the password: the whole app is behind Gradio's login (``auth``; user ``owner``);
  nobody watches without the password, and everyone who logged in is an owner.
- Neither, bound to 127.0.0.1: everyone who can reach the app is an owner (only this machine can).
- Neither, bound to another address: nobody controls the app; it can only be watched.

Visitors use the checkpoints (generate text, download a checkpoint's zip) unless ``AZR_VISITORS_GENERATE=0``; a
visitor's zip never holds the run's corpus (the owner's texts). A visitor's Hub settings are ignored: visitors see
the checkpoints of ``AZR_HUB_REPO`` only, and nothing of theirs reaches the Hub.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

import gradio as gr

from azr.errors import AccessError

OWNERS_ENV = "AZR_OWNERS"
PASSWORD_ENV = "AZR_OWNER_PASSWORD"
PRIVATE_ENV = "AZR_PRIVATE"
VISITORS_GENERATE_ENV = "AZR_VISITORS_GENERATE"
LOGIN_USER = "owner"  # the user name of Gradio's login page in a private app
LOOPBACK = ("127.0.0.1", "localhost", "::1")
OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the Hugging Face user signed in on a Space (None: nobody) and the password given."""

    profile: gr.OAuthProfile | None = None
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class Access:
    """The app's owners; the default (no owner set, on this machine only) lets everyone control it."""

    owners: frozenset[str] = frozenset()  # Hugging Face user and organisation names, lower case
    password: str | None = field(default=None, repr=False)
    oauth: bool = False  # on a Space with hf_oauth: the page has a sign-in button
    private: bool = False  # the whole app behind Gradio's login
    open: bool = True  # everyone is an owner
    visitors_generate: bool = True

    @classmethod
    def from_environment(cls, host: str) -> Access:
        """Return the access of an app bound to ``host`` as the environment sets it (see the module's doc)."""
        password = os.environ.get(PASSWORD_ENV) or None
        oauth = bool(os.environ.get("SYSTEM") == "spaces" and os.environ.get("SPACE_ID")
                     and os.environ.get("OAUTH_CLIENT_ID"))
        names = [os.environ.get("SPACE_AUTHOR_NAME") or os.environ.get("SPACE_ID", "").partition("/")[0]] \
            if oauth else []
        names += os.environ.get(OWNERS_ENV, "").split(",")
        private = bool(password) and os.environ.get(PRIVATE_ENV, "").lower() not in ("", *OFF)
        configured = bool(password or oauth)
        return cls(owners=frozenset(n.strip().lower() for n in names if n.strip()), password=password,
                   oauth=oauth, private=private, open=private or (not configured and host in LOOPBACK),
                   visitors_generate=os.environ.get(VISITORS_GENERATE_ENV, "1").lower() not in OFF)

    def gradio_auth(self) -> list[tuple[str, str]] | None:
        """Return the ``auth`` of ``launch()``: the owner's login for a private app, else None (no login page)."""
        return [(LOGIN_USER, self.password)] if self.private and self.password else None

    def is_owner(self, caller: Caller | None) -> bool:
        """True when ``caller`` may control the app (None: a call from this process, an owner when ``open``)."""
        if self.open:
            return True
        if caller is None:
            return False
        if self.password and caller.password and hmac.compare_digest(caller.password.encode(), self.password.encode()):
            return True
        return self.oauth and caller.profile is not None and bool(_names(caller.profile) & self.owners)

    def check(self, caller: Caller | None, action: str) -> None:
        """Raise AccessError, naming ``action`` and how to become an owner, unless ``caller`` is an owner."""
        if not self.is_owner(caller):
            raise AccessError(f"Only the app's owner can {action}; {self.how()}.")

    def check_use(self, caller: Caller | None, action: str) -> None:
        """Raise AccessError for ``action`` on a checkpoint (generating, downloading) when the checkpoints are for
        owners (``AZR_VISITORS_GENERATE=0``) and ``caller`` is none."""
        if not self.visitors_generate:
            self.check(caller, action)

    def how(self) -> str:
        """Say how to become an owner of this app."""
        ways = []
        if self.oauth:
            ways.append("sign in with Hugging Face as the Space's owner (or a user in AZR_OWNERS)")
        if self.password:
            ways.append("give the owner password (the Owner password field, or owner_password= in the API)")
        if not ways:
            return (f"this app has no owner: set {PASSWORD_ENV}, or bind it to 127.0.0.1, or run it as a Space "
                    "with hf_oauth: true")
        return " or ".join(ways)


def _names(profile: gr.OAuthProfile) -> set[str]:
    """The user's name and the names of the organisations the sign-in shares, lower case."""
    orgs = profile.get("orgs") or []
    names = {profile.username, *(o.get("preferred_username") or o.get("name") for o in orgs if isinstance(o, dict))}
    return {name.lower() for name in names if isinstance(name, str) and name}
