"""`ptplan tasks`: the built-in suites, their families, OOD shift and sample prompts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def show_tasks(console: Console, suite: str | None = None, samples: int = 1) -> None:
    from ptplan.stages import SUITES, SuiteSizes

    names = [suite] if suite else list(SUITES)
    for name in names:
        if name not in SUITES:
            raise ValueError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
        spec = SUITES[name]
        sizes = SuiteSizes(cpt=8, sft=64, rl=8, id_test=64, ood_test=64)
        data, transfer = spec.build(0, sizes), spec.build(0, sizes, "transfer")
        example = transfer.ood_test[0] if transfer.ood_test else None
        caption = (f"OOD shift (data.ood: recall): {spec.ood_shift}\nOOD shift (data.ood: transfer): {transfer.ood_shift}"
                   + (f", e.g. {example.prompt} -> {example.answer}" if example else ""))
        table = Table(title=f"{name}: {spec.description}", caption=caption, show_lines=True)
        for col in ("family", "what", "sample prompt -> answer (ID)", "sample (OOD)"):
            table.add_column(col)
        for family, what in spec.families.items():
            ids = [e for e in data.id_test if e.task == family][:samples]
            oods = [e for e in data.ood_test if e.task.split("_")[0] == family][:samples]
            table.add_row(family, what, "\n".join(f"{e.prompt} -> {e.answer}" for e in ids) or "-",
                          "\n".join(f"{e.prompt} -> {e.answer}" for e in oods) or "-")
        console.print(table)
        if data.cpt_corpus:
            console.print(f"  CPT corpus sample: {data.cpt_corpus[0]!r}", highlight=False)
