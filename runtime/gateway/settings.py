"""Settings of one gateway: what it serves, where it forwards, its limits, and the directives.

Everything read from outside (the CLI's options, a directives TOML file) lands in these pydantic
models, so a bad value is refused naming its field before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import tomli
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from aolo.hw_profiles import DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE

from ..limits import TOKENS_MAX
from ..policy_io import TASK_CLASSES

__all__ = ["DirectiveLevel", "DirectiveSettings", "GatewaySettings", "SettingsError", "load_directives"]

MAX_TOKENS_BOUND = TOKENS_MAX  # the most output tokens a client may ask for (limits.INPUT_BOUNDS)


class SettingsError(ValueError):
    """A settings file or value that cannot be used; the message names the file and field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DirectiveLevel(_Frozen):
    """How one directive level changes a chat request.

    :param text: the instruction; None leaves the messages as they are
    :param placement: ``append_to_last_user`` adds ``text`` to the end of the last user message,
        after a blank line; ``system`` adds a system message at the start (or appends to the first
        one). Small models ignore system messages (see :data:`DEFAULT_DIRECTIVES`)
    :param max_tokens: cap on the answer's tokens at this level (the client's own ``max_tokens``
        still applies when lower); None for no cap
    """

    text: Optional[str] = Field(None, min_length=1, max_length=2000)
    placement: Literal["append_to_last_user", "system"] = "append_to_last_user"
    max_tokens: Optional[int] = Field(None, ge=1, le=MAX_TOKENS_BOUND)


class DirectiveSettings(_Frozen):
    """The three levels' directives (Sprout's L0 none, L1 brief, L2 very brief).

    Defaults measured on SmolLM2-135M-Instruct (llama.cpp, temperature 0, max_tokens 300, the six
    prompts of ``docs/deployment.md``), mean output tokens: no directive 173.5; "Always answer very
    briefly." as a system message 191.0 (the small model ignores it); appended to the last user
    turn, "Answer briefly." 61.8, "Answer briefly, in a few sentences." 47.2 (L1), "Answer very
    briefly, in one sentence." 25.5 (L2). L1 and L2 then answer 0.27 and 0.15 of L0's length, near
    Sprout's Llama-2-13B ratios (alpaca 0.29 and 0.20). The caps are the largest 95th percentile
    of Llama-2-13B-chat's output tokens at that level over Sprout's six classes
    (``train/data/sprout_defaults.json``: L1 298, L2 214), rounded up to tens: a backstop that a
    directive-following model does not reach.
    """

    L0: DirectiveLevel = DirectiveLevel()
    L1: DirectiveLevel = DirectiveLevel(text="Answer briefly, in a few sentences.", max_tokens=300)
    L2: DirectiveLevel = DirectiveLevel(text="Answer very briefly, in one sentence.", max_tokens=220)

    def level(self, name: str) -> DirectiveLevel:
        """The directive of level ``name`` ("L0", "L1", "L2")."""
        return getattr(self, name)


DEFAULT_DIRECTIVES = DirectiveSettings()


def load_directives(path: Path) -> DirectiveSettings:
    """Directives from a TOML file with tables ``[L0]``, ``[L1]``, ``[L2]`` (missing ones keep
    their defaults; a table replaces the whole level).

    :raises SettingsError: unreadable TOML or a bad field, naming the file and field
    """
    try:
        data = tomli.loads(Path(path).read_text())
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    except tomli.TOMLDecodeError as e:
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    try:
        return DirectiveSettings.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SettingsError(f"{path}: field '{field}': {err['msg']}") from None


class GatewaySettings(_Frozen):
    """One gateway: the policy and its accounting, the upstream LLM, the HTTP limits.

    :param bundle: policy bundle directory
    :param backend: ``onnx``, ``reference`` or ``lava``; ``precision`` float or fixed
    :param ledger: SQLite carbon ledger, created (0600) if absent
    :param radio: radio profile; ``server`` LLM server profile; ``grid`` zone or CSV
    :param actor_hardware: hardware the ledger charges the actor's energy for (None: by backend)
    :param trusted_keys: folder of ``*.pub`` Ed25519 keys; when set, only a bundle signed by one of
        them serves (None: unsigned bundles serve)
    :param host: interface to bind; ``port`` TCP port (0 picks a free one)
    :param upstream_url: base URL of an OpenAI-compatible server (``http://127.0.0.1:8000/v1``);
        None serves the sidecar routes only (the proxy routes answer 503)
    :param upstream_api_key: bearer token the upstream wants, if any
    :param llm_energy: how a proxied answer's LLM energy is accounted: ``model`` (the server
        profile by tokens), ``measure`` (this machine's GPU energy over the request's window,
        shared by tokens: :mod:`aolo.runtime.llm_energy`; refuses to start without a readable GPU
        counter), ``auto`` (measure the GPUs a process computes on at start when the upstream is
        on loopback and a GPU counter is readable, else model); the ledger row says measured or modelled
    :param upstream_connect_timeout_s: to open a connection to the upstream, s
    :param upstream_read_timeout_s: longest wait for the upstream's next bytes, s (a non-streamed
        answer is one wait: generation time included)
    :param tokens_file: TOML file of bearer tokens and their scopes; None leaves every route open
        (with a warning when binding anything but loopback)
    :param max_body_bytes: largest request body, bytes (413 beyond)
    :param body_timeout_s: the whole body must arrive within this after the headers, s (408)
    :param header_timeout_s: a new connection, or an idle keep-alive one, must send its request's
        headers within this, s (the connection is closed)
    :param keepalive_timeout_s: idle keep-alive connections are closed after this, s (uvicorn's
        ``timeout_keep_alive``)
    :param limit_concurrency: most connections and requests at once; beyond it uvicorn answers 503
    :param max_batch: most requests in one decide batch
    :param max_messages: most messages in one chat request
    :param max_pending: most decisions waiting for their outcome (429 beyond)
    :param pending_ttl_s: how long a decision waits for its outcome, s
    :param shutdown_grace_s: on SIGTERM, how long requests in flight may finish, s
    :param directives: the levels' directives
    :param default_task_class: task class of a chat request that names none
    :param default_active_sessions: sessions at the BS when a request reports none (the carbon
        estimate's default, ``aolo carbon estimate``)
    :param default_distance_m: user distance whose path loss stands in for an unreported link
        gain, m (the carbon estimate's default, 300 m)
    """

    bundle: Path
    backend: str = "onnx"
    precision: Literal["float", "fixed"] = "float"
    ledger: Path = Path("aolo-ledger.db")
    radio: str = DEFAULT_RADIO_PROFILE
    server: str = DEFAULT_SERVER_PROFILE
    grid: str = DEFAULT_GRID_ZONE
    actor_hardware: Optional[str] = None
    trusted_keys: Optional[Path] = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    upstream_url: Optional[str] = None
    upstream_api_key: Optional[SecretStr] = None
    llm_energy: Literal["auto", "measure", "model"] = "auto"
    upstream_connect_timeout_s: float = Field(5.0, gt=0, le=600)
    upstream_read_timeout_s: float = Field(300.0, gt=0, le=86_400)
    tokens_file: Optional[Path] = None
    max_body_bytes: int = Field(1 << 20, ge=1, le=1 << 30)
    body_timeout_s: float = Field(10.0, gt=0, le=3600)
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    keepalive_timeout_s: float = Field(30.0, gt=0, le=3600)
    limit_concurrency: int = Field(1024, ge=1, le=1_000_000)
    max_batch: int = Field(1024, ge=1, le=100_000)
    max_messages: int = Field(256, ge=1, le=100_000)
    max_pending: int = Field(100_000, ge=1, le=100_000_000)
    pending_ttl_s: float = Field(3600.0, gt=0, le=30 * 86_400)
    shutdown_grace_s: float = Field(10.0, ge=0, le=3600)
    directives: DirectiveSettings = DEFAULT_DIRECTIVES
    default_task_class: Literal[TASK_CLASSES] = "alpaca"  # type: ignore[valid-type]
    default_active_sessions: int = Field(10, ge=0, le=1_000_000)
    default_distance_m: float = Field(300.0, gt=0, le=100_000)

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

