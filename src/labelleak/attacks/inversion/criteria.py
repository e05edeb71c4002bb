"""Decision criteria over prototype prediction profiles: which classes were forgotten?

An inversion attack reconstructs one prototype per class and records the target's output on it:
the *profile* ``P`` ``(K, K)``, row ``k`` the probabilities of the prototype of class ``k``. A
forgotten class is one the target can no longer be driven to, so its prototype's own-class
confidence is low and its row is spread out. Two per-class scores follow (higher = more
forgotten):

* ``threshold``: minus the prototype's own-class log-odds ``log p_kk - log(sum_{j != k} p_kj)``
  in nats. Computed from the *small* probabilities, it keeps resolving where ``p_kk`` rounds to
  ``1.0`` in float32 (the digits MLP saturates), and it equals the logit gap up to underflow.
* ``entropy``: ``log`` of the Shannon entropy (nats) of row ``k``, evaluated stably for
  saturated rows; the log keeps near-zero entropies apart.

Both scores become decisions with :func:`relative_decision`, a rule that needs no target truth
and no known number of forgotten classes: a class is forgotten when its score is an outlier
above the other classes' scores (robust z-score over the K classes, median and MAD), or when it
crosses an absolute level (e.g. the prototype is not even predicted as its own class). The
rule assumes fewer than half the classes are forgotten. :func:`top_decision` names the single
highest-scoring class (for when exactly one class is known to be forgotten).

For attackers with shadow runs, :func:`fit_z_level` picks the z level that maximises exact
identification over the attacker's own shadow targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from labelleak.errors import LabelleakError

#: Added inside logarithms of probabilities: below float32's smallest subnormal (1.4e-45) it
#: only matters for exact zeros, which it maps to a finite floor of about -230 nats.
TINY = 1e-100

#: 1.4826 * MAD estimates a standard deviation for normally distributed scores.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Criterion:
    """A relative decision rule's levels; see :func:`relative_decision`.

    ``z_level``: robust z-score (in MAD-sigmas) above which a class is an outlier.
    ``min_scale``: floor of the robust spread, in score units, so that near-identical scores of
    the retained classes (e.g. all capped by early stopping) do not make tiny differences
    outliers. ``absolute``: score above which a class is forgotten whatever the others do
    (``None``: no absolute level).
    """

    z_level: float = 3.5
    min_scale: float = 1.0
    absolute: float | None = None


#: Defaults measured on digits and MNIST targets (see the attack modules): a prototype not
#: predicted as its own class (log-odds < 0, ``p < 0.5``) is always forgotten.
THRESHOLD = Criterion(z_level=3.5, min_scale=1.0, absolute=0.0)
#: Entropy is compared on a log scale, so one unit of spread is a factor e in entropy; a row with
#: entropy above half of ``log K``'s log is nowhere near a confident prototype.
ENTROPY = Criterion(z_level=3.5, min_scale=1.0, absolute=None)


def _check_profiles(profiles: torch.Tensor | np.ndarray) -> np.ndarray:
    p = np.asarray(profiles.detach().cpu() if isinstance(profiles, torch.Tensor) else profiles)
    p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1]:
        raise LabelleakError(f"profiles must be a (K, K) matrix; got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise LabelleakError("profiles must hold probabilities: finite and non-negative")
    return p


def own_class_log_odds(profiles: torch.Tensor | np.ndarray) -> np.ndarray:
    """Log-odds ``(K,)`` in nats of each prototype's own class: ``log p_kk - log sum_{j!=k} p_kj``.

    ``profiles`` ``(K, K)`` are probabilities (rows sum to 1). Summing the other classes instead
    of computing ``1 - p_kk`` keeps precision when ``p_kk`` rounds to 1.
    """
    p = _check_profiles(profiles)
    own = np.diag(p)
    others = p.sum(axis=1) - own
    # Rows are re-summed from the small entries: exact where ``own`` rounded to 1.0.
    others = np.where(others < 0, 0.0, others)
    return np.log(own + TINY) - np.log(others + TINY)


def log_odds_of(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-odds ``(N,)`` (nats, float64) of class ``labels[i]`` under probabilities ``(N, K)``."""
    p = probs.double()
    own = p.gather(1, labels.view(-1, 1)).squeeze(1)
    others = (p.sum(dim=1) - own).clamp_min(0.0)
    return torch.log(own + TINY) - torch.log(others + TINY)


def row_entropy(profiles: torch.Tensor | np.ndarray) -> np.ndarray:
    """Shannon entropy ``(K,)`` in nats of each profile row, stable for saturated rows.

    The largest entry's term ``-p log p`` is evaluated as ``-(1 - r) log1p(-r)`` with ``r`` the
    sum of the other entries, so a row like ``(1.0, 1e-9, ...)`` gets entropy about ``2e-8``
    rather than 0.
    """
    p = _check_profiles(profiles)
    top = p.argmax(axis=1)
    mask = np.ones_like(p, dtype=bool)
    mask[np.arange(len(p)), top] = False
    rest = np.where(mask, p, 0.0)
    r = np.clip(rest.sum(axis=1), 0.0, 1.0 - 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.where(rest > 0, -rest * np.log(np.where(rest > 0, rest, 1.0)), 0.0).sum(axis=1)
    big = -(1.0 - r) * np.log1p(-r)
    return small + big


def threshold_scores(profiles: torch.Tensor | np.ndarray) -> np.ndarray:
    """Scores ``(K,)`` for the threshold criterion: minus the own-class log-odds (nats)."""
    return -own_class_log_odds(profiles)


def entropy_scores(profiles: torch.Tensor | np.ndarray) -> np.ndarray:
    """Scores ``(K,)`` for the entropy criterion: ``log(entropy + 1e-30)`` of each row."""
    return np.log(row_entropy(profiles) + 1e-30)


def robust_z(scores: np.ndarray, min_scale: float) -> np.ndarray:
    """Robust z-scores ``(K,)``: ``(s - median) / max(1.4826 * MAD, min_scale)``."""
    s = np.asarray(scores, dtype=np.float64)
    center = float(np.median(s))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(s - center)))
    return (s - center) / max(spread, min_scale)


def relative_decision(scores: np.ndarray, criterion: Criterion) -> tuple[int, ...]:
    """Classes named forgotten: robust outliers above the rest, or above ``criterion.absolute``.

    Needs no truth and no count: the retained classes (at least half) set the median and the
    spread; any number of outliers (0 included) may come out.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) < 2:
        raise LabelleakError(f"need a score per class for at least 2 classes; got {s.shape}")
    named = robust_z(s, criterion.min_scale) > criterion.z_level
    if criterion.absolute is not None:
        named |= s > criterion.absolute
    return tuple(int(k) for k in np.flatnonzero(named))


def top_decision(scores: np.ndarray) -> tuple[int, ...]:
    """The single class with the highest score (ties: the lowest class id)."""
    return (int(np.argmax(np.asarray(scores))),)


def decide(rule: str, scores: np.ndarray, criterion: Criterion | None = None) -> tuple[int, ...]:
    """Apply rule ``"threshold"``, ``"entropy"`` (relative rules) or ``"top"`` to ``scores``."""
    if rule == "top":
        return top_decision(scores)
    if rule in ("threshold", "entropy"):
        default = THRESHOLD if rule == "threshold" else ENTROPY
        return relative_decision(scores, criterion or default)
    raise LabelleakError(f"unknown decision rule {rule!r}; choose threshold, entropy or top")


def fit_z_level(
    score_sets: Sequence[np.ndarray],
    truths: Sequence[Sequence[int]],
    base: Criterion,
    candidates: Sequence[float] = tuple(np.round(np.arange(1.0, 10.01, 0.25), 2)),
) -> Criterion:
    """Fit ``z_level`` on the attacker's own shadow runs: maximise exact identification.

    ``score_sets[i]`` ``(K,)`` are one shadow target's scores, ``truths[i]`` the classes the
    attacker itself made that shadow forget (``()`` for a never-unlearned shadow). Ties between
    levels go to the middle of the best run of levels, away from the edges of what worked.
    """
    if not score_sets or len(score_sets) != len(truths):
        raise LabelleakError("fitting a level needs one truth per shadow score set, at least one")
    hits = []
    for level in candidates:
        crit = Criterion(level, base.min_scale, base.absolute)
        hits.append(
            sum(
                relative_decision(s, crit) == tuple(sorted(t))
                for s, t in zip(score_sets, truths, strict=True)
            )
        )
    best = max(hits)
    best_levels = [lvl for lvl, h in zip(candidates, hits, strict=True) if h == best]
    level = float(best_levels[len(best_levels) // 2])
    return Criterion(level, base.min_scale, base.absolute)


def entropy_of_uniform(num_classes: int) -> float:
    """Entropy in nats of the uniform distribution over ``num_classes`` (the maximum)."""
    return math.log(num_classes)
