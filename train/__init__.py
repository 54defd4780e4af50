"""Training stage: environment, reference policies, SDRL and SAC."""
