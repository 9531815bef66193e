"""Built-in task suites: contract tests over every suite, plus biology cross-checked with Biopython."""

from __future__ import annotations

import re
import string
import time
from collections import Counter
from functools import cache

import pytest
from Bio.Restriction import RestrictionBatch
from Bio.Seq import Seq
from Bio.SeqUtils import gc_fraction
from Bio.SeqUtils.ProtParam import ProteinAnalysis

from ptplan.stages._tasks import SUITES, Example, SuiteSizes, TaskData, build_suite
from ptplan.stages._tasks import genomics, proteins, transcriptomics
from ptplan.stages._tasks._base import CPT_SUFFIX, quotas

PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


@cache
def suite(name: str, seed: int = 0) -> TaskData:
    return build_suite(name, seed)


def body(prompt: str) -> str:
    """The sequence or sentence of a prompt: what lies between the family tag and '='."""
    return prompt.split(":", 1)[1][:-1]


def tagged(data: TaskData, prefix: str) -> list[Example]:
    return [e for e in data.sft_train + data.rl_train + data.id_test + data.ood_test if e.task.startswith(prefix)]


# ------------------------------------------------------------------ contract, every suite


@pytest.mark.parametrize("name", list(SUITES))
class TestSuiteContract:
    def test_sizes_respected(self, name):
        sizes = SuiteSizes(cpt=50, sft=40, rl=30, id_test=20, ood_test=24)
        data = build_suite(name, 3, sizes)
        got = [len(data.cpt_corpus), len(data.sft_train), len(data.rl_train), len(data.id_test), len(data.ood_test)]
        assert got == [50, 40, 30, 20, 24]

    def test_spec_and_data_agree(self, name):
        spec, data = SUITES[name], suite(name)
        assert spec.name == data.name == name
        assert data.ood_shift == spec.ood_shift and len(spec.ood_shift) > 20
        for split in (data.sft_train, data.rl_train, data.id_test):
            assert Counter(e.task for e in split).keys() == spec.families.keys()
        assert all(task in data.scorers for task in {e.task for e in data.id_test + data.ood_test})

    def test_families_balanced(self, name):
        counts = Counter(e.task for e in suite(name).sft_train)
        assert max(counts.values()) - min(counts.values()) <= 1

    def test_ood_mixes_shifted_skill_and_cpt_knowledge(self, name):
        ood = suite(name).ood_test
        cpt_items = [e for e in ood if e.task.endswith(CPT_SUFFIX)]
        assert len(cpt_items) == len(ood) // 2
        assert {e.task for e in ood} & set(SUITES[name].families) == set(), "OOD tasks are named for their shift"
        assert len({e.prompt for e in cpt_items}) == len(cpt_items)

    def test_deterministic(self, name):
        a, b = build_suite(name, 7), build_suite(name, 7)
        for split in ("cpt_corpus", "sft_train", "rl_train", "id_test", "ood_test"):
            assert getattr(a, split) == getattr(b, split)
        c = build_suite(name, 8)
        for split in ("cpt_corpus", "sft_train", "rl_train", "id_test", "ood_test"):
            assert getattr(a, split) != getattr(c, split)

    def test_no_test_prompt_in_train(self, name):
        data = suite(name)
        train = {e.prompt for e in data.sft_train + data.rl_train}
        assert not train & {e.prompt for e in data.id_test}
        assert not train & {e.prompt for e in data.ood_test}
        assert len({e.prompt for e in data.id_test}) == len(data.id_test)

    def test_cpt_knowledge_only_in_cpt(self, name):
        """CPT-knowledge OOD items are stated verbatim in the corpus; no other test item is."""
        data = suite(name)
        docs = set(data.cpt_corpus)
        for e in data.ood_test + data.id_test:
            assert (e.text in docs) == e.task.endswith(CPT_SUFFIX), e
        cpt_answers = {e.answer for e in data.ood_test if e.task.endswith(CPT_SUFFIX)}
        trained = {e.answer for e in data.sft_train + data.rl_train}
        if name != "genomics":  # held-out labels; in genomics a stop or amino acid letter is shared
            assert not cpt_answers & trained

    def test_every_answer_scores_one_and_wrong_answers_less(self, name):
        data = suite(name)
        for e in data.sft_train[:300] + data.rl_train[:100] + data.id_test + data.ood_test:
            assert data.score(e.answer, e) == 1.0, e
            assert data.score(e.answer + " trailing\nnext line", e) < 1.0
            assert data.score(e.answer + "\nmore text the model kept generating", e) == 1.0
            assert data.score("Q" + e.answer, e) < 1.0
            assert data.score("", e) == 0.0

    def test_short_printable_text(self, name):
        data = suite(name)
        examples = data.sft_train + data.rl_train + data.id_test + data.ood_test
        assert max(len(e.text) for e in examples) < 100
        assert max(len(doc) for doc in data.cpt_corpus) < 100
        assert all(e.prompt.endswith("=") and e.answer and "=" not in e.answer for e in examples)
        chars = set("".join(e.text for e in examples)) | set("".join(data.cpt_corpus))
        assert chars <= PRINTABLE

    def test_fast(self, name):
        start = time.perf_counter()
        build_suite(name, 123)
        assert time.perf_counter() - start < 1.0

    def test_reward_fn_is_trl_style(self, name):
        data = suite(name)
        batch = data.rl_train[:6]
        reward = data.reward_fn()
        completions = [e.answer for e in batch[:3]] + ["", "garbage \u2603", "A" * 5000]
        got = reward(
            completions,
            answer=[e.answer for e in batch],
            task=[e.task for e in batch],
            prompts=[e.prompt for e in batch],
            trainer_state=None,
        )
        assert got == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
        assert reward.__name__ == f"{name}_reward"
        assert data.rewards(completions, batch) == got


# ------------------------------------------------------------------ sizes, registry


def test_sizes_validation_names_the_field():
    with pytest.raises(ValueError, match=r"^`data.sizes.sft` must be a positive integer, got -3$"):
        SuiteSizes(sft=-3)
    for bad in (0, 2.5, True, "10"):
        with pytest.raises(ValueError, match="data.sizes.ood_test"):
            SuiteSizes(ood_test=bad)


def test_unknown_suite_names_value_and_known():
    with pytest.raises(ValueError, match=r"'metagenomics'.*genomics, transcriptomics, proteins"):
        build_suite("metagenomics")


def test_quotas_sum_and_proportions():
    assert quotas(64, {"a": 1, "b": 1, "c": 1, "d": 3}) == {"a": 11, "b": 11, "c": 10, "d": 32}
    assert quotas(7, {"a": 1, "b": 2}) == {"a": 2, "b": 5}


def test_tiny_cpt_corpus_still_consistent():
    data = build_suite("genomics", 0, SuiteSizes(cpt=4, sft=8, rl=4, id_test=4, ood_test=8))
    assert len(data.ood_test) == 8
    docs = set(data.cpt_corpus)
    assert all(e.text in docs for e in data.ood_test if e.task.endswith(CPT_SUFFIX))


# ------------------------------------------------------------------ genomics


def test_genomics_answers_match_biopython():
    data = suite("genomics")
    for e in tagged(data, "revcomp"):
        assert e.answer == str(Seq(body(e.prompt)).reverse_complement())
    for e in tagged(data, "gc"):
        dna = body(e.prompt)
        assert int(e.answer) == round(gc_fraction(dna) * len(dna))
    for e in tagged(data, "translate"):
        table, dna = re.fullmatch(r"tl(\d+):([ACGT]+)=", e.prompt).groups()
        assert e.answer == str(Seq(dna).translate(table=int(table)))
    panel = RestrictionBatch(list(genomics.enzyme_sites()))
    for e in tagged(data, "restriction"):
        hits = {str(enzyme): sites for enzyme, sites in panel.search(Seq(body(e.prompt))).items() if sites}
        assert list(hits) == [e.answer] and len(hits[e.answer]) == 1, e


def test_genomics_hand_made():
    score = suite("genomics").score
    assert score("GCAT", Example("rc:ATGC=", "GCAT", "revcomp")) == 1.0
    assert score("CGTA", Example("rc:ATGC=", "GCAT", "revcomp")) == 0.0
    assert score("3", Example("gc:ACGGT=", "3", "gc")) == 1.0
    assert score("3.0", Example("gc:ACGGT=", "3", "gc")) == 1.0
    assert score("4", Example("gc:ACGGT=", "3", "gc")) == 0.0
    assert genomics.translate("ATGGCCTGA", 1) == "MA*"
    assert genomics.translate("ATGGCCTGA", 2) == "MAW"  # vertebrate mitochondrial: TGA = Trp
    assert genomics.translate("AGA", 2) == "*" and genomics.translate("AGA", 5) == "S"
    assert genomics.enzyme_sites()["EcoRI"] == "GAATTC" and genomics.enzyme_sites()["NdeI"] == "CATATG"
    assert score("EcoRI", Example("re:AAGAATTCA=", "EcoRI", "restriction")) == 1.0
    assert score("BamHI", Example("re:AAGAATTCA=", "EcoRI", "restriction")) == 0.0


def test_genomics_holds_out_codes_and_enzymes_from_training():
    data = suite("genomics")
    train = data.sft_train + data.rl_train
    assert all(e.prompt.startswith("tl1:") for e in train if e.task == "translate")
    assert not {e.answer for e in train} & set(genomics.HELD_OUT_ENZYMES)
    cpt = [e for e in data.ood_test if e.task == "translate_cpt"]
    assert all(genomics.translate(body(e.prompt), 1) != e.answer for e in cpt), "only codons that differ"
    assert {e.answer for e in data.ood_test if e.task == "restriction_cpt"} <= set(genomics.HELD_OUT_ENZYMES)


# ------------------------------------------------------------------ transcriptomics


def test_transcriptomics_answers_match_biopython():
    data = suite("transcriptomics")
    for e in tagged(data, "transcribe"):
        assert e.answer == str(Seq(body(e.prompt)).transcribe())
    for e in tagged(data, "rna_revcomp"):
        assert e.answer == str(Seq(body(e.prompt)).reverse_complement_rna())
    owner = {g: t for t, genes in transcriptomics.MARKERS.items() for g in genes}
    for e in tagged(data, "celltype"):
        genes = body(e.prompt).split()
        assert {owner[g] for g in genes if g not in transcriptomics.HOUSEKEEPING} == {e.answer}
    assert max(len(body(e.prompt).split()) for e in data.ood_test if e.task == "celltype_long") == 7


def test_marker_table_is_unambiguous():
    genes = [g for markers in transcriptomics.MARKERS.values() for g in markers]
    assert len(genes) == len(set(genes))
    assert not set(genes) & set(transcriptomics.HOUSEKEEPING)
    assert set(transcriptomics.HELD_OUT_TYPES) < set(transcriptomics.MARKERS)


def test_transcriptomics_hand_made():
    data = suite("transcriptomics")
    ex = Example("ct:CD3E ACTB IL7R CD2=", "T cell", "celltype")
    assert data.score("T cell", ex) == 1.0
    assert data.score("  T   cell \n", ex) == 1.0
    assert data.score("B cell", ex) == 0.0 and data.score("t cell", ex) == 0.0
    assert data.score("ACGU", Example("tx:ACGT=", "ACGU", "transcribe")) == 1.0
    assert data.score("ACGT", Example("tx:ACGT=", "ACGU", "transcribe")) == 0.0
    held_out_train = {e.answer for e in data.sft_train + data.rl_train} & set(transcriptomics.HELD_OUT_TYPES)
    assert not held_out_train


# ------------------------------------------------------------------ proteins


def test_proteins_answers_match_biopython():
    data = suite("proteins")
    for e in tagged(data, "hydropathy"):
        g = ProteinAnalysis(body(e.prompt)).gravy()
        assert e.answer == ("hydrophobic" if g > 0 else "hydrophilic") and abs(g) >= proteins.GRAVY_MARGIN
    for e in tagged(data, "charge"):
        assert int(e.answer) == round(ProteinAnalysis(body(e.prompt)).charge_at_pH(7.0))
    for e in tagged(data, "motif"):
        found = [m for m in proteins.MOTIFS if re.search(m, body(e.prompt))]
        assert len(found) == 1 and proteins.MOTIFS[found[0]] == e.answer, e
    hydro = Counter(e.answer for e in data.sft_train if e.task == "hydropathy")
    assert min(hydro.values()) > 0.4 * sum(hydro.values())


def test_proteins_hand_made():
    score = suite("proteins").score
    assert proteins.gravy("IIII") == pytest.approx(4.5) and proteins.gravy("KDEL") == pytest.approx(-1.775)
    assert round(proteins.net_charge("DDDD")) == -4 and round(proteins.net_charge("KKKK")) == 4
    assert score("-4", Example("chg:DDDD=", "-4", "charge")) == 1.0
    assert score("4", Example("chg:DDDD=", "-4", "charge")) == 0.0
    assert score("hydrophobic", Example("hyd:IIVL=", "hydrophobic", "hydropathy")) == 1.0
    assert score("hydrophilic", Example("hyd:IIVL=", "hydrophobic", "hydropathy")) == 0.0
    assert proteins.motifs_in("AAAKDEL") == ["KDEL$"] and proteins.motifs_in("KDELAA") == []
    assert proteins.motifs_in("AGAAAAGKS") == ["[AG]....GK[ST]"]


# ------------------------------------------------------------------ the `transfer` OOD split (issue 14)

SIZES = SuiteSizes(cpt=2000, sft=512, rl=64, id_test=64, ood_test=128)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_transfer_split_needs_the_sft_format_and_the_cpt_facts(name):
    from ptplan.stages._tasks._base import ANSWER_END

    data = build_suite(name, 0, SIZES, ood="transfer")
    recall = build_suite(name, 0, SIZES)
    assert data.cpt_corpus == recall.cpt_corpus  # the same CPT corpus as the recall split
    assert not any(ANSWER_END in doc for doc in data.cpt_corpus)  # the format is never shown in CPT
    for split in (data.sft_train, data.rl_train, data.id_test):
        assert all(e.answer.endswith(ANSWER_END) and not e.task.endswith(CPT_SUFFIX) for e in split)
    # OOD: distinct CPT-only facts, each stated in the CPT corpus without the mark, asked with it
    assert data.ood_test and len({e.prompt for e in data.ood_test}) == len(data.ood_test) <= SIZES.ood_test
    corpus = set(data.cpt_corpus)
    for e in data.ood_test:
        assert e.task.endswith(CPT_SUFFIX) and e.answer.endswith(ANSWER_END)
        assert e.prompt + e.answer[: -len(ANSWER_END)] in corpus
    train = {e.prompt for e in data.sft_train + data.rl_train}
    assert not train & {e.prompt for e in data.ood_test}  # no leak of OOD items into SFT or RL
    # a completion in the CPT format scores 0, in the SFT format 1
    e = data.ood_test[0]
    assert data.score(e.answer[: -len(ANSWER_END)], e) == 0.0 and data.score(e.answer, e) == 1.0


def test_transfer_split_is_deterministic_and_named():
    a = build_suite("transcriptomics", 3, SIZES, ood="transfer")
    b = build_suite("transcriptomics", 3, SIZES, ood="transfer")
    assert a.ood_test == b.ood_test and a.sft_train == b.sft_train
    assert "celltype_cpt" in a.ood_shift and a.ood_shift != build_suite("transcriptomics", 3, SIZES).ood_shift
    with pytest.raises(ValueError, match="unknown OOD split 'other'.*recall, transfer"):
        build_suite("transcriptomics", 0, SIZES, ood="other")


def test_chance_levels_uniform_over_the_answer_space_and_best_constant():
    from ptplan.stages._tasks._base import chance_level, majority_level

    items = [Example("a=", "x", "t"), Example("b=", "x", "t"), Example("c=", "y", "t"), Example("d=", "z", "t")]
    assert majority_level(items) == 0.5 and majority_level([]) == 0.0
    data = build_suite("transcriptomics", 0, SIZES, ood="transfer")
    counts = Counter(e.answer for e in data.ood_test)
    assert majority_level(data.ood_test) == max(counts.values()) / len(data.ood_test) < 0.5
    # 14 cell types (10 in SFT, 4 held out): guessing one of them uniformly is right 1 time in 14
    assert chance_level(data) == pytest.approx(1 / len(transcriptomics.MARKERS))
    assert chance_level(build_suite("transcriptomics", 0, SIZES)) < chance_level(data)  # long sequences: ~0


def test_partial_rewards_give_credit_for_nearly_right_answers():
    data = build_suite("transcriptomics", 0, SIZES, ood="transfer")
    e = next(x for x in data.rl_train if x.task == "celltype")
    exact = data.reward_fn()
    partial = data.reward_fn(partial=True)
    completions = [e.answer, e.answer[:-1], "zzzz"]
    assert exact(completions, answer=[e.answer] * 3, task=[e.task] * 3) == [1.0, 0.0, 0.0]
    full, near, wrong = partial(completions, answer=[e.answer] * 3, task=[e.task] * 3)
    assert full == 1.0 and 0.8 < near < 1.0 and wrong < near
