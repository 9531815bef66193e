"""Record the dense grids of real trials behind the benchmarks and `ptplan surrogate eval` (one command each).

    OMP_NUM_THREADS=1 python benchmarks/record_search_grid.py [--grid search|transfer] [--runs DIR] [--jobs 2]

`--grid search` (default) runs benchmarks/plans/search-grid.yaml (the `recall` OOD split) and writes
benchmarks/data/search_grid.parquet and search_curves.parquet; `--grid transfer` runs
benchmarks/plans/transfer-grid.yaml (the `transfer` OOD split, issue 14) and writes transfer_grid.parquet
and transfer_curves.parquet. Each study below runs with ptplan itself (`ptplan run`, grid sampler,
journal storage), resuming whatever is already complete, then its trial table and evaluation curves are
exported.
Each trial row also gets the content keys of its stage checkpoints (key_cpt, key_sft, key_rl), so a
replay can charge a checkpoint shared by several cells only once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
PTPLAN = [sys.executable, "-m", "ptplan._cli"]

# (suite, training seed, trials, grid-order seed): the full 40-cell grid on two suites, and cells of it
# again with training seeds 1 and 2 (the data seed stays 0; the grid order of seed 1 is reused for
# seed 2 so that the replicates land on the same cells).
# grid -> (plan, file prefix, studies). The transfer grid: every cell of transcriptomics under training
# seeds 0, 1, 2 (data seed 0: one data set, one CPT per training seed), proteins under seed 0.
GRIDS = {
    "search": ("search-grid.yaml", "search", (("transcriptomics", 0, 40, None), ("proteins", 0, 40, None),
                                              ("transcriptomics", 1, 20, None), ("transcriptomics", 2, 24, 1))),
    "transfer": ("transfer-grid.yaml", "transfer", (("transcriptomics", 0, 12, None), ("transcriptomics", 1, 12, None),
                                                    ("transcriptomics", 2, 12, None), ("proteins", 0, 12, None))),
}
CURVE_COLUMNS = ("stage", "step", "compute", "id", "ood", "loss", "reward", "id_n", "ood_n", "id_se", "ood_se")


def overrides(run_dir: Path, suite: str, seed: int, grid_seed: int | None = None) -> list[str]:
    sets = ["--set", f"study.dir={run_dir}", "--set", f"data.suite={suite}", "--set", f"seed={seed}"]
    return sets + (["--set", f"study.seed={grid_seed}"] if grid_seed is not None else [])


def record_study(plan: Path, runs: Path, suite: str, seed: int, trials: int, jobs: int,
                 grid_seed: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    run_dir = runs / f"{suite}-s{seed}"
    sets = overrides(run_dir, suite, seed, grid_seed)
    subprocess.run([*PTPLAN, "run", str(plan), "--jobs", str(jobs), "--trials", str(trials), *sets], check=True)
    table_path = run_dir / "trials.parquet"
    subprocess.run([*PTPLAN, "export", str(plan), "--out", str(table_path), *sets], check=True)
    rows = pl.read_parquet(table_path).filter(pl.col("state") == "COMPLETE")
    keys, curves = [], []
    for number, artifacts in rows.select("number", "artifacts").iter_rows():
        result = json.loads((Path(artifacts) / "result.json").read_text())
        keys.append({"number": number, **{f"key_{s}": result["stages"].get(s, {}).get("key")
                                          for s in ("cpt", "sft", "rl")}})
        curve = pl.read_parquet(Path(artifacts) / result.get("curves", "curves.parquet"))
        curves.append(curve.select([c for c in CURVE_COLUMNS if c in curve.columns])
                      .with_columns(pl.lit(number).alias("number")))
    rows = rows.join(pl.DataFrame(keys, schema={"number": pl.Int64, "key_cpt": pl.String, "key_sft": pl.String,
                                                "key_rl": pl.String}), on="number", how="left")
    tag = [pl.lit(suite).alias("suite"), pl.lit(seed).alias("seed")]
    drop = ["curves", "artifacts", "worker", "started", "completed", "retry_of", "failure_message"]
    rows = rows.drop([c for c in drop if c in rows.columns]).with_columns(tag)
    return rows, pl.concat(curves, how="diagonal_relaxed").with_columns(tag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="search", help="which recorded grid")
    ap.add_argument("--runs", type=Path, help="run folders, kept for resume (default runs/<grid>-grid)")
    ap.add_argument("--jobs", type=int, default=2, help="local worker processes per study")
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--only", nargs="*", metavar="SUITE:SEED",
                    help="record just these studies and replace their rows in the existing files")
    args = ap.parse_args()
    only = {tuple(x.rsplit(":", 1)) for x in args.only or []}
    plan_file, prefix, studies = GRIDS[args.grid]
    runs = args.runs or ROOT / "runs" / f"{args.grid}-grid"
    tables, curves = [], []
    for suite, seed, trials, grid_seed in studies:
        if only and (suite, str(seed)) not in only:
            continue
        t, c = record_study(ROOT / "benchmarks" / "plans" / plan_file, runs, suite, seed, trials, args.jobs, grid_seed)
        tables.append(t)
        curves.append(c)
        print(f"{suite} seed {seed}: {t.height} complete trials, {c.height} curve points")
    args.out.mkdir(parents=True, exist_ok=True)
    table, curve = pl.concat(tables, how="diagonal_relaxed"), pl.concat(curves, how="diagonal_relaxed")
    if only and (args.out / f"{prefix}_grid.parquet").exists():  # keep the other studies' recorded rows
        def keep(old: pl.DataFrame) -> pl.DataFrame:
            tag = pl.concat_str([pl.col("suite"), pl.col("seed").cast(pl.String)], separator=":")
            return old.filter(~tag.is_in([f"{a}:{b}" for a, b in only]))

        table = pl.concat([keep(pl.read_parquet(args.out / f"{prefix}_grid.parquet")), table], how="diagonal_relaxed")
        curve = pl.concat([keep(pl.read_parquet(args.out / f"{prefix}_curves.parquet")), curve], how="diagonal_relaxed")
    table.write_parquet(args.out / f"{prefix}_grid.parquet", compression="zstd")
    curve.write_parquet(args.out / f"{prefix}_curves.parquet", compression="zstd")
    print(f"wrote {args.out / f'{prefix}_grid.parquet'} ({table.height} trials) and {prefix}_curves.parquet")


if __name__ == "__main__":
    main()
