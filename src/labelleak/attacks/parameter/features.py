"""Per-class features comparing the target's classifier rows with an auxiliary head's.

Both heads live in the target's feature space (see :mod:`.auxiliary`), so row ``k`` of one is
comparable with row ``k`` of the other. The raw quantities, per class ``k`` (``w``/``b`` target,
``a``/``c`` auxiliary, ``d = w - a``):

* ``dot`` ``w.a`` (+ ``b c`` with the bias), ``cos`` their cosine;
* ``diff_norm`` ``|d|``, ``rel_diff`` ``|d| / |w|``, ``diff_bias`` ``b - c``;
* ``target_norm``, ``aux_norm``, ``target_bias``, ``aux_bias``;
* ``unseen_cos``: cosine of ``w`` with the mean auxiliary row of the classes the auxiliary head saw
  no sample of, minus its cosine with the mean row of the classes it did see. An auxiliary row with
  no samples is what "trained only to stay low" looks like in this feature space, which is what
  unlearning does to a forgotten row; 0 when every class (or none) had samples;
* ``target_logit``, ``aux_logit``: each head's logit for ``k`` at the mean feature of the
  auxiliary data;
* ``target_share``, ``target_top2``, ``target_peak``: the target's rows evaluated on every
  auxiliary image's feature instead of their mean: ``k``'s mean probability, the fraction of
  images with ``k`` among the two highest logits, and the highest log-odds ``log p / (1 - p)`` of
  ``k`` on any image. A forgotten row is outvoted on almost every image, and a minimally
  unlearned one (neg-grad stops as soon as the forget data is misclassified) still drops out of
  the runner-up places and loses its most confident images, where its mean logit hardly moves.
  The target's outputs on those images give the same three numbers to a query-only attacker
  (``unrelated-histogram`` with ``ranks: 2`` counts runner-up places).

Scales differ between models (a shadow trained on 10% of the data has other norms than the
target), so every column is standardised within its model over all its classes (median and robust
spread), which is what lets shadow-fit thresholds and trees transfer to the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelleak.attacks.parameter.auxiliary import AuxiliaryHead
from labelleak.attacks.rules import ClassFeatures
from labelleak.errors import LabelleakError

FEATURE_NAMES = (
    "dot",
    "cos",
    "diff_norm",
    "rel_diff",
    "diff_bias",
    "target_norm",
    "aux_norm",
    "target_bias",
    "aux_bias",
    "unseen_cos",
    "target_logit",
    "aux_logit",
    "target_share",
    "target_top2",
    "target_peak",
)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``(K, D)`` arrays (0 for a zero row)."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.where(norms > 1e-12, norms, 1.0)


def raw_features(
    weight: np.ndarray, bias: np.ndarray, aux: AuxiliaryHead, *, use_bias: bool = False
) -> np.ndarray:
    """The raw per-class quantities ``(K, len(FEATURE_NAMES))`` (see the module docstring).

    ``weight`` ``(K, D)`` and ``bias`` ``(K,)`` are the target's classifier parameters.
    """
    if not (np.isfinite(weight).all() and np.isfinite(aux.weight).all()):
        raise LabelleakError("a classifier holds non-finite parameters (a diverged model?)")
    if weight.shape != aux.weight.shape:
        raise LabelleakError(
            f"target rows {weight.shape} and auxiliary rows {aux.weight.shape} differ in shape"
        )
    w = np.concatenate([weight, bias[:, None]], axis=1) if use_bias else weight
    a = np.concatenate([aux.weight, aux.bias[:, None]], axis=1) if use_bias else aux.weight
    diff = w - a
    target_norm = np.linalg.norm(weight, axis=1)
    unseen = aux.counts == 0
    if unseen.any() and (~unseen).any():
        unseen_mean = aux.weight[unseen].mean(axis=0, keepdims=True)
        seen_mean = aux.weight[~unseen].mean(axis=0, keepdims=True)
        unseen_cos = _cosine(weight, unseen_mean) - _cosine(weight, seen_mean)
    else:
        unseen_cos = np.zeros(len(weight))
    logits = aux.sample_features @ weight.T + bias  # (N, K): the target on each image
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    top2 = np.argsort(-logits, axis=1, kind="stable")[:, :2]
    top2_share = np.bincount(top2.ravel(), minlength=len(weight)) / len(logits)
    # log p / (1 - p) per image and class, from the logits so it never saturates at p = 1.
    others = np.where(np.eye(len(weight), dtype=bool)[None], -np.inf, logits[:, None, :])
    others_max = others.max(axis=2)
    others_lse = others_max + np.log(np.exp(others - others_max[..., None]).sum(axis=2))
    peak_log_odds = (logits - others_lse).max(axis=0)
    columns = {
        "dot": (w * a).sum(axis=1),
        "cos": _cosine(w, a),
        "diff_norm": np.linalg.norm(diff, axis=1),
        "rel_diff": np.linalg.norm(diff, axis=1) / np.maximum(target_norm, 1e-12),
        "diff_bias": bias - aux.bias,
        "target_norm": target_norm,
        "aux_norm": np.linalg.norm(aux.weight, axis=1),
        "target_bias": bias,
        "aux_bias": aux.bias,
        "unseen_cos": unseen_cos,
        "target_logit": weight @ aux.mean_feature + bias,
        "aux_logit": aux.weight @ aux.mean_feature + aux.bias,
        "target_share": np.exp(log_probs).mean(axis=0),
        "target_top2": top2_share,
        "target_peak": peak_log_odds,
    }
    return np.stack([columns[name] for name in FEATURE_NAMES], axis=1)


def standardise_within(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Robust z-scores of each column ``(K, F)`` against the ``reference`` classes of one model.

    Centre = median, spread = 1.4826 x median absolute deviation, floored at a tenth of the
    column's standard deviation so a few identical values cannot blow the scale up.
    """
    pool = values[reference] if reference.sum() >= 2 else values
    center = np.median(pool, axis=0)
    spread = 1.4826 * np.median(np.abs(pool - center), axis=0)
    spread = np.maximum(spread, 0.1 * pool.std(axis=0))
    return (values - center) / np.where(spread > 1e-12, spread, 1.0)


def parse_score(score: str | Sequence[str]) -> list[tuple[str, float]]:
    """Signed column terms of a score: ``"cos"`` -> [(``"cos"``, +1)], ``("cos", "-diff_norm")``
    -> [(``"cos"``, +1), (``"diff_norm"``, -1)]. A leading ``-`` means low values = forgotten."""
    terms = [score] if isinstance(score, str) else list(score)
    if not terms:
        raise LabelleakError("a score needs at least one feature name")
    parsed = []
    for term in terms:
        name, sign = (term[1:], -1.0) if term.startswith("-") else (term, 1.0)
        if name not in FEATURE_NAMES:
            raise LabelleakError(
                f"unknown score {term!r}; use names from {', '.join(FEATURE_NAMES)}, each "
                "optionally prefixed with '-' (lower = more likely forgotten)"
            )
        parsed.append((name, sign))
    return parsed


def class_features(
    weight: np.ndarray,
    bias: np.ndarray,
    aux: AuxiliaryHead,
    *,
    score: str | Sequence[str],
    candidates: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    contrast: bool = False,
    use_bias: bool = False,
) -> ClassFeatures:
    """Standardised per-class features ``(K, F)`` with ``score`` as the primary score.

    ``score`` names one or more columns of :data:`FEATURE_NAMES` (see :func:`parse_score`); the
    primary score is the sum of their signed standard scores. ``candidates`` ``(K,)`` bool
    restricts which classes may be named (default all); ``reference`` ``(K,)`` bool picks the
    classes whose median and spread standardise each column (default all: a median over the few
    candidates of a shadow run is itself often a forgotten class). With ``contrast`` each
    candidate's values are taken relative to the mean of the OTHER candidates (and every other
    class's relative to the mean of all candidates): the level of a whole candidate set depends
    on how many classes the auxiliary head saw, which differs between a shadow and the target,
    while how one candidate stands out from the rest does not. Within the candidates this is an
    affine map, so ``top`` and ``kmeans`` decide the same either way.
    """
    k = weight.shape[0]
    mask = np.ones(k, bool) if candidates is None else np.asarray(candidates, bool)
    pool = np.ones(k, bool) if reference is None else np.asarray(reference, bool)
    values = standardise_within(raw_features(weight, bias, aux, use_bias=use_bias), pool)
    if contrast and mask.sum() >= 2:
        total = values[mask].sum(axis=0)
        others = np.where(mask[:, None], (total - values) / (mask.sum() - 1), total / mask.sum())
        values = values - others
    primary = sum(sign * values[:, FEATURE_NAMES.index(name)] for name, sign in parse_score(score))
    return ClassFeatures(values, FEATURE_NAMES, np.asarray(primary, dtype=np.float64), mask)
