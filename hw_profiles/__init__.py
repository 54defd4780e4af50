"""Versioned, validated energy and carbon profiles; every number carries its unit and source."""

from .actor_hardware import ActorHardwareProfile
from .grid_zone import GridZoneProfile
from .llm_server import LLMServerProfile
from .profile import Profile
from .quantity import Quantity, QuantitySeries
from .radio import RadioProfile
from .registry import (DEFAULT_GRID_ZONE, DEFAULT_RADIO_PROFILE, DEFAULT_SERVER_PROFILE, ProfileError,
                       embedded_profiles, load_profile, load_profile_file)

__all__ = [
    "DEFAULT_GRID_ZONE",
    "DEFAULT_RADIO_PROFILE",
    "DEFAULT_SERVER_PROFILE",
    "ActorHardwareProfile",
    "GridZoneProfile",
    "LLMServerProfile",
    "Profile",
    "ProfileError",
    "Quantity",
    "QuantitySeries",
    "RadioProfile",
    "embedded_profiles",
    "load_profile",
    "load_profile_file",
]
