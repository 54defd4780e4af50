"""Energy counters: cumulative joules read through Zeus's device layer, and, where none can be
read, the reason for each place looked.

Counters (each one cumulative and monotonic, read with :meth:`EnergyCounter.read_j`):

* ``nvml:gpuN`` (``amdsmi:gpuN``): an NVIDIA (AMD) GPU's total energy since the driver loaded,
  through ``zeus.device.get_gpus()`` (NVML's ``nvmlDeviceGetTotalEnergyConsumption``, Volta and
  newer; mJ);
* ``rapl:package-N`` and ``rapl:dram-N``: a CPU package's and its DRAM's energy through
  ``zeus.device.cpu.rapl.RAPLCPU`` over ``/sys/class/powercap/intel-rapl`` (Intel, and AMD with the
  powercap driver; Zeus counts the counter's wrap-arounds in a helper process).

aolo reads Zeus's device objects itself instead of opening ``zeus.monitor.ZeusMonitor`` windows:
the monitor synchronises through torch (the runtime never imports torch), it always looks at the
fixed system RAPL folder (``RAPLCPU(cpu_index, rapl_dir)`` takes any folder, so tests read a
powercap tree built in a temp folder), and the gateway needs cumulative readings at the moments
requests start and end, not windows that nest. The readings are Zeus's; what aolo does with
them (idle baseline, per-decision arithmetic, attribution to requests) is in
:mod:`.energy_measure` and :mod:`.llm_energy`.

Zeus is an optional extra (``pip install 'aolo[measure]'``): without it :func:`find_counters`
returns no counter and says so, and nothing else in the runtime needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

__all__ = ["MEASURE_EXTRA", "POWERCAP_ROOT", "CounterSearch", "EnergyCounter", "ZeusGpuCounter", "ZeusRaplCounter",
           "find_counters", "gpu_counters", "rapl_counters"]

MEASURE_EXTRA = "pip install 'aolo[measure]'"
"""What installs Zeus, named in every message about a missing counter library."""
POWERCAP_ROOT = "/sys/class/powercap"
"""Where Linux exposes RAPL (the ``intel-rapl`` control type) when the kernel and container allow."""
DOMAINS = ("gpu", "cpu", "dram")


@runtime_checkable
class EnergyCounter(Protocol):
    """A cumulative energy counter.

    ``name`` says which (``nvml:gpu0``, ``rapl:package-0``), ``domain`` what it covers (``gpu``,
    ``cpu`` for a CPU package, ``dram``), ``where`` what it reads (a device name or a file).
    """

    name: str
    domain: str
    where: str

    def read_j(self) -> float:
        """Energy since an arbitrary origin, J; never decreases."""
        ...


@dataclass(frozen=True)
class ZeusGpuCounter:
    """One GPU's total energy through Zeus's GPU manager (``zeus.device.get_gpus()``).

    :param gpus: Zeus's ``GPUs`` object
    :param index: the GPU's index in it (CUDA's numbering after ``CUDA_VISIBLE_DEVICES``)
    """

    gpus: Any
    index: int
    name: str
    where: str
    domain: str = "gpu"

    def read_j(self) -> float:
        return float(self.gpus.get_total_energy_consumption(self.index)) / 1000.0  # mJ -> J


@dataclass(frozen=True)
class ZeusRaplCounter:
    """A CPU package's (``part="package"``) or its DRAM's (``part="dram"``) energy through
    ``zeus.device.cpu.rapl.RAPLCPU``.

    :param cpu: Zeus's ``RAPLCPU`` of one ``intel-rapl:N`` zone
    """

    cpu: Any
    part: str
    name: str
    where: str
    domain: str = "cpu"

    def read_j(self) -> float:
        m = self.cpu.get_total_energy_consumption()
        mj = m.cpu_mj if self.part == "package" else m.dram_mj
        return float(mj) / 1000.0  # mJ -> J


@dataclass
class CounterSearch:
    """What :func:`find_counters` found: the counters, and one line per place where none could be read.

    :param counters: readable counters (each read once when found)
    :param reasons: why each place looked at gave none, e.g. "RAPL: no /sys/class/powercap in
        this container"
    """

    counters: list[EnergyCounter] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def of(self, *domains: str) -> list[EnergyCounter]:
        """The counters of the given domains."""
        return [c for c in self.counters if c.domain in domains]

    def note(self) -> str:
        """One line: the counters read, and why the others are not."""
        found = ", ".join(f"{c.name} ({c.where})" for c in self.counters)
        missing = "; ".join(self.reasons)
        if not self.counters:
            return f"No energy counter readable here ({missing})."
        return f"Energy counters: {found}" + (f"; not read: {missing}" if missing else "") + "."


def _zeus_missing(what: str) -> str:
    return f"{what}: Zeus is not installed ({MEASURE_EXTRA})"


def rapl_counters(rapl_dir: str | None = None) -> CounterSearch:
    """CPU package and DRAM counters of every ``intel-rapl:N`` zone under ``rapl_dir``.

    :param rapl_dir: the ``intel-rapl`` folder (default: Zeus's system path
        ``/sys/class/powercap/intel-rapl``, or its container path ``/zeus_sys/...``)
    """
    out = CounterSearch()
    try:
        from zeus.device.cpu import rapl as zrapl
        from zeus.device.cpu.common import ZeusCPUNoPermissionError
    except ImportError:
        out.reasons.append(_zeus_missing("RAPL"))
        return out
    if rapl_dir is None:
        rapl_dir = next((d for d in (zrapl.RAPL_DIR, zrapl.CONTAINER_RAPL_DIR) if os.path.isdir(d)), None)
        if rapl_dir is None:
            out.reasons.append(f"RAPL: no {POWERCAP_ROOT} in this container" if not os.path.isdir(POWERCAP_ROOT) else
                               f"RAPL: {POWERCAP_ROOT} has no intel-rapl zone (this CPU or kernel exposes no RAPL)")
            return out
    zones = sorted((int(n.split(":")[1]) for n in _listdir(rapl_dir)
                    if n.startswith("intel-rapl:") and n.split(":")[1].isdigit()))
    if not zones:
        out.reasons.append(f"RAPL: {rapl_dir} has no intel-rapl:N zone")
    for i in zones:
        zone = os.path.join(rapl_dir, f"intel-rapl:{i}")
        try:
            cpu = zrapl.RAPLCPU(i, rapl_dir)
            parts = [("package", f"rapl:package-{i}", "cpu")]
            if cpu.supports_get_dram_energy_consumption():
                parts.append(("dram", f"rapl:dram-{i}", "dram"))
            for part, name, domain in parts:
                counter = ZeusRaplCounter(cpu=cpu, part=part, name=name, where=zone, domain=domain)
                counter.read_j()
                out.counters.append(counter)
        except (ZeusCPUNoPermissionError, PermissionError):
            out.reasons.append(f"RAPL: {zone}/energy_uj is not readable by this user (root, or Zeus's zeusd, needed)")
        except Exception as e:  # Zeus raises its own types for unreadable zones; each is one reason line
            out.reasons.append(f"RAPL: {zone}: {type(e).__name__}: {e}")
    return out


def gpu_counters() -> CounterSearch:
    """A counter per GPU that Zeus's GPU manager reaches (NVML, else AMD SMI) and that has an
    energy counter (NVIDIA: Volta and newer)."""
    out = CounterSearch()
    try:
        from zeus.device.gpu import ZeusGPUInitError, get_gpus
    except ImportError:
        out.reasons.append(_zeus_missing("NVML"))
        return out
    try:
        gpus = get_gpus()
    except ZeusGPUInitError:
        out.reasons.append(f"NVML: {_nvml_failure()}")
        return out
    except Exception as e:
        out.reasons.append(f"NVML: {type(e).__name__}: {e}")
        return out
    lib = "amdsmi" if type(gpus).__name__.startswith("AMD") else "nvml"
    for i in range(len(gpus)):
        try:
            name = gpus.get_name(i)
            if not gpus.supports_get_total_energy_consumption(i):
                out.reasons.append(f"{lib}: GPU {i} ({name}) has no energy counter (NVIDIA: Volta or newer needed)")
                continue
            counter = ZeusGpuCounter(gpus=gpus, index=i, name=f"{lib}:gpu{i}", where=str(name))
            counter.read_j()
            out.counters.append(counter)
        except Exception as e:  # a lost GPU, no permission: one reason line each
            out.reasons.append(f"{lib}: GPU {i}: {type(e).__name__}: {e}")
    if len(gpus) == 0:
        out.reasons.append(f"{lib}: no GPU visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return out


def _nvml_failure() -> str:
    """Why NVML does not initialise, in NVML's own words."""
    try:
        import pynvml
    except ImportError:
        return f"nvidia-ml-py is not installed ({MEASURE_EXTRA})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        if isinstance(e, pynvml.NVMLError_LibraryNotFound):
            return "libnvidia-ml.so.1 not loadable (no NVIDIA driver on this machine)"
        return f"cannot initialise ({e})"
    return "initialises, but Zeus found no GPU it can use"


def find_counters(domains: Sequence[str] = DOMAINS, rapl_dir: str | None = None) -> CounterSearch:
    """Every readable counter of ``domains``, and a reason for each place that gave none.

    :param domains: among ``gpu``, ``cpu``, ``dram``
    :param rapl_dir: see :func:`rapl_counters`
    :raises ValueError: an unknown domain
    """
    bad = [d for d in domains if d not in DOMAINS]
    if bad:
        raise ValueError(f"domains: unknown {bad} (known: {', '.join(DOMAINS)})")
    out = CounterSearch()
    try:
        import zeus  # noqa: F401
    except ImportError:
        out.reasons.append(f"Zeus is not installed, so no counter was read ({MEASURE_EXTRA})")
        return out
    for wanted, search in (({"gpu"}, gpu_counters), ({"cpu", "dram"}, lambda: rapl_counters(rapl_dir))):
        if wanted & set(domains):
            found = search()
            out.counters += [c for c in found.counters if c.domain in domains]
            out.reasons += found.reasons
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
