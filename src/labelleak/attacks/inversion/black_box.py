"""invert-black (A4): per-class prototypes by a genetic algorithm, with query access only.

The attack sees the target only through ``knowledge.query`` (a counting
:class:`~labelleak.attacks.base.QueryFunction` returning probabilities). Each class ``k`` has its
own population of low-resolution images (``resolution x resolution`` per channel, values in
``[0, 1]``) that are upsampled bilinearly to the input size; fitness is the target's own-class
log-odds ``log p_k - log sum_{j != k} p_j`` (nats), computed from the probabilities so it keeps
resolving where ``p_k`` rounds to 1. Every generation, the children of all still-active classes
are scored in ONE batched query; elites are carried over without being queried again (the target
is deterministic). A class stops when its best fitness reaches ``stop_log_odds``, when it has not
improved for ``patience`` generations, or when its share of the query budget is spent.

Selection is by tournament, crossover uniform (or blend), mutation Gaussian per gene; every
random draw comes from one ``torch.Generator`` seeded by the attack's seed, so a seed fixes the
run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator

from labelleak.attacks.base import (
    AttackerKnowledge,
    AttackResult,
    QueryFunction,
    check_resolution,
    probabilities_of,
    register_attack,
)
from labelleak.attacks.inversion.criteria import (
    CriteriaConfig,
    log_odds_from_probs,
    profile_results,
)
from labelleak.attacks.inversion.images import upsample
from labelleak.attacks.inversion.shadow_levels import InversionAttack
from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier

#: A row of a probability vector may be off 1 by rounding; more than this is not a probability.
SUM_TOLERANCE = 1e-3


def query_probabilities(query: QueryFunction, x: torch.Tensor) -> torch.Tensor:
    """Query ``x`` ``(N, C, H, W)``; return probabilities ``(N, K)`` or raise if they are not.

    A query function over raw logits (negative entries, rows not summing to 1) would make every
    fitness meaningless, so it is refused with a clear error instead.
    """
    probs = query(x)
    if len(probs) == 0:
        return probs
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise LabelleakError(
            "the query function returned negative or non-finite values; it must return "
            "probabilities (wrap a logits model with probabilities_of)"
        )
    worst = float((probs.double().sum(dim=1) - 1.0).abs().max())
    if worst > SUM_TOLERANCE:
        raise LabelleakError(
            f"the query function's output rows sum to 1 +- {worst:.3g}; it must return "
            "probabilities (wrap a logits model with probabilities_of)"
        )
    return probs


class BlackBoxConfig(CriteriaConfig):
    """invert-black: the genetic algorithm's settings plus the decision rules' levels."""

    # The GA's retained classes end less converged (more scattered log-odds) than gradient
    # inversion's, so its relative levels sit lower; measured on digits (see the report).
    alpha: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="threshold rule: forgotten below alpha x the median class's capped log-odds",
    )
    entropy_alpha: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="entropy rule: forgotten when -log H is below entropy_alpha x the median "
        "class's (capped)",
    )
    queries_per_class: int = Field(
        1000, ge=1, description="query budget per class; the total budget is this times K"
    )
    population: int = Field(32, ge=4, description="individuals per class")
    elite: int = Field(4, ge=1, description="best individuals carried over unchanged (unqueried)")
    resolution: int = Field(7, ge=1, description="side of the searched low-resolution image")
    tournament: int = Field(3, ge=2, description="tournament size for parent selection")
    crossover: Literal["uniform", "blend"] = Field(
        "uniform", description="uniform: each gene from either parent; blend: BLX-0.25"
    )
    mutation_rate: float = Field(0.1, ge=0, le=1, description="probability a gene mutates")
    mutation_sigma: float = Field(
        0.2, gt=0, description="standard deviation of a mutation, in pixel units ([0, 1])"
    )
    patience: int = Field(
        6, ge=1, description="generations without a 0.05-nat gain before a class stops"
    )
    stop_log_odds: float = Field(
        25.0, description="a class stops once its best own-class log-odds reach this (nats)"
    )

    def check_input(self, input_shape: tuple[int, int, int]) -> None:
        check_resolution(self.resolution, input_shape)

    @model_validator(mode="after")
    def _elite_below_population(self) -> BlackBoxConfig:
        if self.elite >= self.population:
            raise ValueError("elite must be smaller than population")
        if self.queries_per_class < self.population:
            raise ValueError("queries_per_class must cover at least one population")
        return self


@dataclass
class GeneticInversion:
    """What the GA found: ``prototypes`` ``(K, C, H, W)``, their ``profiles`` ``(K, K)``
    (probabilities the target returned), ``fitness`` ``(K,)`` (log-odds, nats),
    ``queries_per_class`` ``(K,)`` and ``generations`` ``(K,)`` run per class."""

    prototypes: torch.Tensor
    profiles: torch.Tensor
    fitness: torch.Tensor
    queries_per_class: torch.Tensor
    generations: torch.Tensor


def genetic_inversion(
    query: QueryFunction,
    num_classes: int,
    input_shape: tuple[int, int, int],
    config: BlackBoxConfig,
    seed: int,
) -> GeneticInversion:
    """Run one GA per class, all classes' new individuals scored in one query per generation."""
    config.check_input(input_shape)
    k, pop, elite = num_classes, config.population, config.elite
    channels, height, width = input_shape
    per_class = config.queries_per_class
    if query.remaining is not None:
        per_class = min(per_class, query.remaining // k)
    if per_class < pop:
        raise LabelleakError(
            f"query budget too small: invert-black needs at least population x classes = "
            f"{pop * k} queries, {query.remaining} remain"
        )
    generator = torch.Generator().manual_seed(seed)
    gene_shape = (channels, config.resolution, config.resolution)
    labels = torch.arange(k)

    def score(genes: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # genes (M, n, *gene_shape) for the M classes listed; one query for all of them.
        m, n = genes.shape[:2]
        probs = query_probabilities(query, upsample(genes.flatten(0, 1), (height, width)))
        fit = log_odds_from_probs(probs, classes.repeat_interleave(n)).view(m, n)
        return fit, probs.view(m, n, -1)

    genes = torch.rand((k, pop, *gene_shape), generator=generator)
    fitness, probs = score(genes, labels)
    used = torch.full((k,), pop)
    generations = torch.zeros(k, dtype=torch.long)
    best_fit, best_at = fitness.max(dim=1)
    best_genes = genes[labels, best_at].clone()
    best_probs = probs[labels, best_at].clone()
    stale = torch.zeros(k, dtype=torch.long)
    active = best_fit < config.stop_log_odds
    children = pop - elite
    while True:
        active &= used + children <= per_class
        classes = torch.nonzero(active).flatten()
        if len(classes) == 0:
            break
        fit_a, genes_a = fitness[classes], genes[classes]
        new_genes = _offspring(genes_a, fit_a, children, config, generator)
        new_fit, new_probs = score(new_genes, classes)
        used[classes] += children
        generations[classes] += 1
        order = fit_a.argsort(dim=1, descending=True)[:, :elite]
        rows = torch.arange(len(classes)).unsqueeze(1)
        genes[classes] = torch.cat([genes_a[rows, order], new_genes], dim=1)
        fitness[classes] = torch.cat([fit_a[rows, order], new_fit], dim=1)
        gen_best, gen_at = new_fit.max(dim=1)
        improved = gen_best > best_fit[classes] + 0.05
        better = gen_best > best_fit[classes]
        upd = classes[better]
        best_fit[upd] = gen_best[better]
        best_genes[upd] = new_genes[better, gen_at[better]]
        best_probs[upd] = new_probs[better, gen_at[better]]
        stale[classes] = torch.where(improved, 0, stale[classes] + 1)
        active &= (stale < config.patience) & (best_fit < config.stop_log_odds)
    return GeneticInversion(
        prototypes=upsample(best_genes, (height, width)),
        profiles=best_probs,
        fitness=best_fit,
        queries_per_class=used,
        generations=generations,
    )


def _offspring(
    genes: torch.Tensor,
    fitness: torch.Tensor,
    count: int,
    config: BlackBoxConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """``count`` children per class from populations ``genes`` ``(M, P, ...)``, ``(M, P)``."""
    m, pop = fitness.shape
    flat = genes.flatten(2)

    def tournament() -> torch.Tensor:
        entrants = torch.randint(0, pop, (m, count, config.tournament), generator=generator)
        scores = fitness.gather(1, entrants.flatten(1)).view(m, count, config.tournament)
        winner = entrants.gather(2, scores.argmax(dim=2, keepdim=True)).squeeze(2)
        return flat.gather(1, winner.unsqueeze(2).expand(-1, -1, flat.shape[2]))

    mother, father = tournament(), tournament()
    if config.crossover == "uniform":
        take = torch.rand(mother.shape, generator=generator) < 0.5
        child = torch.where(take, mother, father)
    else:
        u = torch.rand(mother.shape, generator=generator) * 1.5 - 0.25
        child = mother + u * (father - mother)
    mutate = torch.rand(child.shape, generator=generator) < config.mutation_rate
    noise = torch.randn(child.shape, generator=generator) * config.mutation_sigma
    child = (child + mutate * noise).clamp(0.0, 1.0)
    return child.view(m, count, *genes.shape[2:])


@register_attack("invert-black")
class BlackBoxInversion(InversionAttack):
    """A4: genetic-algorithm inversion through output probabilities only (query access)."""

    Config = BlackBoxConfig
    # Shadows only for the fitted rules (Attack.needs drops them otherwise).
    requires = frozenset({"query", "shadows"})
    summary = "per-class prototypes by a genetic algorithm over queried probabilities (black box)"

    def profile(
        self, model: ImageClassifier, knowledge: AttackerKnowledge, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The attacker's own shadow models: queried through their own counters, not the target's.
        query = QueryFunction(probabilities_of(model), knowledge.input_shape, knowledge.num_classes)
        config: BlackBoxConfig = self.config  # type: ignore[assignment]
        found = genetic_inversion(query, knowledge.num_classes, knowledge.input_shape, config, seed)
        return found.profiles, found.fitness

    def run(self, knowledge: AttackerKnowledge, seed: int = 0) -> list[AttackResult]:
        query = knowledge.need("query")
        config: BlackBoxConfig = self.config  # type: ignore[assignment]
        fitted = self.levels(knowledge, seed)
        started = time.perf_counter()
        before = query.queries
        found = genetic_inversion(query, knowledge.num_classes, knowledge.input_shape, config, seed)
        details = {
            "prototypes": found.prototypes,
            "profiles": found.profiles,
            "log_odds": found.fitness,
            "queries_per_class": found.queries_per_class,
            "generations": found.generations,
        }
        return profile_results(
            self.name,
            found.profiles,
            config,
            query.queries - before,
            time.perf_counter() - started,
            details,
            found.fitness,
            knowledge.forget_count,
            fitted,
        )
