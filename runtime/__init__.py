"""Runtime stage: torch-free carbon model, grid traces, policy backends and the carbon ledger."""
