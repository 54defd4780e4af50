"""aolo: neuromorphic edge-deployment toolkit for low-carbon wireless LLM services.

Stages: ``aolo.train`` (environment, reference policies, SDRL/SAC), ``aolo.export`` (policy
bundles), ``aolo.runtime`` (torch-free serving and carbon ledger), ``aolo.hw_profiles``.
"""

__version__ = "0.1.0"
