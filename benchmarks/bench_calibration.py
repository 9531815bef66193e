"""Honest numbers (issue 13): interval coverage and recommendation regret on the recorded grid.

For n = 4, 8, 16, 32 seed-0 transcriptomics trials drawn at random (`--draws` per n) from
benchmarks/data/search_grid.parquet, fit `OutcomeModel` (binomial floor from 64 ID / 128 OOD
items) and run `recommend` (balanced objective) on them, then measure:

- expected-score coverage: the 80% `<t>_low/_high` interval at each held-out seed-0 trial (one that
  shares no SFT stage with a drawn trial) against that cell's mean over its recorded seeds;
- re-run coverage: the 80% `<t>_rerun_low/_rerun_high` interval at each cell recorded with another
  training seed against that other seed's outcome (one value per other-seed row);
- regret on 0.5*ID + 0.5*OOD (true value = the cell's mean over its seeds; best = the best cell)
  of `recommend`'s choice and of the best observed allocation among the drawn ones (mean over
  allocations tied for best: the expected regret of picking one). An off-grid choice is scored as
  the nearest recorded cell (counted in `offgrid`).

`--replicates K` adds, to every draw, the other-seed runs of the K best drawn allocations that have
one (the study option "replicate the top K before recommending", replayed from the recorded seeds).

    .venv/bin/python benchmarks/bench_calibration.py [--draws 30] [--replicates 0]
    .venv/bin/python benchmarks/bench_calibration.py --data benchmarks/data/transfer_grid.parquet --ood-items 48 --sizes 4,8,11

(the second: the `transfer` grid of issue 14, 12 cells x 3 seeds, 48 distinct OOD items per score.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

from ptplan._recommend import recommend
from ptplan.stages.record import weighted_score
from ptplan.surrogates import OutcomeModel, feature_columns
from _common import print_machine

DATA = Path(__file__).parent / "data" / "search_grid.parquet"
ITEMS = {"id": 64, "ood": 128}


def _cells(table: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return table.with_columns(pl.concat_str([pl.col(c).cast(pl.String).fill_null("-") for c in cols],
                                            separator="|").alias("cell"))


def _covered(a, lo, hi) -> np.ndarray:
    return (np.asarray(a) >= np.asarray(lo) - 1e-9) & (np.asarray(a) <= np.asarray(hi) + 1e-9)


def one_draw(table, truth, n: int, rng, replicates: int) -> dict:
    base = table.filter(pl.col("seed") == 0)
    pick = rng.choice(base.height, n, replace=False)
    drawn = base[pick]
    train = drawn
    if replicates:
        score = weighted_score(drawn["id"].to_numpy(), drawn["ood"].to_numpy(), 0.5)
        others = table.filter(pl.col("seed") != 0)
        top = [drawn["cell"][int(i)] for i in np.argsort(-score, kind="stable")]
        have = [c for c in dict.fromkeys(top) if c in set(others["cell"])][:replicates]
        train = pl.concat([drawn, others.filter(pl.col("cell").is_in(have))], how="diagonal_relaxed")
    model = OutcomeModel(level=0.8, id_items=ITEMS["id"], ood_items=ITEMS["ood"]).fit(train)  # main() may set ITEMS
    out: dict = {"trials": train.height}
    held = base.filter(~pl.col("key_sft").is_in(drawn["key_sft"].to_list()))
    if held.height:
        p = model.predict_outcome(held)
        t = held.join(truth, on="cell", how="left")
        for k in ("id", "ood"):
            out[f"cov_{k}"] = float(_covered(t[f"true_{k}"], p[f"{k}_low"], p[f"{k}_high"]).mean())
    other = table.filter((pl.col("seed") != 0) & ~pl.col("_row").is_in(train["_row"].to_list()))
    if other.height:
        p = model.predict_outcome(other)
        for k in ("id", "ood"):
            out[f"rerun_{k}"] = float(_covered(other[k], p[f"{k}_rerun_low"], p[f"{k}_rerun_high"]).mean())
    best_true = float(truth["true_score"].max())
    value = dict(zip(truth["cell"].to_list(), truth["true_score"].to_list()))
    obs = train.group_by("cell").agg(pl.col("id").mean(), pl.col("ood").mean())
    obs_score = weighted_score(obs["id"].to_numpy(), obs["ood"].to_numpy(), 0.5)
    tied = [c for c, v in zip(obs["cell"].to_list(), obs_score) if v >= obs_score.max() - 1e-12]
    out["regret_best_observed"] = best_true - float(np.mean([value[c] for c in tied]))  # ties: a random pick
    rec = recommend(train, None, "balanced", model=model)
    out["fallback"] = float(rec.source == "best observed")
    out["offgrid"] = float(rec.off_grid)
    if not rec.off_grid and rec.trial is not None:
        cell = train.filter(pl.col("number") == rec.trial)["cell"][0]
    else:  # nearest recorded cell in the model's standardized features
        q = {**{f"share_{s}": v for s, v in rec.shares.items()}, **{f"rank_{s}": v for s, v in rec.ranks.items()},
             **{f"param.{k}": v for k, v in rec.options.items()}}
        X, _ = model.encoder_.transform(truth)
        x, _ = model.encoder_.transform(pl.DataFrame([{c: q.get(c, truth[c][0]) for c in model.encoder_.columns}],
                                                     schema={c: truth.schema[c] for c in model.encoder_.columns}))
        d = (((np.nan_to_num(X) - np.nan_to_num(x)) / model.scale_) ** 2).sum(1)
        cell = truth["cell"][int(np.argmin(d))]
    out["regret_recommend"] = best_true - value[cell]
    out["regret_diff"] = out["regret_recommend"] - out["regret_best_observed"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--sizes", default="4,8,16,32")
    ap.add_argument("--replicates", type=int, default=0, help="add other-seed runs of the top K drawn allocations")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--id-items", type=int, default=ITEMS["id"], help="ID items per score (binomial floor)")
    ap.add_argument("--ood-items", type=int, default=ITEMS["ood"], help="OOD items per score (binomial floor)")
    args = ap.parse_args()
    ITEMS.update(id=args.id_items, ood=args.ood_items)
    print_machine()
    table = pl.read_parquet(args.data).filter((pl.col("suite") == "transcriptomics") & (pl.col("state") == "COMPLETE"))
    cols = [c for c in feature_columns(table) if c != "budget_total"]
    table = _cells(table, cols).with_row_index("_row")
    truth = (table.group_by("cell").agg(pl.col("id").mean().alias("true_id"), pl.col("ood").mean().alias("true_ood"),
                                        pl.len().alias("seeds"), *[pl.col(c).first() for c in feature_columns(table)])
             .with_columns((0.5 * pl.col("true_id") + 0.5 * pl.col("true_ood")).alias("true_score")))
    seeds = table.group_by("seed").len().sort("seed")
    print(f"data: {args.data}: {table.height} transcriptomics trials "
          f"({', '.join(f'seed {s}: {k}' for s, k in seeds.iter_rows())}), {truth.height} cells, "
          f"{int((truth['seeds'] > 1).sum())} with 2+ seeds; best cell true score {truth['true_score'].max():.3f}")
    print(f"draws per n: {args.draws}; replicates of the top {args.replicates} drawn allocations" if args.replicates
          else f"draws per n: {args.draws}; no replicates (seed-0 trials only)")
    keys = ("cov_id", "cov_ood", "rerun_id", "rerun_ood", "regret_recommend", "regret_best_observed",
            "regret_diff", "fallback", "offgrid")
    head = ("n", "trials", "cov ID", "cov OOD", "re-run ID", "re-run OOD", "regret rec", "regret best-obs",
            "rec - best-obs (paired)", "fallback", "off-grid")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rng = np.random.default_rng(args.seed)
    for n in (int(v) for v in args.sizes.split(",")):
        rows = [one_draw(table, truth, n, rng, args.replicates) for _ in range(args.draws)]

        def cell(k, digits=2):
            v = np.array([r[k] for r in rows if k in r], float)
            if not len(v):
                return "-"
            if k in ("fallback", "offgrid"):
                return f"{v.mean():.0%}"
            sd = v.std(ddof=1)
            return f"{v.mean():.{digits}f} ± {sd / np.sqrt(len(v)):.{digits}f} (sd {sd:.{digits}f})"

        trials = np.mean([r["trials"] for r in rows])
        print(f"| {n} | {trials:.1f} | " + " | ".join(cell(k, 3 if k.startswith("regret") else 2)
                                                  for k in keys) + " |", flush=True)
    print("cells: mean ± standard error over draws (sd over draws); coverage target 0.70-0.90 (80% intervals)")


if __name__ == "__main__":
    sys.exit(main())
