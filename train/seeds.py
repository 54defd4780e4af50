"""The seed sets, kept apart so that nothing is tuned on what is reported.

* :data:`EVAL_SEEDS`: the reported tables (``aolo evaluate``, ``aolo compare``, the pipeline, the
  parity checks' recorded observations); never used to train or to choose anything.
* :data:`VALIDATION_SEEDS`: periodic evaluation during training and every tuning decision.
* :data:`CALIBRATION_SEED`: C_ref, the LP's statistics and the observation statistics.

Training seeds are any others; :class:`aolo.train.train_config.TrainConfig` refuses a reserved one.
"""

from __future__ import annotations

__all__ = ["CALIBRATION_SEED", "EVAL_SEEDS", "RESERVED_SEEDS", "VALIDATION_SEEDS"]

EVAL_SEEDS: tuple[int, ...] = (1001, 1002, 1003)
VALIDATION_SEEDS: tuple[int, ...] = (501, 502)
CALIBRATION_SEED = 2**31 - 7
RESERVED_SEEDS = frozenset((*EVAL_SEEDS, CALIBRATION_SEED))
"""Seeds that may never train nor validate."""
