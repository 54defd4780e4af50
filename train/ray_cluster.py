"""Where aolo's Ray work runs: a local Ray started for the command (the default: the machine's cores,
no dashboard, nothing to set up) or a running cluster by address (``--address auto`` on a cluster
node, ``--address ray://HOST:10001`` through Ray Client). docs/sweeps.md covers clusters.

Ray is imported here only when a command asks for it, so that every other command starts without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ray_session", "ray_missing_message"]


def ray_missing_message() -> str | None:
    """None when Ray Tune imports; otherwise one line saying what to install."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as e:
        return f"Ray Tune is not installed ({e}); pip install -e '.[sweep]' (make install does)"
    except KeyError as e:  # amdsmi without ROCm's library (the Makefile removes it): Ray's import fails
        return (f"Ray cannot be imported ({type(e).__name__} {e}: the amdsmi package without ROCm's libamd_smi.so); "
                "pip uninstall amdsmi, or install ROCm's amd-smi-lib")
    return None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of a block: connected to ``address``, or a local Ray with ``num_cpus``
    CPUs (default: the machine's). A Ray already initialised in this process (a test's, or an
    outer command's) is used as it is and left running.

    :param address: None for a local Ray; ``auto`` (a cluster this node belongs to) or
        ``ray://HOST:PORT`` (Ray Client)
    :param num_cpus: CPUs of the local Ray (ignored with an address: the cluster has its own)
    :raises ValueError: Ray is not installed, or the address cannot be reached (one line)
    """
    missing = ray_missing_message()
    if missing is not None:
        raise ValueError(missing)
    import ray

    if ray.is_initialized():
        yield
        return
    # no usage statistics: nothing here may reach outside the machine or cluster
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=True)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ValueError(f"--address {address}: cannot connect to Ray ({str(e).splitlines()[0]})") from None
    try:
        yield
    finally:
        ray.shutdown()
