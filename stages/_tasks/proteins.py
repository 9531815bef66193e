"""Proteins suite: Kyte-Doolittle hydropathy class, net charge at pH 7, short linear motif.

OOD mixes longer sequences (skill transfers from SFT) with held-out motifs whose facts appear only
in the CPT corpus.
"""

from __future__ import annotations

import random
import re
from functools import cache

from Bio.SeqUtils.ProtParam import ProteinAnalysis
from Bio.SeqUtils.ProtParamData import kd

from ptplan.stages._scoring import exact, numeric
from ptplan.stages._tasks._base import Example, Recipe, SuiteSizes, SuiteSpec, TaskData, materialize, seq

NAME = "proteins"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
ID_LEN = (8, 16)
OOD_LEN = (20, 30)
GRAVY_MARGIN = 0.3  # |GRAVY| below this is borderline and not generated
CHARGE_MARGIN = 0.3  # net charges farther than this from an integer are not generated
PH = 7.0

# Short linear motifs and protease sites (regex; '$' = C-terminal) -> what they signal.
MOTIFS: dict[str, str] = {
    "KDEL$": "ER retention",
    "PKKKRKV": "nuclear import",  # SV40 large T antigen NLS
    "RGD": "integrin binding",
    "DEVD": "caspase-3 site",
    "LVPRGS": "thrombin site",
    "ENLYFQ[GS]": "TEV site",
    "IEGR": "factor Xa site",
    "[AG]....GK[ST]": "ATP binding",  # Walker A / P-loop, PROSITE PS00017
    "DDDDK": "enterokinase site",
    "SKL$": "peroxisome",  # PTS1
    "LEVLFQGP": "3C protease site",  # HRV 3C / PreScission
    "KFERQ": "autophagy signal",  # chaperone-mediated autophagy targeting motif
}
HELD_OUT_MOTIFS = ("DDDDK", "SKL$", "LEVLFQGP", "KFERQ")
ID_MOTIFS = tuple(m for m in MOTIFS if m not in HELD_OUT_MOTIFS)
FACT_VARIANTS = 8  # CPT documents per motif (4 held out x 8 = 32 distinct OOD items)

FAMILIES = {
    "hydropathy": "Kyte-Doolittle GRAVY sign ('hyd:...=' -> 'hydrophobic' or 'hydrophilic')",
    "charge": "net charge at pH 7 rounded to an integer ('chg:MKKR=' -> '3')",
    "motif": "what the short linear motif in the sequence signals ('mot:AAKDEL=' -> 'ER retention')",
}
OOD_SHIFT = (
    "longer sequences (hydropathy, net charge: 20-30 aa vs 8-16) + CPT-only facts: held-out motifs "
    + ", ".join(MOTIFS[m] for m in HELD_OUT_MOTIFS)
)


def gravy(protein: str) -> float:
    """Grand average of hydropathy on the Kyte-Doolittle scale."""
    return sum(kd[a] for a in protein) / len(protein)


def net_charge(protein: str) -> float:
    return ProteinAnalysis(protein).charge_at_pH(PH)


@cache
def _motif_regexes() -> dict[str, re.Pattern[str]]:
    return {m: re.compile(f"(?={m})") for m in MOTIFS}


def motifs_in(protein: str) -> list[str]:
    """Motifs with a match in protein, once per (possibly overlapping) occurrence."""
    return [m for m, rx in _motif_regexes().items() for _ in rx.finditer(protein)]


def motif_instance(rng: random.Random, motif: str) -> str:
    out = []
    for token in re.findall(r"\[[A-Z]+\]|\.|[A-Z]", motif):
        out.append(rng.choice(token[1:-1]) if token[0] == "[" else rng.choice(AMINO) if token == "." else token)
    return "".join(out)


def hydropathy_example(
    rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "hydropathy"
) -> Example:
    hydrophobic = rng.random() < 0.5
    while True:
        protein = seq(rng, AMINO, lo, hi)
        g = gravy(protein)
        if abs(g) >= GRAVY_MARGIN and (g > 0) == hydrophobic:
            return Example(f"hyd:{protein}=", "hydrophobic" if hydrophobic else "hydrophilic", task)


def charge_example(rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "charge") -> Example:
    while True:
        protein = seq(rng, AMINO, lo, hi)
        c = net_charge(protein)
        if abs(c - round(c)) <= CHARGE_MARGIN:
            return Example(f"chg:{protein}=", str(int(round(c))), task)


def motif_example(rng: random.Random, motifs: tuple[str, ...] = ID_MOTIFS, task: str = "motif") -> Example:
    """A sequence of 8-16 aa holding exactly one motif occurrence (of a motif in `motifs`)."""
    while True:
        motif = rng.choice(motifs)
        core = motif_instance(rng, motif)
        flank = rng.randint(max(0, ID_LEN[0] - len(core)), ID_LEN[1] - len(core))
        left = flank if motif.endswith("$") else rng.randint(0, flank)
        protein = seq(rng, AMINO, left, left) + core + seq(rng, AMINO, flank - left, flank - left)
        if motifs_in(protein) == [motif]:
            return Example(f"mot:{protein}=", MOTIFS[motif], task)


def facts(rng: random.Random) -> list[Example]:
    """CPT facts in task format: flanked examples of every motif, ID and held-out."""
    out = []
    for motif in MOTIFS:
        task = "motif_cpt" if motif in HELD_OUT_MOTIFS else "motif"
        variants: dict[str, Example] = {}
        while len(variants) < FACT_VARIANTS:
            ex = motif_example(rng, (motif,), task)
            variants.setdefault(ex.prompt, ex)
        out.extend(variants.values())
    return out


def raw(rng: random.Random) -> str:
    return seq(rng, AMINO, 16, 48)


RECIPE = Recipe(
    name=NAME,
    families={"hydropathy": hydropathy_example, "charge": charge_example, "motif": motif_example},
    ood_parts={
        "hydropathy_long": (1, lambda rng: hydropathy_example(rng, *OOD_LEN, task="hydropathy_long")),
        "charge_long": (1, lambda rng: charge_example(rng, *OOD_LEN, task="charge_long")),
        "motif_cpt": (2, None),
    },
    facts=facts,
    raw=raw,
    scorers={
        "hydropathy": exact,
        "hydropathy_long": exact,
        "charge": numeric(0),
        "charge_long": numeric(0),
        "motif": exact,
        "motif_cpt": exact,
    },
    ood_shift=OOD_SHIFT,
)


def build(seed: int, sizes: SuiteSizes, ood: str = "recall") -> TaskData:
    return materialize(RECIPE, seed, sizes, ood)


SPEC = SuiteSpec(
    name=NAME,
    description="Proteins: Kyte-Doolittle hydropathy, net charge at pH 7, short linear motifs",
    families=FAMILIES,
    ood_shift=OOD_SHIFT,
    build=build,
)
