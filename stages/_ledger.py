"""Budget ledger: what each stage spent, in every unit at once.

FLOPs are counted from tokens actually processed (DESIGN.md): training ~6N per token with all
weights trained, ~4N with a frozen base (LoRA), 2N per generated or prefilled token; a GRPO step
also pays a 2N reference forward when beta > 0. Evaluation is recorded apart and never charged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ._config import STAGES, UNITS
from ptplan.stages.errors import BudgetError




def train_flops_per_token(n_params: int, rank: int) -> float:
    return (6.0 if rank == 0 else 4.0) * n_params


def rl_flops_per_token(n_params: int, rank: int, beta: float) -> float:
    """Generation (prefill + decode) 2N, policy update 6N/4N, reference forward 2N if beta > 0."""
    return 2.0 * n_params + train_flops_per_token(n_params, rank) + (2.0 * n_params if beta > 0 else 0.0)


@dataclass
class Spend:
    """Compute in every unit; `steps` counts optimizer steps."""

    flops: float = 0.0
    tokens: float = 0.0
    examples: float = 0.0
    epochs: float = 0.0
    seconds: float = 0.0
    steps: int = 0

    def get(self, unit: str) -> float:
        return float(getattr(self, unit))

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})


@dataclass
class StageLedger:
    """One stage's slice and what it spent on training and (apart) on evaluation."""

    slice: float
    spent: Spend = field(default_factory=Spend)
    eval: Spend = field(default_factory=Spend)
    reused: bool = False


@dataclass
class Ledger:
    """The trial's budget split into per-stage slices."""

    total: float
    unit: str
    stages: dict[str, StageLedger] = field(default_factory=dict)

    @classmethod
    def split(cls, total: float, unit: str, shares: dict[str, float]) -> "Ledger":
        if unit not in UNITS:
            raise BudgetError(f"unknown budget unit {unit!r} (known: {', '.join(UNITS)})")
        return cls(total, unit, {s: StageLedger(slice=total * shares.get(s, 0.0)) for s in STAGES})

    def spent(self, unit: str | None = None) -> float:
        unit = unit or self.unit
        return sum(s.spent.get(unit) for s in self.stages.values())

    def spent_before(self, stage: str) -> float:
        """Budget-unit compute of the stages that ran before `stage` (curve x offset)."""
        return sum(self.stages[s].spent.get(self.unit) for s in STAGES[: STAGES.index(stage)])

    def to_dict(self) -> dict:
        out = {"total": self.total, "unit": self.unit, "stages": {}}
        for name, st in self.stages.items():
            out["stages"][name] = {"slice": st.slice, "spent": dataclasses.asdict(st.spent),
                                   "eval": dataclasses.asdict(st.eval), "reused": st.reused}
        out["spent"] = dataclasses.asdict(sum((s.spent for s in self.stages.values()), Spend()))
        out["eval"] = dataclasses.asdict(sum((s.eval for s in self.stages.values()), Spend()))
        return out
