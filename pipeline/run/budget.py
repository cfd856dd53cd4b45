"""The spending check before any job starts: the plan's cost estimate for what is not yet cached against the
manifest's `budget` (capped by the deployment's ceiling) -> a located refusal, and the report's budget section."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.errors import Problem
from pipeline.manifest.campaign import Campaign
from pipeline.plan.build import Plan
from pipeline.plan.cost import estimate_cost
from pipeline.storage.store import Store
from pipeline.tasks import is_done

PARALLEL_CACHE_CHECKS = 16  # one HEAD pair per job on S3: overlap them for a large campaign
CEILING_SETTING = "max_budget_usd"  # the CDK context key (and CAMPAIGN_MAX_BUDGET_USD in the task functions)


@dataclass(frozen=True)
class UncachedEstimate:
    """The cost estimate of a plan's jobs that are not in the store yet; `estimate` is None (and `error` says
    why) when the plan cannot be priced, e.g. an instance type without a price."""

    estimate: Mapping[str, Any] | None
    error: str | None
    cached: Mapping[str, bool]


def estimate_uncached(plan: Plan, store: Store, *, instance_type: str | None = None) -> UncachedEstimate:
    with ThreadPoolExecutor(max_workers=PARALLEL_CACHE_CHECKS) as pool:
        done = dict(zip([j.id for j in plan.jobs], pool.map(lambda j: is_done(store, j), plan.jobs), strict=True))
    try:
        return UncachedEstimate(estimate_cost(plan, instance_type=instance_type, cached=done), None, done)
    except (ValueError, KeyError) as exc:  # pricing raises KeyError/ValueError for what it has no price for
        return UncachedEstimate(None, str(exc).strip("'\""), done)


@dataclass(frozen=True)
class BudgetCheck:
    """The budget that applies (the manifest's, capped by the ceiling; the ceiling alone without one), the
    estimate it was compared with, what the estimate does not know, and the refusal if there is one."""

    manifest_usd: float | None
    ceiling_usd: float | None
    estimate_usd: float | None
    unknowns: tuple[str, ...]
    problem: Problem | None
    jobs_to_run: int

    @property
    def limit_usd(self) -> float | None:
        limits = [v for v in (self.manifest_usd, self.ceiling_usd) if v is not None]
        return min(limits) if limits else None

    @property
    def refused(self) -> bool:
        return self.problem is not None

    def to_json(self) -> dict[str, Any]:
        """The report's `budget` section: estimate and budget side by side, and the estimate's unknowns."""
        return {"max_usd": self.manifest_usd, "ceiling_usd": self.ceiling_usd, "limit_usd": self.limit_usd,
                "estimate_usd": self.estimate_usd, "jobs_to_run": self.jobs_to_run,
                "within": None if self.limit_usd is None or self.estimate_usd is None else self.estimate_usd <= self.limit_usd,
                "refused": str(self.problem) if self.problem else None, "unknowns": list(self.unknowns)}


def check_budget(campaign: Campaign, uncached: UncachedEstimate, *, ceiling_usd: float | None = None) -> BudgetCheck:
    """Refuse a run whose budget exceeds the ceiling, or whose estimate for what is not cached exceeds its
    budget, or that has a budget but no estimate. The refusal points at the manifest's `budget` key (or at
    the document's start when only the deployment's ceiling applies)."""
    spec = campaign.budget
    manifest_usd = spec.max_usd if spec else None
    estimate = uncached.estimate
    estimate_usd = float(estimate["uncached_usd"]) if estimate else None
    unknowns = tuple(estimate.get("unknowns", ())) if estimate else ()
    to_run = sum(not done for done in uncached.cached.values())

    def at_budget(message: str) -> Problem:
        if spec:
            return Problem(spec.file, spec.line, spec.col, "budget.max_usd", message)
        return Problem(campaign.source_file, 1, 1, "budget", message)

    check = BudgetCheck(manifest_usd, ceiling_usd, estimate_usd, unknowns, None, to_run)
    limit = check.limit_usd
    problem = None
    if manifest_usd is not None and ceiling_usd is not None and manifest_usd > ceiling_usd:
        problem = at_budget(f"budget ${manifest_usd:,.2f} is over this deployment's ceiling of ${ceiling_usd:,.2f} "
                            f"(CDK context {CEILING_SETTING}); lower it or ask the operator to raise the ceiling")
    elif limit is not None and estimate_usd is None:
        problem = at_budget(f"no cost estimate ({uncached.error}), so the budget of ${limit:,.2f} cannot be checked")
    elif limit is not None and estimate_usd is not None and estimate_usd > limit:
        whose = "budget" if manifest_usd is not None and manifest_usd <= (ceiling_usd or manifest_usd) else "deployment's ceiling"
        caveat = f"; the estimate rests on {len(unknowns)} unverified figure(s), listed by `campaign plan`" if unknowns else ""
        problem = at_budget(f"estimated ${estimate_usd:,.2f} for the {to_run} job(s) not yet cached is over the {whose} "
                            f"of ${limit:,.2f}{caveat}; raise budget.max_usd or make the campaign smaller")
    return BudgetCheck(manifest_usd, ceiling_usd, estimate_usd, unknowns, problem, to_run)
