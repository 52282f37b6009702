"""One run asked for, as every run entry point takes it: `train`, `pretrain`, `pretrain_units`, and
what repeats them (`--seeds`, `--cv`). The CLI builds it once from its flags; a set makes its
members as copies with their own seed, name and place in the set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from audiotok_cli.settings import ModelSettings, Paths, TrainSettings
from audiotok_cli.store import Pick
from audiotok_cli.training.runs import SetMember

EpochCallback = Callable[[dict[str, float], int], None]  # (history entry, total epochs)


@dataclass(frozen=True)
class RunRequest:
    paths: Paths
    model: ModelSettings
    train: TrainSettings
    seed: int
    pick: Pick = field(default_factory=Pick)  # which tokens or features (default: the store's only ones)
    overwrite: bool = False  # replace a finished run of these settings
    on_epoch: EpochCallback | None = None  # told each epoch's history entry
    init: str | None = None  # the pretraining run whose encoder the model starts from
    member: SetMember | None = None  # the set that planned it (its record keeps it: run_sets.py)

    def as_member(self, seed: int, run_name: str, member: SetMember) -> RunRequest:
        """This request as one run of a set: its seed, its folder's name, its place in the set, and
        its epochs told under its name."""
        on_epoch = self.on_epoch
        named = None if on_epoch is None else lambda entry, total: on_epoch({**entry, "run": run_name}, total)
        return replace(
            self,
            train=self.train.model_copy(update={"run_name": run_name}),
            seed=seed,
            member=member,
            on_epoch=named,
        )
