"""Find, load and validate profiles: the embedded ones under ``data/`` and any user TOML file.

Every failure names the file and the field (``radios/macro.toml: field 'p_0.unit': ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tomli
from pydantic import ValidationError

from .actor_hardware import ActorHardwareProfile
from .grid_zone import GridZoneProfile
from .llm_server import LLMServerProfile
from .profile import Profile
from .radio import RadioProfile

DATA_DIR = Path(__file__).parent / "data"

# The defaults every command and scenario starts from: Sprout's Llama-2-13B on an A100, a macro
# base station, and the Texas (ERCOT) grid of Sprout's evaluation (docs/model.md).
DEFAULT_SERVER_PROFILE = "llama2-13b-a100"
DEFAULT_RADIO_PROFILE = "macro"
DEFAULT_GRID_ZONE = "US-TEX-ERCO"

PROFILE_TYPES: dict[str, type[Profile]] = {
    cls.TYPE: cls for cls in (LLMServerProfile, RadioProfile, ActorHardwareProfile, GridZoneProfile)
}
# embedded profiles live in one folder per type
TYPE_FOLDERS = {
    "llm_server": "llm_servers",
    "radio": "radios",
    "actor_hardware": "actor_hardware",
    "grid_zone": "grids",
}

P = TypeVar("P", bound=Profile)
MAX_PROFILE_BYTES = 1 << 20  # the embedded profiles are 1-5 kB


class ProfileError(ValueError):
    """A profile file that cannot be read or does not validate; the message names file and field."""


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: field {field!r}: {msg}")
    return "\n".join(lines)


def load_profile_file(path: str | Path) -> Profile:
    """Read one TOML profile and validate it against the type named in its ``type`` key.

    :raises ProfileError: unreadable TOML, unknown type, unknown key, missing field, wrong unit,
        negative value; the message names the file and the field.
    """
    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_PROFILE_BYTES else None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror}") from e
    if data is None:
        raise ProfileError(f"{path}: larger than {MAX_PROFILE_BYTES} bytes; a profile is a short TOML file")
    try:
        raw = tomli.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    except tomli.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from None
    ptype = raw.get("type")
    if ptype not in PROFILE_TYPES:
        raise ProfileError(
            f"{path}: field 'type': {ptype!r} is not a profile type (one of {', '.join(PROFILE_TYPES)})"
        )
    try:
        return PROFILE_TYPES[ptype].model_validate(raw)
    except ValidationError as e:
        raise ProfileError(_format_validation_error(path, e)) from None


@dataclass(frozen=True)
class ProfileEntry:
    """Where an embedded profile lives, without loading it."""

    name: str
    type: str
    path: Path


def embedded_profiles() -> list[ProfileEntry]:
    """All profiles shipped with aolo, sorted by type then name."""
    entries = []
    for ptype, folder in TYPE_FOLDERS.items():
        for path in sorted((DATA_DIR / folder).glob("*.toml")):
            entries.append(ProfileEntry(name=path.stem, type=ptype, path=path))
    return entries


def load_profile(name: str, expected: type[P] | None = None) -> P:
    """Load an embedded profile by name, or a TOML file by path.

    :param name: a profile name as listed by ``aolo profiles list`` or a path to a ``.toml`` file.
    :param expected: the profile class the caller needs; a profile of another type is an error.
    """
    if name.endswith(".toml") or "/" in name:
        profile = load_profile_file(name)
    else:
        matches = [e for e in embedded_profiles() if e.name == name]
        if not matches:
            known = ", ".join(e.name for e in embedded_profiles())
            raise ProfileError(f"no profile named {name!r} (known: {known})")
        profile = load_profile_file(matches[0].path)
    if expected is not None and not isinstance(profile, expected):
        raise ProfileError(f"profile {name!r} is a {profile.type}, expected a {expected.TYPE}")
    return profile  # type: ignore[return-value]
