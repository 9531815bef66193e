"""Honest replay of search strategies against a recorded grid of real trials (issue 6).

A `GridOracle` holds one suite's recorded table and answers each proposal with the nearest
recorded cell, charging the compute that cell recorded. Strategies never hold the oracle:
`replay` asks a strategy for params, has the oracle run them, and hands the strategy only the
`Observation` of what was paid for (the streamed curve points, and the final scores of a trial
that was not pruned). With `reuse=True`, a stage whose content key (`key_cpt`, `key_sft`,
`key_rl`) was already paid for in this replay is not charged again, as ptplan's content-addressed
checkpoints allow. Torch-free; Optuna is imported by the Optuna-backed strategies only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ptplan.stages.record import PARAM_PREFIX, REPORT_STEPS, STAGES, hypervolume, weighted_score

STAGE_ORDER = {"start": 0, "cpt": 1, "sft": 2, "rl": 3}
TOLERANCE = 0.01  # "within 1 point"
_EPS = 1e-9


# -- what a strategy may see ----------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One recorded evaluation point of a trial, streamed as the trial is replayed."""

    stage: str
    step: int
    compute: float  # cumulative within the trial, in the budget unit
    id: float
    ood: float
    loss: float | None = None


@dataclass(frozen=True)
class Observation:
    """What one paid evaluation reveals; nothing else about the table is handed out."""

    asked: dict  # the proposal
    params: dict  # the recorded cell that answered it (the nearest)
    state: str  # COMPLETE | PRUNED | FAIL
    id: float | None  # final scores, None unless COMPLETE
    ood: float | None
    compute: float  # the trial's own compute: as recorded, or up to the point where it was pruned
    charged: float  # what the ledger was charged (less than `compute` where stages were reused)
    reused: tuple[str, ...]  # stages not charged again
    points: tuple[Point, ...]  # the streamed curve points
    distance: float  # normalized distance from the proposal to the cell (0: exact)

    @property
    def weighted(self) -> float | None:
        return None if self.id is None else weighted_score(self.id, self.ood)


# -- the ledger of one replay -------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """The ledger after one trial: cumulative compute charged and the best found so far."""

    trial: int
    compute: float
    charged: float
    state: str
    best_ood: float  # -inf until a trial completes
    best_weighted: float
    hypervolume: float


@dataclass
class ReplayLedger:
    """Cumulative compute charged and what it bought, trial by trial."""

    entries: list[Entry] = field(default_factory=list)
    finals: list[tuple[float, float]] = field(default_factory=list)  # (ID, OOD) of COMPLETE trials

    @property
    def compute(self) -> float:
        return self.entries[-1].compute if self.entries else 0.0

    def add(self, obs: Observation) -> Entry:
        last = self.entries[-1] if self.entries else None
        best_ood = last.best_ood if last else -math.inf
        best_w = last.best_weighted if last else -math.inf
        hv = last.hypervolume if last else 0.0
        if obs.state == "COMPLETE":
            self.finals.append((obs.id, obs.ood))
            best_ood, best_w = max(best_ood, obs.ood), max(best_w, obs.weighted)
            hv = hypervolume(self.finals)
        entry = Entry(len(self.entries), self.compute + obs.charged, obs.charged, obs.state, best_ood, best_w, hv)
        self.entries.append(entry)
        return entry

    def compute_to(self, metric: str, target: float) -> float | None:
        """Compute charged when `best_<metric>` first reached `target` (None: never)."""
        for e in self.entries:
            if getattr(e, f"best_{metric}") >= target - _EPS:
                return e.compute
        return None

    def hypervolume_at(self, compute: float) -> float:
        """Hypervolume of the front bought with at most `compute`."""
        hv = 0.0
        for e in self.entries:
            if e.compute > compute + _EPS:
                break
            hv = e.hypervolume
        return hv


# -- the recorded table ---------------------------------------------------------------------------------
def _records(table: Any) -> list[dict]:
    """Rows of a polars/pandas frame or an iterable of mappings, as dicts."""
    if hasattr(table, "to_dicts"):
        return table.to_dicts()
    if hasattr(table, "to_dict") and not isinstance(table, Mapping):
        return table.to_dict("records")
    return [dict(r) for r in table]


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _same(a: Any, b: Any) -> bool:
    fa, fb = _num(a), _num(b)
    if fa is not None and fb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@dataclass(frozen=True)
class _Dim:
    """How one searched parameter measures distance: categorical (0/1), linear or log in [0, 1]."""

    name: str
    kind: str  # "cat" | "lin" | "log"
    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def of(cls, name: str, values: list) -> "_Dim":
        nums = [_num(v) for v in values]
        if not values or name.endswith(".rank") or any(n is None or isinstance(v, (bool, str)) for n, v in zip(nums, values)):
            return cls(name, "cat")  # ranks: 0 = full fine-tuning is not on the numeric scale
        lo, hi = min(nums), max(nums)
        if lo > 0 and (name.endswith(".lr") or name.endswith(".beta") or hi / lo >= 10):
            return cls(name, "log", math.log(lo), math.log(hi))
        return cls(name, "lin", lo, hi)

    def distance(self, a: Any, b: Any) -> float:
        if _same(a, b):
            return 0.0
        fa, fb = _num(a), _num(b)
        if self.kind == "cat" or fa is None or fb is None:
            return 1.0
        if self.kind == "log":
            if fa <= 0 or fb <= 0:
                return 1.0
            fa, fb = math.log(fa), math.log(fb)
        width = self.hi - self.lo
        return min(abs(fa - fb) / width, 1.0) if width > 0 else 1.0


@dataclass(frozen=True)
class _Cell:
    params: dict
    state: str
    id: float | None
    ood: float | None
    spent: float
    stages: tuple[tuple[str, float, str | None], ...]  # (stage, spent, content key) in stage order
    curve: tuple[Point, ...]


def table_params(rows: Iterable[Mapping]) -> list[str]:
    """The searched parameters of a recorded table: its `param.*` columns."""
    names: list[str] = []
    for r in rows:
        for k in r:
            if k.startswith(PARAM_PREFIX) and k[len(PARAM_PREFIX):] not in names:
                names.append(k[len(PARAM_PREFIX):])
    return names


def _build_cells(rows: list[dict], curves: list[dict], names: list[str]) -> list[_Cell]:
    by_number: dict[Any, list[dict]] = {}
    for c in curves:
        by_number.setdefault(c["number"], []).append(c)
    cells = []
    for r in sorted(rows, key=lambda r: (r.get("state", "COMPLETE") != "COMPLETE", r.get("number", 0))):
        pts = sorted(by_number.get(r.get("number"), []), key=lambda c: (STAGE_ORDER.get(c["stage"], 9), c["step"]))
        curve = tuple(Point(c["stage"], int(c["step"]), float(c["compute"]), float(c["id"]), float(c["ood"]),
                            _num(c.get("loss"))) for c in pts)
        state = r.get("state", "COMPLETE") or "COMPLETE"
        stages = tuple((s, _num(r.get(f"spent_{s}")) or 0.0, r.get(f"key_{s}")) for s in STAGES)
        spent = _num(r.get("spent"))
        spent = sum(s[1] for s in stages) if spent is None else spent
        ok = state == "COMPLETE" and _num(r.get("id")) is not None and _num(r.get("ood")) is not None
        cells.append(_Cell({n: r.get(PARAM_PREFIX + n) for n in names}, state if ok or state != "COMPLETE" else "FAIL",
                           _num(r.get("id")) if ok else None, _num(r.get("ood")) if ok else None, spent, stages,
                           curve))
    return cells


def _one_cell_each(cells: list[_Cell]) -> list[_Cell]:
    """One cell per distinct parameter point: the first COMPLETE row, else the first row."""
    out: list[_Cell] = []
    for c in cells:  # COMPLETE rows come first
        if not any(all(_same(c.params[k], o.params[k]) for k in c.params) for o in out):
            out.append(c)
    return out


@dataclass(frozen=True)
class GridTruth:
    """What the full grid holds: FOR SCORING A REPLAY ONLY, never for a strategy."""

    n_cells: int
    compute: float  # sum of every cell's recorded spent (no reuse)
    best_ood: float
    best_weighted: float
    hypervolume: float
    ranked_ood: tuple[float, ...]  # COMPLETE cells' OOD, best first


def grid_truth(grid_rows: Any, curves: Any = ()) -> GridTruth:
    rows = _records(grid_rows)
    cells = _one_cell_each(_build_cells(rows, [], table_params(rows)))
    done = [c for c in cells if c.state == "COMPLETE"]
    if not done:
        raise ValueError("the recorded grid has no COMPLETE trial")
    return GridTruth(len(cells), sum(c.spent for c in cells), max(c.ood for c in done),
                     max(weighted_score(c.id, c.ood) for c in done), hypervolume((c.id, c.ood) for c in done),
                     tuple(sorted((c.ood for c in done), reverse=True)))


# -- the oracle -------------------------------------------------------------------------------------------
class GridOracle:
    """Answers proposals from one suite's recorded grid, charging what each answer cost.

    Args:
        grid_rows: the trial table of one suite and seed (polars frame or mappings): `param.*`,
            `state`, `id`, `ood`, `spent`, `spent_<stage>`, `key_<stage>`, `number`.
        curves: its evaluation curves (`number`, `stage`, `step`, `compute`, `id`, `ood`, `loss`).
        reuse: do not charge a stage whose content key this replay already paid for.

    The table stays private; what leaves the oracle is the `Observation` of each paid evaluation
    and the `ledger` of what was paid. `replay` never hands the oracle to a strategy.
    """

    def __init__(self, grid_rows: Any, curves: Any = (), *, reuse: bool = False):
        rows = _records(grid_rows)
        for col in ("suite", "seed"):
            seen = {r.get(col) for r in rows}
            if len(seen) > 1:
                raise ValueError(f"a GridOracle replays one suite and seed; the table has {col} {sorted(seen)}")
        names = table_params(rows)
        if not names:
            raise ValueError("the table has no `param.*` columns (the searched parameters)")
        self._cells = _one_cell_each(_build_cells(rows, _records(curves), names))
        self._dims = [_Dim.of(n, [c.params[n] for c in self._cells if c.params[n] is not None]) for n in names]
        self._paid: set[tuple[str, str]] = set()  # (stage, content key) charged in this replay
        self._completed: set[int] = set()
        self.reuse = reuse
        self.ledger = ReplayLedger()

    @property
    def n_cells(self) -> int:
        return len(self._cells)

    @property
    def exhausted(self) -> bool:
        """Whether every recorded COMPLETE cell has been run to completion at least once."""
        return len(self._completed) >= sum(c.state == "COMPLETE" for c in self._cells)

    def _nearest(self, params: Mapping) -> tuple[int, float]:
        """The closest cell: fewest categorical mismatches (ranks, categories) first, then the sum
        over numeric params of a [0, 1] distance (log scale for learning rates); ties go to the
        first cell in table order. Returns the cell and its distance (mismatches + numeric sum)."""
        best, best_d = 0, (math.inf, math.inf)
        for k, cell in enumerate(self._cells):
            d = [dim.distance(params.get(dim.name), cell.params[dim.name]) for dim in self._dims]
            cat = sum(x for x, dim in zip(d, self._dims) if dim.kind == "cat")
            num = sum(x for x, dim in zip(d, self._dims) if dim.kind != "cat")
            if (cat, num) < (best_d[0], best_d[1] - 1e-12):
                best, best_d = k, (cat, num)
        return best, best_d[0] + best_d[1]

    def evaluate(self, params: Mapping) -> Observation:
        """Run the nearest cell to the end (no pruning)."""
        return self.run(params)

    def run(self, params: Mapping, on_point: Callable[[Point], Any] | None = None) -> Observation:
        """Replay the nearest cell: stream its curve points to `on_point` in order (a truthy return
        prunes the trial at that point), charge what was run, and return what it revealed."""
        k, dist = self._nearest(params)
        cell = self._cells[k]
        streamed: list[Point] = []
        pruned = False
        if cell.state == "COMPLETE":
            for p in cell.curve:
                streamed.append(p)
                if on_point is not None and on_point(p):
                    pruned = True
                    break
        upto = min(streamed[-1].compute, cell.spent) if pruned else cell.spent
        charged, reused, lo = 0.0, [], 0.0
        for stage, spent, key in cell.stages:
            hi = lo + spent
            part = max(min(upto, hi) - lo, 0.0)
            if self.reuse and key is not None and (stage, key) in self._paid:
                if part > 0:
                    reused.append(stage)
            elif part > 0:
                charged += part
                if self.reuse and key is not None and cell.state == "COMPLETE" and upto >= hi * (1 - _EPS):
                    self._paid.add((stage, key))  # a finished stage's checkpoint exists from now on
            lo = hi
        if not pruned:
            # exactly as recorded without reuse; with it, plus anything recorded beyond the stage spends
            charged = cell.spent if not self.reuse else charged + max(cell.spent - lo, 0.0)
        state = "PRUNED" if pruned else cell.state
        if state == "COMPLETE":
            self._completed.add(k)
        done = state == "COMPLETE"
        obs = Observation(dict(params), dict(cell.params), state, cell.id if done else None,
                          cell.ood if done else None, upto, charged, tuple(reused), tuple(streamed), dist)
        self.ledger.add(obs)
        return obs


# -- the replay loop ----------------------------------------------------------------------------------------
def replay(strategy, oracle: GridOracle, *, cap: float, stop: Callable[[ReplayLedger], bool] | None = None,
           max_trials: int = 10_000) -> ReplayLedger:
    """Run `strategy` against `oracle` until it stops proposing, the ledger reaches `cap`, every
    cell has completed, or `stop(ledger)`; return the oracle's ledger.

    The strategy sees `ask()` -> params, `on_point(point)` -> prune?, `tell(observation)`; never
    the oracle or the ledger.
    """
    ledger = oracle.ledger
    for _ in range(max_trials):
        if ledger.compute >= cap or oracle.exhausted or (stop is not None and stop(ledger)):
            break
        params = strategy.ask()
        if params is None:
            break
        strategy.tell(oracle.run(params, strategy.on_point))
    return ledger


@dataclass(frozen=True)
class RepResult:
    """One replay scored against the grid: compute to each target (None: not reached) and
    normalized hypervolume at fractions of the grid's compute."""

    to_ood: float | None
    to_weighted: float | None
    hv: tuple[float, ...]  # at `fractions`
    trials: int
    compute: float
    best_ood: float  # the best found by the end of the replay (-inf: nothing completed)
    best_weighted: float


def score(ledger: ReplayLedger, truth: GridTruth, fractions: Sequence[float], tol: float = TOLERANCE) -> RepResult:
    hv = tuple(ledger.hypervolume_at(f * truth.compute) / truth.hypervolume for f in fractions)
    return RepResult(ledger.compute_to("ood", truth.best_ood - tol),
                     ledger.compute_to("weighted", truth.best_weighted - tol), hv, len(ledger.entries), ledger.compute,
                     ledger.entries[-1].best_ood if ledger.entries else -math.inf,
                     ledger.entries[-1].best_weighted if ledger.entries else -math.inf)


def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and interquartile range (25th, 75th percentile)."""
    vals = sorted(values)
    if len(vals) == 1:
        return vals[0], vals[0], vals[0]
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return statistics.median(vals), q[0], q[2]


# -- strategies: ask() -> params | None, on_point(point) -> prune?, tell(observation) ------------------------
class Strategy:
    """A search strategy under replay. It proposes params and learns only from Observations."""

    name = "strategy"
    reuse = False  # whether its trials reuse checkpoints of stages already paid for

    def __init__(self, plan, seed: int):
        self.plan, self.seed = plan, seed

    def ask(self) -> dict | None:
        raise NotImplementedError

    def on_point(self, point: Point) -> bool:
        return False

    def tell(self, obs: Observation) -> None:
        pass


class GridOrder(Strategy):
    """The seed study: every cell in the plan's declared order (first searched param outermost)."""

    name = "grid"

    def __init__(self, plan, seed: int):
        super().__init__(plan, seed)
        self._cells = iter(plan.space.cells())

    def ask(self) -> dict | None:
        return next(self._cells, None)


def heuristic_params(plan) -> dict:
    """The seed paper's one-shot guess: the briefest SFT (largest RL share), the most SFT capacity
    and the least RL capacity (rank 0 = full fine-tuning counts as the highest); every other
    searched field at the plan's fixed value (or its middle choice)."""
    from ptplan.studies import CPT_SHARE, SFT_OF_REST

    def capacity(rank):
        return math.inf if rank == 0 else rank

    out = {}
    for name, p in plan.space.params.items():
        vals = p.values() if (p.choices is not None or p.step is not None or p.kind == "int") else [p.low, p.high]
        if name == SFT_OF_REST:
            out[name] = min(vals)
        elif name.endswith("sft.rank"):
            out[name] = max(vals, key=capacity)
        elif name.endswith("rl.rank"):
            out[name] = min(vals, key=capacity)
        else:
            node: Any = plan.space.base
            for part in name.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if name == CPT_SHARE:
                node = plan.space.shares_for({})["cpt"]
            out[name] = node if any(_same(node, v) for v in vals) else vals[len(vals) // 2]
    return out


class Heuristic(Strategy):
    """The seed paper's rule of thumb as a single trial (`heuristic_params`)."""

    name = "heuristic"

    def __init__(self, plan, seed: int):
        super().__init__(plan, seed)
        self._asked = False

    def ask(self) -> dict | None:
        if self._asked:
            return None
        self._asked = True
        return heuristic_params(self.plan)


def _tenth(compute: float, total: float) -> int:
    return min(REPORT_STEPS, int(compute / total * REPORT_STEPS + 1e-9))


class OptunaStrategy(Strategy):
    """An Optuna sampler driven by ask/tell on in-memory storage, proposing through
    `plan.space.suggest` exactly as `ptplan run` does.

    Args:
        sampler: the Optuna sampler.
        objective: "multi" (maximize ID, OOD) or "weighted" (0.5 ID + 0.5 OOD).
        pruner: an Optuna pruner (weighted objective), fed the weighted score at each tenth of
            the budget as `ptplan run` reports it.
        dominated: a `studies._prune.DominatedPruner` (multi objective), asked at each new tenth
            against this strategy's own COMPLETE trials, as `ptplan run` asks it.
        reuse: checkpoint reuse (charged by the oracle).
    """

    def __init__(self, plan, seed: int, sampler, *, objective: str = "multi", pruner=None, dominated=None,
                 reuse: bool = False, name: str = "optuna"):
        import optuna

        super().__init__(plan, seed)
        self.name, self.objective, self.dominated, self.reuse = name, objective, dominated, reuse
        directions = ["maximize", "maximize"] if objective == "multi" else ["maximize"]
        self.study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=directions,
                                         sampler=sampler, pruner=pruner or optuna.pruners.NopPruner())
        self.total = float(plan.trial.budget.total)
        self._trial = None
        self._checkpoints: dict[str, tuple[float, float]] = {}
        self._history: list[dict] = []  # COMPLETE trials: {"checkpoints", "final"} (DominatedPruner's input)

    def ask(self) -> dict | None:
        self._trial = self.study.ask()
        self._checkpoints = {}
        return self.plan.space.suggest(self._trial)

    def on_point(self, point: Point) -> bool:
        if point.stage == "start":
            return False
        reached = _tenth(point.compute, self.total)
        new = [s for s in range(1, reached + 1) if str(s) not in self._checkpoints]
        for s in new:
            self._checkpoints[str(s)] = (point.id, point.ood)
        if self.objective == "weighted":
            value = weighted_score(point.id, point.ood)
            for s in new:
                self._trial.report(value, s)
            return bool(self._checkpoints) and self._trial.should_prune()
        if self.dominated is not None and new and reached < REPORT_STEPS:
            from ptplan.studies import pareto_points

            front = pareto_points(h["final"] for h in self._history)
            prune, _ = self.dominated.should_prune(reached / REPORT_STEPS, (point.id, point.ood), self._history, front)
            return prune
        return False

    def tell(self, obs: Observation) -> None:
        import optuna

        if obs.state == "COMPLETE":
            values = [obs.id, obs.ood] if self.objective == "multi" else [obs.weighted]
            self.study.tell(self._trial, values)
            self._history.append({"checkpoints": dict(self._checkpoints), "final": (obs.id, obs.ood)})
        elif obs.state == "PRUNED":
            self.study.tell(self._trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(self._trial, state=optuna.trial.TrialState.FAIL)


def _sampler(name: str):
    def make(plan, seed):
        from ptplan.studies import SAMPLERS

        return SAMPLERS[name](plan, seed)
    return make


def _random(plan, seed):
    return OptunaStrategy(plan, seed, _sampler("random")(plan, seed), name="random")


def _tpe(plan, seed):
    return OptunaStrategy(plan, seed, _sampler("tpe")(plan, seed), name="tpe")


def _gp(plan, seed):
    """Multi-objective (ID, OOD) like `tpe`: Optuna's GPSampler takes several objectives, and this is
    what `sampler: gp` runs on ptplan's default objective, so only the sampler differs from `ptplan`."""
    return OptunaStrategy(plan, seed, _sampler("gp")(plan, seed), name="gp")


def _tpe_median(plan, seed):
    from ptplan.studies import PRUNERS

    return OptunaStrategy(plan, seed, _sampler("tpe")(plan, seed), objective="weighted", pruner=PRUNERS["median"](),
                          name="tpe+median")


def _ptplan(plan, seed, *, reuse: bool = True, prune: bool = True, name: str = "ptplan"):
    from ptplan.studies import DominatedPruner, SurrogateSampler

    return OptunaStrategy(plan, seed, SurrogateSampler(plan, seed=seed), dominated=DominatedPruner() if prune else None,
                          reuse=reuse, name=name)


def _ptplan_noreuse(plan, seed):
    return _ptplan(plan, seed, reuse=False, name="ptplan-noreuse")


def _surrogate_only(plan, seed):
    return _ptplan(plan, seed, reuse=False, prune=False, name="surrogate")


# name -> factory(plan, seed); the benchmark's rows, in this order.
STRATEGIES: dict[str, Callable] = {
    "ptplan": _ptplan, "ptplan-noreuse": _ptplan_noreuse, "surrogate": _surrogate_only, "random": _random,
    "grid": GridOrder, "tpe": _tpe, "gp": _gp, "tpe+median": _tpe_median, "heuristic": Heuristic,
}


# -- SYNTHETIC tables, FOR TESTS AND DEVELOPMENT ONLY ---------------------------------------------------------
def synthetic_grid(plan, suites: Sequence[str] = ("transcriptomics", "proteins"), seeds: Sequence[int] = (0,),
                   *, replicate: int | None = None, noise: float = 0.01, rng_seed: int = 0) -> tuple[list, list]:
    """SYNTHETIC stand-in for benchmarks/data/search_grid.parquet and search_curves.parquet, same
    schema: one row per cell of `plan`'s search space per suite and seed (`replicate` cells only for
    seeds after the first), made-up scores that favour brief SFT and asymmetric ranks, and curves
    with the plan's evaluation points. Nothing is trained: never report numbers from it."""
    import random

    from ptplan.studies import SHARE_PARAMS

    rng = random.Random(rng_seed)
    total, unit = float(plan.trial.budget.total), plan.trial.budget.unit
    points = {s: max(1, int(getattr(plan.trial.eval, "points", {}).get(s, 2))) for s in STAGES}
    cells = plan.space.cells()
    rows, curves = [], []
    for si, suite in enumerate(suites):
        for seed in seeds:
            subset = cells if seed == seeds[0] or replicate is None else cells[:replicate]
            for number, values in enumerate(subset):
                shares = plan.space.shares_for(values)
                alloc = plan.space.config_for(values).allocation
                lr = float(alloc.sft.lr)
                fast = math.log10(lr / 1e-4) if lr > 0 else 0.0
                rl_part = shares["rl"] / max(shares["rl"] + shares["sft"], 1e-9)
                ood = (0.30 + 0.2 * rl_part + 0.04 * (alloc.sft.rank == 0) + 0.03 * (alloc.rl.rank == 4) + 0.05 * fast - 0.05 * si + rng.gauss(0.0, noise))
                id_ = (0.40 + 0.3 * shares["sft"] + 0.05 * (alloc.sft.rank == 0) + 0.05 * fast - 0.05 * si
                       + rng.gauss(0.0, noise))
                ood, id_ = min(max(ood, 0.0), 1.0), min(max(id_, 0.0), 1.0)
                spent = {s: total * shares[s] * (1.0 - 0.001 * rng.random()) for s in STAGES}
                h = [f"{suite}/{seed}/cpt"]
                h.append(f"{h[0]}/{shares['sft']}/{alloc.sft.rank}/{lr}")
                h.append(f"{h[1]}/{alloc.rl.rank}")
                row = {"suite": suite, "seed": seed, "number": number, "state": "COMPLETE", "id": id_, "ood": ood,
                       **{f"share_{s}": shares[s] for s in STAGES},
                       **{f"rank_{s}": getattr(alloc, s).rank for s in STAGES},
                       **{f"param.{k}": v for k, v in values.items() if k not in SHARE_PARAMS},
                       **{f"param.{k}": v for k, v in values.items() if k in SHARE_PARAMS},
                       "budget_total": total, "budget_unit": unit, "spent": sum(spent.values()),
                       **{f"spent_{s}": spent[s] for s in STAGES},
                       **{f"key_{s}": h[i] for i, s in enumerate(STAGES)}}
                rows.append(row)
                # curve: start at 0; CPT to 0.05; SFT raises ID, OOD peaks early; RL moves to the finals
                c0 = {"suite": suite, "seed": seed, "number": number}
                curves.append({**c0, "stage": "start", "step": 0, "compute": 0.0, "id": 0.0, "ood": 0.0, "loss": 3.0})
                at, sid, sood = 0.0, 0.05, 0.05
                for s in STAGES:
                    n = points[s]
                    for j in range(1, n + 1):
                        u = j / n
                        if s == "cpt":
                            i_, o_ = 0.05 * u, 0.05 * u
                        elif s == "sft":
                            i_ = 0.05 + (id_ * 0.9 - 0.05) * u
                            o_ = 0.05 + (ood * 0.8 - 0.05) * min(u / 0.3, 1.0) - 0.1 * max(u - 0.3, 0.0) * ood
                            sid, sood = i_, o_
                        else:
                            i_, o_ = sid + (id_ - sid) * u, sood + (ood - sood) * u
                        curves.append({**c0, "stage": s, "step": j * 10, "compute": at + spent[s] * u, "id": i_,
                                       "ood": o_, "loss": 2.0 - u})
                    at += spent[s]
    return rows, curves
