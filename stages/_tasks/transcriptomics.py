"""Transcriptomics suite (RNA): transcription, RNA reverse complement, cell type from a cell sentence.

A "cell sentence" lists gene symbols ranked by expression (canonical markers of one cell type mixed
with ubiquitous housekeeping genes). OOD mixes longer sequences and sentences (skill transfers from
SFT) with held-out cell types whose marker facts appear only in the CPT corpus.
"""

from __future__ import annotations

import random

from Bio.Seq import reverse_complement_rna, transcribe

from ptplan.stages._scoring import exact
from ptplan.stages._tasks._base import Example, Recipe, SuiteSizes, SuiteSpec, TaskData, materialize, seq

NAME = "transcriptomics"
DNA, RNA = "ACGT", "ACGU"
ID_LEN = (8, 16)
OOD_LEN = (18, 28)

# Canonical marker genes (HGNC symbols) of human cell types; no symbol is listed for two types.
MARKERS: dict[str, tuple[str, ...]] = {
    "T cell": ("CD3E", "CD3D", "CD3G", "CD2", "IL7R", "LCK"),
    "B cell": ("CD19", "MS4A1", "CD79A", "CD79B", "PAX5", "CD22"),
    "NK cell": ("NKG7", "GNLY", "KLRD1", "KLRF1", "NCAM1", "PRF1"),
    "monocyte": ("CD14", "LYZ", "S100A8", "S100A9", "FCN1", "VCAN"),
    "platelet": ("PPBP", "PF4", "ITGA2B", "GP9", "GP1BA", "TUBB1"),
    "erythrocyte": ("HBB", "HBA1", "HBA2", "GYPA", "ALAS2", "SLC4A1"),
    "hepatocyte": ("ALB", "APOA1", "TTR", "SERPINA1", "APOB", "FGB"),
    "neuron": ("RBFOX3", "SNAP25", "SYT1", "STMN2", "GAP43", "TUBB3"),
    "astrocyte": ("GFAP", "AQP4", "SLC1A3", "ALDH1L1", "GJA1", "ALDOC"),
    "endothelial cell": ("PECAM1", "VWF", "CDH5", "KDR", "CLDN5", "EMCN"),
    "dendritic cell": ("CD1C", "FCER1A", "CLEC10A", "CLEC9A", "XCR1", "LAMP3"),
    "oligodendrocyte": ("MBP", "PLP1", "MOG", "MAG", "MOBP", "OPALIN"),
    "cardiomyocyte": ("MYH6", "MYH7", "TNNT2", "ACTC1", "NPPA", "MYL7"),
    "keratinocyte": ("KRT5", "KRT14", "KRT1", "KRT10", "DSG3", "TP63"),
}
HELD_OUT_TYPES = ("dendritic cell", "oligodendrocyte", "cardiomyocyte", "keratinocyte")
ID_TYPES = tuple(t for t in MARKERS if t not in HELD_OUT_TYPES)
HOUSEKEEPING = ("ACTB", "GAPDH", "B2M", "MALAT1", "TMSB4X", "EEF1A1", "FTL", "RPLP0")
ID_SENTENCE = (3, 1)  # markers, housekeeping genes per sentence
OOD_SENTENCE = (5, 2)
FACT_SENTENCES = 6  # CPT cell sentences per cell type (besides one fact per marker gene)

FAMILIES = {
    "transcribe": "mRNA transcribed from a DNA coding strand ('tx:ACGT=' -> 'ACGU')",
    "rna_revcomp": "reverse complement of an RNA strand ('rrc:ACGU=' -> 'ACGU')",
    "celltype": "cell type of a ranked marker-gene cell sentence ('ct:CD3E ACTB IL7R CD2=' -> 'T cell')",
}
OOD_SHIFT = (
    "longer sequences and cell sentences (18-28 nt vs 8-16; 7 genes vs 4) + CPT-only facts: held-out "
    "cell types " + ", ".join(HELD_OUT_TYPES)
)


def sentence(rng: random.Random, cell_type: str, n_markers: int, n_housekeeping: int) -> str:
    genes = rng.sample(MARKERS[cell_type], n_markers)
    for gene in rng.sample(HOUSEKEEPING, n_housekeeping):
        genes.insert(rng.randint(0, len(genes)), gene)
    return " ".join(genes)


def transcribe_example(
    rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "transcribe"
) -> Example:
    dna = seq(rng, DNA, lo, hi)
    return Example(f"tx:{dna}=", transcribe(dna), task)


def rna_revcomp_example(
    rng: random.Random, lo: int = ID_LEN[0], hi: int = ID_LEN[1], task: str = "rna_revcomp"
) -> Example:
    rna = seq(rng, RNA, lo, hi)
    return Example(f"rrc:{rna}=", reverse_complement_rna(rna), task)


def celltype_example(
    rng: random.Random, types: tuple[str, ...] = ID_TYPES, shape: tuple[int, int] = ID_SENTENCE, task: str = "celltype"
) -> Example:
    cell_type = rng.choice(types)
    return Example(f"ct:{sentence(rng, cell_type, *shape)}=", cell_type, task)


def facts(rng: random.Random) -> list[Example]:
    """CPT facts in task format: each marker gene alone -> its cell type, plus cell sentences."""
    out = []
    for cell_type, genes in MARKERS.items():
        task = "celltype_cpt" if cell_type in HELD_OUT_TYPES else "celltype"
        variants = {f"ct:{g}=": Example(f"ct:{g}=", cell_type, task) for g in genes}
        while len(variants) < len(genes) + FACT_SENTENCES:
            ex = celltype_example(rng, (cell_type,), ID_SENTENCE, task)
            variants.setdefault(ex.prompt, ex)
        out.extend(variants.values())
    return out


def raw(rng: random.Random) -> str:
    """An RNA sequence or an unlabeled cell sentence."""
    if rng.random() < 0.5:
        return seq(rng, RNA, 16, 48)
    return sentence(rng, rng.choice(list(MARKERS)), rng.randint(3, 6), rng.randint(1, 3))


RECIPE = Recipe(
    name=NAME,
    families={"transcribe": transcribe_example, "rna_revcomp": rna_revcomp_example, "celltype": celltype_example},
    ood_parts={
        "transcribe_long": (1, lambda rng: transcribe_example(rng, *OOD_LEN, task="transcribe_long")),
        "rna_revcomp_long": (1, lambda rng: rna_revcomp_example(rng, *OOD_LEN, task="rna_revcomp_long")),
        "celltype_long": (1, lambda rng: celltype_example(rng, ID_TYPES, OOD_SENTENCE, "celltype_long")),
        "celltype_cpt": (3, None),
    },
    facts=facts,
    raw=raw,
    scorers=dict.fromkeys(
        ("transcribe", "transcribe_long", "rna_revcomp", "rna_revcomp_long", "celltype", "celltype_long", "celltype_cpt"),
        exact,
    ),
    ood_shift=OOD_SHIFT,
)


def build(seed: int, sizes: SuiteSizes, ood: str = "recall") -> TaskData:
    return materialize(RECIPE, seed, sizes, ood)


SPEC = SuiteSpec(
    name=NAME,
    description="RNA: transcription, RNA reverse complement, cell type from ranked marker-gene cell sentences",
    families=FAMILIES,
    ood_shift=OOD_SHIFT,
    build=build,
)
