"""Built-in biological task suites and the task data contract (private; exported by `stages`)."""

from __future__ import annotations

from ptplan.stages._scoring import Scorer
from ptplan.stages._tasks import genomics, proteins, transcriptomics
from ptplan.stages._tasks._base import Example, SuiteSizes, SuiteSpec, TaskData

__all__ = ["SUITES", "Example", "Scorer", "SuiteSizes", "SuiteSpec", "TaskData", "build_suite"]

SUITES: dict[str, SuiteSpec] = {spec.name: spec for spec in (genomics.SPEC, transcriptomics.SPEC, proteins.SPEC)}


def build_suite(name: str, seed: int = 0, sizes: SuiteSizes | None = None, ood: str = "recall") -> TaskData:
    """Generate the data of a built-in suite; the same (name, seed, sizes, ood) always gives the same data.

    `ood` picks the OOD split: "recall" (shifted inputs and CPT-only facts in the CPT corpus's format) or
    "transfer" (CPT-only facts in the answer format only SFT teaches; see `_base.materialize`)."""
    spec = SUITES.get(name)
    if spec is None:
        raise ValueError(f"unknown task suite {name!r}; known suites: {', '.join(SUITES)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"task suite seed must be an integer, got {seed!r}")
    return spec.build(seed, sizes if sizes is not None else SuiteSizes(), ood)
