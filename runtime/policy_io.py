"""The policy's interface: how telemetry becomes an observation and an action becomes a decision.

Shared by the training environment and the base-station runtime, so that a policy sees the same
numbers in both. docs/model.md documents the observation field by field.
"""

from __future__ import annotations

import numpy as np

TASK_CLASSES: tuple[str, ...] = ("alpaca", "math", "mmlu", "naturalqa", "scienceqa", "triviaqa")
LEVELS: tuple[str, ...] = ("L0", "L1", "L2")

# (name, meaning and scale), in observation order
OBS_FIELDS: tuple[tuple[str, str], ...] = (
    ("ci_norm", "CI normalised by the trailing 7-day min/max, [0, 1]"),
    ("ci_g_per_kwh_scaled", "CI / 500 gCO2e/kWh"),
    ("hour_sin", "sin(2 pi hour_of_day_utc / 24)"),
    ("hour_cos", "cos(2 pi hour_of_day_utc / 24)"),
    *((f"class_{c}", "one-hot task class") for c in TASK_CLASSES),
    ("prompt_tokens_scaled", "prompt tokens / 256"),
    ("deadline_scaled", "T_max / 30 s"),
    ("gain_db_scaled", "(large-scale gain dB + 120) / 20"),
    ("sessions_scaled", "active sessions / 20"),
    ("quality_slack", "rolling quality - floor, clipped to [-1, 1]"),
)
OBS_DIM = len(OBS_FIELDS)
ACT_DIM = 2


def build_observation(
    ci_norm: np.ndarray,
    ci_g_per_kwh: np.ndarray,
    hour_of_day: np.ndarray,
    task_class: np.ndarray,
    prompt_tokens: np.ndarray,
    deadline_s: np.ndarray,
    gain_db: np.ndarray,
    active_sessions: np.ndarray,
    quality_slack: np.ndarray,
) -> np.ndarray:
    """Observations of n requests, (n, OBS_DIM) float32 in the order of OBS_FIELDS.

    :param ci_norm: (n,) trailing-normalised carbon intensity in [0, 1]
    :param ci_g_per_kwh: (n,) carbon intensity, gCO2e/kWh
    :param hour_of_day: (n,) UTC hour of day, [0, 24)
    :param task_class: (n,) int index into TASK_CLASSES
    :param prompt_tokens: (n,) prompt length, tokens
    :param deadline_s: (n,) latency budget, s
    :param gain_db: (n,) large-scale channel gain, dB
    :param active_sessions: (n,) sessions at the BS
    :param quality_slack: (n,) rolling quality minus the floor
    """
    task_class = np.asarray(task_class, dtype=np.int64)
    n = task_class.shape[0]
    onehot = np.zeros((n, len(TASK_CLASSES)))
    onehot[np.arange(n), task_class] = 1.0
    angle = 2.0 * np.pi * np.asarray(hour_of_day, dtype=np.float64) / 24.0
    cols = [
        np.asarray(ci_norm, dtype=np.float64)[:, None],
        (np.asarray(ci_g_per_kwh, dtype=np.float64) / 500.0)[:, None],
        np.sin(angle)[:, None],
        np.cos(angle)[:, None],
        onehot,
        (np.asarray(prompt_tokens, dtype=np.float64) / 256.0)[:, None],
        (np.asarray(deadline_s, dtype=np.float64) / 30.0)[:, None],
        ((np.asarray(gain_db, dtype=np.float64) + 120.0) / 20.0)[:, None],
        (np.asarray(active_sessions, dtype=np.float64) / 20.0)[:, None],
        np.clip(np.asarray(quality_slack, dtype=np.float64), -1.0, 1.0)[:, None],
    ]
    return np.concatenate(cols, axis=1).astype(np.float32)


def action_to_decision(action: np.ndarray, p_min_w: float, p_max_w: float) -> tuple[np.ndarray, np.ndarray]:
    """Map actor outputs to decisions.

    :param action: (n, 2) in [-1, 1] (clipped): a_0 binned into thirds -> level 0/1/2
        (a < -1/3 -> L0, a < 1/3 -> L1, else L2); a_1 affine -> power
    :param p_min_w: lowest transmit power, W
    :param p_max_w: highest transmit power, W
    :return: level (n,) int64, tx_power_w (n,) W in [p_min_w, p_max_w]
    """
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    level = np.digitize(a[:, 0], (-1.0 / 3.0, 1.0 / 3.0)).astype(np.int64)
    power = p_min_w + (a[:, 1] + 1.0) * 0.5 * (p_max_w - p_min_w)
    return level, power


def decision_to_action(level: np.ndarray, tx_power_w: np.ndarray, p_min_w: float, p_max_w: float) -> np.ndarray:
    """Inverse of :func:`action_to_decision` (a level maps to the centre of its bin), (n, 2) float32."""
    a0 = (np.asarray(level, dtype=np.float64) - 1.0) * (2.0 / 3.0)
    a1 = 2.0 * (np.asarray(tx_power_w, dtype=np.float64) - p_min_w) / (p_max_w - p_min_w) - 1.0
    return np.stack([a0, a1], axis=1).astype(np.float32)
