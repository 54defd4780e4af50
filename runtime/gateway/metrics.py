"""The gateway's Prometheus metrics, in a ``CollectorRegistry`` of its own (never the process-global
default), so several apps in one process keep their own counts.

Names: the ``aolo_`` prefix, one quantity in base units, ``_total`` on counters; labels hold
low-cardinality dimensions only (backend, level, route template, status code, fault kind).

Every energy and carbon series carries ``kind``: ``measured`` (a counter or the client reported
it), ``modelled`` (a profile's model: the server's per-token figures, the radio's power model,
embodied carbon) or ``estimated`` (the actor's op counts priced on a hardware profile); and
``part``: ``inference``, ``radio``, ``actor`` or ``embodied``. Summing over the labels gives the
totals (``sum(aolo_carbon_grams_total)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from ..ledger import LedgerRow

__all__ = ["ENERGY_KINDS", "GatewayMetrics", "LATENCY_BUCKETS_S", "UPSTREAM_BUCKETS_S", "row_parts"]

ENERGY_KINDS = ("measured", "modelled", "estimated")

# decision latency, s: 50 us .. 1 s (an in-process decision is ~0.1 ms, an SNN on Lava ~10 ms)
LATENCY_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)
# upstream LLM call, s: 10 ms .. 10 min
UPSTREAM_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UPSTREAM_FAULTS = ("refused", "timeout", "status_5xx", "malformed", "stream_broken")


class GatewayMetrics:
    """Every series of one app.

    :param registry: the app's own registry
    :param backend: backend name; ``precision`` its precision (labels of the decision counter)
    """

    def __init__(self, registry: CollectorRegistry, backend: str, precision: str) -> None:
        self.registry = registry
        self.backend, self.precision = backend, precision
        self.decisions = Counter("aolo_decisions", "Decisions answered, by backend and precision.",
                                 ("backend", "precision"), registry=registry)
        self.decisions.labels(backend, precision)
        self.latency = Histogram("aolo_decision_latency_seconds",
                                 "Time to decide one decide call (a request or a batch), s.",
                                 buckets=LATENCY_BUCKETS_S, registry=registry)
        self.fallbacks = Counter("aolo_fallbacks", "Decisions answered by the safe policy after a backend failure.",
                                 registry=registry)
        self.carbon = Counter("aolo_carbon_grams", "Carbon of recorded requests, gCO2e, by part and kind.",
                              ("part", "kind"), registry=registry)
        self.energy = Counter("aolo_energy_joules", "Operational energy of recorded requests, J, by part and kind.",
                              ("part", "kind"), registry=registry)
        self.actor_energy = Counter("aolo_actor_energy_joules", "Actor energy of decisions, J, by kind.", ("kind",),
                                    registry=registry)
        self.http = Counter("aolo_http_requests", "HTTP requests, by route template and status code.",
                            ("path", "code"), registry=registry)
        self.proxied = Counter("aolo_proxied_requests", "Chat requests served through the upstream, by level and mode.",
                               ("level", "stream"), registry=registry)
        self.output_tokens = Counter("aolo_output_tokens", "Output tokens of proxied answers, by level.", ("level",),
                                     registry=registry)
        self.upstream_errors = Counter("aolo_upstream_errors", "Upstream faults (nothing billed), by kind.", ("kind",),
                                       registry=registry)
        for kind in UPSTREAM_FAULTS:
            self.upstream_errors.labels(kind)
        self.upstream_latency = Histogram("aolo_upstream_latency_seconds", "Wall time of upstream calls, s.",
                                          buckets=UPSTREAM_BUCKETS_S, registry=registry)
        self.pending_refused = Counter("aolo_pending_refused",
                                       "Decisions refused (429) because too many wait for their outcome.",
                                       registry=registry)
        self.pending = Gauge("aolo_pending_decisions", "Decisions waiting for their outcome.", registry=registry)

    def count_decisions(self, n: int, n_fallback: int, actor_energy_j: float, seconds: float) -> None:
        self.decisions.labels(self.backend, self.precision).inc(n)
        if n_fallback:
            self.fallbacks.inc(n_fallback)
        if actor_energy_j > 0:  # priced op counts (no energy known: nothing counted)
            self.actor_energy.labels("estimated").inc(actor_energy_j)
        self.latency.observe(seconds)

    def count_row(self, row: "LedgerRow") -> None:
        """Add a committed ledger row's carbon and energy by part and kind."""
        for part, kind, carbon_g, energy_j in row_parts(row):
            if carbon_g > 0:
                self.carbon.labels(part, kind).inc(carbon_g)
            if energy_j is not None and energy_j > 0:
                self.energy.labels(part, kind).inc(energy_j)


def row_parts(row: "LedgerRow") -> list[tuple[str, str, float, "float | None"]]:
    """(part, kind, carbon g, energy J or None) of a ledger row; a part whose kind is not one of
    :data:`ENERGY_KINDS` (an actor with no known energy, rows of old ledgers) is left out."""
    parts = [("inference", row.inference_kind, row.inference_g, row.inference_energy_j),
             ("radio", row.radio_kind, row.radio_g, row.radio_dynamic_energy_j + row.radio_static_energy_j),
             ("actor", row.actor_kind, row.actor_g, row.actor_energy_j),
             ("embodied", "modelled", row.embodied_gpu_g + row.embodied_bs_g, None)]
    return [p for p in parts if p[1] in ENERGY_KINDS]
