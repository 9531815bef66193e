"""Genomics suite (DNA): reverse complement, GC count, translation, restriction enzyme.

OOD mixes longer sequences (skill transfers from SFT) with CPT-only facts: codons whose meaning
differs under another NCBI genetic code stated in the prompt, and restriction enzymes held out of
SFT/RL whose sites appear only in the CPT corpus.
"""

from __future__ import annotations

import random
from functools import cache

from Bio import Restriction
from Bio.Data import CodonTable
from Bio.Seq import reverse_complement

from ptplan.stages._scoring import exact, numeric
from ptplan.stages._tasks._base import Example, Recipe, SuiteSizes, SuiteSpec, TaskData, materialize, seq

NAME = "genomics"
DNA = "ACGT"
ID_LEN = (8, 16)
OOD_LEN = (18, 28)
ID_CODONS = (3, 7)
ID_TABLE = 1
# NCBI codes whose codon assignments differ from the standard code (table 28 has ambiguous stops)
ALT_TABLES = (2, 3, 4, 5, 6, 9, 10, 12, 13, 14)
ID_ENZYMES = ("EcoRI", "BamHI", "HindIII", "PstI", "SalI", "XbaI", "KpnI", "SacI", "XhoI", "NcoI")
HELD_OUT_ENZYMES = ("NdeI", "EcoRV", "NheI", "SpeI")
FACT_VARIANTS = 6  # CPT documents per enzyme: the bare site plus flanked examples

FAMILIES = {
    "revcomp": "reverse complement of a DNA strand ('rc:ACGT=' -> 'ACGT')",
    "gc": "number of G and C bases ('gc:ACGGT=' -> '3')",
    "translate": "translation under the NCBI genetic code N stated as 'tlN:' (N = 1 in train)",
    "restriction": "the REBASE enzyme whose recognition site the sequence contains ('re:...=' -> 'EcoRI')",
}
OOD_SHIFT = (
    "longer sequences (reverse complement, GC count: 18-28 nt vs 8-16) + CPT-only facts: codons that "
    "differ under other NCBI genetic codes stated in the prompt, held-out restriction enzymes "
    + "/".join(HELD_OUT_ENZYMES)
)


@cache
def codon_table(table_id: int) -> dict[str, str]:
    """Codon -> one-letter amino acid ('*' for stop) of an NCBI genetic code (Biopython)."""
    table = CodonTable.unambiguous_dna_by_id[table_id]
    return {**table.forward_table, **{codon: "*" for codon in table.stop_codons}}


def translate(dna: str, table_id: int) -> str:
    code = codon_table(table_id)
    return "".join(code[dna[i : i + 3]] for i in range(0, len(dna) - len(dna) % 3, 3))


@cache
def enzyme_sites() -> dict[str, str]:
    """Enzyme name -> recognition site (REBASE via Bio.Restriction) for every enzyme in the panel."""
    return {name: str(getattr(Restriction, name).site) for name in ID_ENZYMES + HELD_OUT_ENZYMES}


def sites_in(dna: str) -> list[str]:
    """Names of panel enzymes with a site in dna, once per occurrence (sites are palindromic)."""
    hits = []
    for name, site in enzyme_sites().items():
        start = dna.find(site)
        while start != -1:
            hits.append(name)
            start = dna.find(site, start + 1)
    return hits


def revcomp_example(rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "revcomp") -> Example:
    dna = seq(rng, DNA, lo, hi)
    return Example(f"rc:{dna}=", reverse_complement(dna), task)


def gc_example(rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "gc") -> Example:
    dna = seq(rng, DNA, lo, hi)
    return Example(f"gc:{dna}=", str(dna.count("G") + dna.count("C")), task)


def translate_example(rng: random.Random) -> Example:
    n = 3 * rng.randint(*ID_CODONS)
    dna = seq(rng, DNA, n, n)
    return Example(f"tl{ID_TABLE}:{dna}=", translate(dna, ID_TABLE), "translate")


def restriction_example(
    rng: random.Random, enzymes: tuple[str, ...] = ID_ENZYMES, task: str = "restriction"
) -> Example:
    """A sequence holding exactly one panel site (of an enzyme in `enzymes`), 8-16 nt."""
    sites = enzyme_sites()
    while True:
        name = rng.choice(enzymes)
        site = sites[name]
        flank = rng.randint(max(0, ID_LEN[0] - len(site)), ID_LEN[1] - len(site))
        left = rng.randint(0, flank)
        dna = seq(rng, DNA, left, left) + site + seq(rng, DNA, flank - left, flank - left)
        if sites_in(dna) == [name]:
            return Example(f"re:{dna}=", name, task)


def facts(rng: random.Random) -> list[Example]:
    """CPT facts in task format: the standard code's 64 codons, other codes' differing codons,
    and every panel enzyme's site (bare and flanked)."""
    out = [Example(f"tl{ID_TABLE}:{c}=", aa, "translate") for c, aa in sorted(codon_table(ID_TABLE).items())]
    standard = codon_table(ID_TABLE)
    for table_id in ALT_TABLES:
        for codon, aa in sorted(codon_table(table_id).items()):
            if aa != standard[codon]:
                out.append(Example(f"tl{table_id}:{codon}=", aa, "translate_cpt"))
    for enzymes, task in ((ID_ENZYMES, "restriction"), (HELD_OUT_ENZYMES, "restriction_cpt")):
        for name in enzymes:
            variants = {f"re:{enzyme_sites()[name]}=": Example(f"re:{enzyme_sites()[name]}=", name, task)}
            while len(variants) < FACT_VARIANTS:
                ex = restriction_example(rng, (name,), task)
                variants.setdefault(ex.prompt, ex)
            out.extend(variants.values())
    return out


def raw(rng: random.Random) -> str:
    return seq(rng, DNA, 16, 48)


RECIPE = Recipe(
    name=NAME,
    families={
        "revcomp": revcomp_example,
        "gc": gc_example,
        "translate": translate_example,
        "restriction": restriction_example,
    },
    ood_parts={
        "revcomp_long": (1, lambda rng: revcomp_example(rng, *OOD_LEN, task="revcomp_long")),
        "gc_long": (1, lambda rng: gc_example(rng, *OOD_LEN, task="gc_long")),
        "translate_cpt": (1, None),
        "restriction_cpt": (1, None),
    },
    facts=facts,
    raw=raw,
    scorers={
        "revcomp": exact,
        "revcomp_long": exact,
        "gc": numeric(0),
        "gc_long": numeric(0),
        "translate": exact,
        "translate_cpt": exact,
        "restriction": exact,
        "restriction_cpt": exact,
    },
    ood_shift=OOD_SHIFT,
)


def build(seed: int, sizes: SuiteSizes, ood: str = "recall") -> TaskData:
    return materialize(RECIPE, seed, sizes, ood)


SPEC = SuiteSpec(
    name=NAME,
    description="DNA: reverse complement, GC count, translation under NCBI genetic codes, restriction sites",
    families=FAMILIES,
    ood_shift=OOD_SHIFT,
    build=build,
)
