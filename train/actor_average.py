"""A uniform average of the actor's weights over the last part of training (stochastic weight
averaging, Izmailov et al., UAI 2018), kept beside the training actor as a shadow copy.

Training never sees the average: it only reads the actor's parameters after each gradient step,
so a run with averaging trains exactly like one without. The run ships the average
(:func:`aolo.train.run.load_run` loads it into the actor); the raw weights stay in ``model.zip``
and ``actor.safetensors`` so that ``--resume`` continues training from them. A checkpoint writes
the average even before its first snapshot (``count`` 0: the run ships its last weights), so that
an average from before a resume never stays behind beside newer weights.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from aolo.runtime.atomic_files import atomic_path

__all__ = ["ActorAverage", "averaged_weights"]


class ActorAverage:
    """Running mean of an actor's parameters, one snapshot per :meth:`update`.

    :attr count: snapshots averaged so far
    :attr first_step: environment step of the first snapshot (None before it)
    :attr mean: parameter name -> mean tensor (same shape and dtype as the parameter); empty until
        the first update
    """

    def __init__(self) -> None:
        self.count = 0
        self.first_step: int | None = None
        self.mean: dict[str, torch.Tensor] = {}

    def update(self, actor: nn.Module, step: int) -> None:
        """Add the actor's current parameters, at environment step ``step``, to the mean."""
        if self.first_step is None:
            self.first_step = int(step)
        self.count += 1
        with torch.no_grad():
            for name, p in actor.named_parameters():
                if name not in self.mean:
                    self.mean[name] = p.detach().clone()
                else:
                    self.mean[name].add_(p.detach() - self.mean[name], alpha=1.0 / self.count)

    def save(self, path: str | Path) -> None:
        """Write ``{"count", "first_step", "mean"}`` with ``torch.save``, replacing ``path``
        atomically (:func:`aolo.runtime.atomic_files.atomic_path`)."""
        with atomic_path(path) as tmp:
            torch.save({"count": self.count, "first_step": self.first_step, "mean": self.mean}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "ActorAverage":
        """Read a file written by :meth:`save`.

        :raises ValueError: the file is not an actor average (named)
        """
        from .run_files import read_run_file

        raw = read_run_file(path)  # a plain file of bounded size, else a ValueError naming it
        try:
            data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)  # tensors and plain values only
            average = cls()
            average.count, average.mean = int(data["count"]), dict(data["mean"])
            average.first_step = None if data["first_step"] is None else int(data["first_step"])
            if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in average.mean.items()):
                raise TypeError("'mean' is not a dict of named tensors")
        except Exception as e:  # torch raises many types for a corrupt or foreign file
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: not an actor average ({first})") from None
        return average

    def load_into(self, actor: nn.Module) -> None:
        """Overwrite the actor's parameters with the mean.

        :raises ValueError: the mean does not hold exactly the actor's parameters, with their shapes
        """
        params = dict(actor.named_parameters())
        if set(params) != set(self.mean) or any(params[k].shape != v.shape for k, v in self.mean.items()):
            raise ValueError("the actor average does not match the actor's parameters "
                             f"({sorted(self.mean)} against {sorted(params)})")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(self.mean[name])


@contextmanager
def averaged_weights(actor: nn.Module, average: ActorAverage | None) -> Iterator[nn.Module]:
    """Within the block the actor holds the average (if it has any snapshot); afterwards its own
    parameters are back, bit for bit, and training continues from them."""
    if average is None or average.count == 0:
        yield actor
        return
    raw = {name: p.detach().clone() for name, p in actor.named_parameters()}
    average.load_into(actor)
    try:
        yield actor
    finally:
        with torch.no_grad():
            for name, p in actor.named_parameters():
                p.copy_(raw[name])
