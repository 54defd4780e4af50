"""The gateway at the base station: an OpenAI-compatible, carbon-aware LLM proxy and the sidecar
decide/outcome routes, one ASGI app (FastAPI on uvicorn, httpx to the upstream, prometheus_client
for metrics). :func:`create_app` builds it from :class:`GatewaySettings`; ``aolo serve`` runs it.
"""

from .app import Gateway, create_app, open_service
from .settings import DirectiveLevel, DirectiveSettings, GatewaySettings, SettingsError, load_directives

__all__ = ["DirectiveLevel", "DirectiveSettings", "Gateway", "GatewaySettings", "SettingsError", "create_app",
           "load_directives", "open_service"]
