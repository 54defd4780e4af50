"""Bearer tokens with scopes, checked on every route but ``/healthz``: by a FastAPI ``Security``
dependency, or on the lean sidecar routes (:mod:`.lean`) by the same :func:`authorize`.

Scopes: ``serve`` (decide, the OpenAI-compatible proxy), ``report`` (outcome, feedback), ``read``
(carbon totals, metrics). The tokens file is TOML; it stores each token's SHA-256, never the
token, so a leaked file grants nothing::

    [[tokens]]
    name = "ran-integration"          # shown in logs, never the token
    sha256 = "9f86d081884c7d65..."    # hex SHA-256 of the token's UTF-8 bytes
    scopes = ["serve", "report"]

``aolo token --name NAME --scopes serve,report`` makes a random token and prints its table.
Without a tokens file every route is open (``aolo serve`` warns when it binds anything but
loopback). A missing or unknown token gets 401 with ``WWW-Authenticate: Bearer``; a known token
without the route's scope gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import tomli
from fastapi import Request
from fastapi.security import SecurityScopes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import APIError
from .settings import SettingsError

__all__ = ["SCOPES", "TokenEntry", "TokenStore", "authorize", "load_tokens", "new_token", "require_scopes"]

SCOPES = ("serve", "report", "read")


class TokenEntry(BaseModel):
    """One token of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Literal["serve", "report", "read"], ...] = Field(min_length=1)


class _TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(min_length=1)


@dataclass(frozen=True)
class TokenStore:
    """The tokens an app accepts, by the SHA-256 of the token."""

    by_hash: dict[str, TokenEntry]
    source: str

    def check(self, presented: str) -> Optional[TokenEntry]:
        """The entry of a presented token, or None (one dictionary lookup on its hash, then a
        constant-time comparison)."""
        digest = hashlib.sha256(presented.encode()).hexdigest()
        entry = self.by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            return None
        return entry


def load_tokens(path: Path) -> TokenStore:
    """Read a tokens file (see the module docstring).

    :raises SettingsError: unreadable, not TOML, a bad field, or a hash given twice; the message
        names the file and field
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read the tokens file: {e.strerror}") from None
    try:
        data = _TokensFile.model_validate(tomli.loads(text))
    except tomli.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SettingsError(f"{path}: field '{field}': {err['msg']}") from None
    by_hash: dict[str, TokenEntry] = {}
    for i, entry in enumerate(data.tokens):
        if entry.sha256 in by_hash:
            raise SettingsError(f"{path}: field 'tokens.{i}.sha256': the same token as {by_hash[entry.sha256].name!r}")
        by_hash[entry.sha256] = entry
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SettingsError(f"{path}: others may write the tokens file (mode {stat.filemode(mode)}); chmod go-w it")
    return TokenStore(by_hash, str(path))


def new_token(name: str, scopes: tuple[str, ...]) -> tuple[str, str]:
    """A random token (256 bits, URL-safe) and its TOML table for the tokens file.

    :raises SettingsError: an unknown scope
    """
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise SettingsError(f"--scopes: {bad[0] if bad else '(none)'!r} is not one of {', '.join(SCOPES)}")
    token = "aolo_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = TokenEntry(name=name, sha256=digest, scopes=tuple(scopes))  # validates the name
    table = (f'[[tokens]]\nname = "{entry.name}"\nsha256 = "{digest}"\n'
             f"scopes = [{', '.join(repr(s).replace(chr(39), chr(34)) for s in scopes)}]\n")
    return token, table


def authorize(store: Optional[TokenStore], authorization: str, scopes: Sequence[str]) -> Optional[TokenEntry]:
    """Check a request's ``Authorization`` header against the route's scopes (the ``Security``
    dependency below and the lean routes of :mod:`.lean` both call this).

    :param store: the app's tokens (None: no tokens file, every route open)
    :param authorization: the header's value ("" when absent)
    :param scopes: every scope the route demands
    :return: the token's entry (None when the app has no tokens file)
    :raises APIError: 401 no or unknown bearer token, 403 a scope missing
    """
    if store is None:
        return None
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise APIError(401, "Authorization: a bearer token is required", "Authorization",
                       headers={"WWW-Authenticate": "Bearer"}, code="missing_token")
    entry = store.check(presented.strip())
    if entry is None:
        raise APIError(401, "Authorization: unknown token", "Authorization",
                       headers={"WWW-Authenticate": "Bearer"}, code="invalid_token")
    missing = [s for s in scopes if s not in entry.scopes]
    if missing:
        raise APIError(403, f"Authorization: token {entry.name!r} lacks scope {missing[0]!r}", "Authorization",
                       headers={"WWW-Authenticate": f'Bearer scope="{" ".join(scopes)}"'},
                       code="insufficient_scope")
    return entry


async def require_scopes(security_scopes: SecurityScopes, request: Request) -> Optional[TokenEntry]:
    """The ``Security`` dependency of every guarded FastAPI route: the request's token must carry
    every scope the route names (:func:`authorize`).

    :raises APIError: 401 no or unknown bearer token, 403 a scope missing
    """
    return authorize(request.app.state.tokens, request.headers.get("authorization", ""), security_scopes.scopes)
