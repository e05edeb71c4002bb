"""Auxiliary classifier heads that live in the TARGET's feature space, and shadow runs.

Two independently trained networks have permuted hidden units, so comparing row ``k`` of the
target's classifier with row ``k`` of a separately trained network is meaningless. Every auxiliary
model here therefore shares the target's feature extractor:

* ``head``: a fresh linear head trained on the target's frozen features of the attacker's
  (or unrelated) data; zero-initialised and full-batch, so it is deterministic and its rows for
  classes without data all follow the same "never seen" trajectory.
* ``finetune``: a copy of the whole target fine-tuned briefly on the same data; its classifier
  rows are compared with the target's (the features drift a little, the rows stay aligned).

:func:`make_shadow_runs` trains the attacker's own shadow models (see
:class:`labelleak.attacks.base.ShadowRun`) used to fit Youden thresholds and trees.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from labelleak.attacks.base import (
    Attack,
    AttackerKnowledge,
    AttackResult,
    ShadowRun,
)
from labelleak.attacks.rules import (
    ClassFeatures,
    LabelledFeatures,
    SetRuleConfig,
    decide,
    shadow_roc_points,
    to_results,
)
from labelleak.errors import LabelleakError
from labelleak.models.base import ImageClassifier, is_finite, linear_head
from labelleak.training import TrainConfig, predict_logits, train_model
from labelleak.unlearning import UnlearningTask, build_method, get_method_class

Construction = Literal["head", "finetune"]
LabelSource = Literal["given", "target", "soft"]


@dataclass(frozen=True)
class AuxiliaryHead:
    """Classifier parameters comparable with the target's.

    ``weight`` ``(K, D)``, ``bias`` ``(K,)``; ``counts`` ``(K,)`` how many training samples were
    labelled with each class (0 = a row trained only to stay low); ``sample_features`` ``(N, D)``
    the target's features of the data the head was trained on.
    """

    weight: np.ndarray
    bias: np.ndarray
    counts: np.ndarray
    sample_features: np.ndarray

    @property
    def mean_feature(self) -> np.ndarray:
        """``(D,)`` the mean target feature of the head's training data."""
        return self.sample_features.mean(axis=0)


def classifier_params(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The final layer's ``weight`` ``(K, D)`` and ``bias`` ``(K,)`` as float64 arrays."""
    if not hasattr(model, "features"):
        raise LabelleakError(
            "parameter attacks need a model with features(x) and a final nn.Linear named "
            f"'classifier'; got {type(model).__name__}"
        )
    return linear_head(model, "parameter attacks")


def check_images(x: torch.Tensor, input_shape: tuple[int, ...], what: str) -> None:
    """Raise a one-line error unless ``x`` is a non-empty ``(N, *input_shape)`` batch."""
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise LabelleakError(
            f"{what} must have shape (N, {', '.join(map(str, input_shape))}); got {tuple(x.shape)}"
        )
    if len(x) == 0:
        raise LabelleakError(f"{what} is empty")


@torch.no_grad()
def extract_features(
    model: ImageClassifier, x: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """The target's penultimate features ``(N, D)`` of images ``x`` ``(N, C, H, W)``, on CPU."""
    model.eval()
    device = next(model.parameters()).device
    parts = [model.features(chunk.to(device)).float().cpu() for chunk in x.split(batch_size)]
    return torch.cat(parts)


def make_targets(
    model: ImageClassifier, x: torch.Tensor, y: torch.Tensor | None, source: LabelSource
) -> torch.Tensor:
    """Training targets for an auxiliary model: labels ``(N,)`` or probabilities ``(N, K)``.

    ``given`` uses ``y``; ``target`` labels each image with the target's own prediction (so a
    class the target never predicts gets no sample); ``soft`` uses the target's probabilities.
    """
    if source == "given":
        if y is None:
            raise LabelleakError("label source 'given' needs labelled data")
        return y.long()
    device = next(model.parameters()).device
    logits = predict_logits(model, x, device=device)
    return logits.argmax(dim=1) if source == "target" else torch.softmax(logits, dim=1)


def fit_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """A zero-initialised linear head on fixed ``features`` ``(N, D)``, trained full batch.

    ``targets`` are labels ``(N,)`` or probabilities ``(N, K)``. The L2 penalty keeps the rows of
    classes without samples bounded (cross-entropy alone pushes them down forever). Returns
    ``weight`` ``(K, D)`` and ``bias`` ``(K,)``.
    """
    (head,) = fit_heads(
        [features], [targets], num_classes, steps=steps, lr=lr, weight_decay=weight_decay
    )
    return head


def fit_heads(
    features: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    num_classes: int,
    *,
    steps: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`fit_head` for several independent problems at once, in one batched loop.

    ``features[i]`` ``(N_i, D)`` and ``targets[i]`` (labels ``(N_i,)`` or probabilities
    ``(N_i, K)``) may differ in ``N_i``: shorter problems are padded with zero-weight rows, so
    each head gets exactly the gradient of its own mean loss. Returns one ``(weight (K, D),
    bias (K,))`` per problem.
    """
    # Analytic gradients and an inline Adam step: the heads are tiny, so autograd's and the
    # optimizer's per-step overhead would dominate (2.5x slower for one head, measured), and
    # batching the attacker's ~20 shadow heads into one loop removes the per-head overhead.
    if len(features) != len(targets) or not features:
        raise LabelleakError("fit_heads needs one target tensor per feature matrix, at least one")
    count, longest = len(features), max(len(f) for f in features)
    dim = features[0].shape[1]
    x = torch.zeros(count, longest, dim)
    wanted = torch.zeros(count, longest, num_classes)
    weights = torch.zeros(count, longest, 1)
    for i, (f, t) in enumerate(zip(features, targets, strict=True)):
        if f.shape[1] != dim:
            raise LabelleakError(f"feature widths differ: {f.shape[1]} and {dim}")
        n = len(f)
        x[i, :n] = f.float()
        wanted[i, :n] = F.one_hot(t.long(), num_classes).float() if t.ndim == 1 else t.float()
        weights[i, :n] = 1.0 / max(n, 1)
    params = [torch.zeros(count, num_classes, dim), torch.zeros(count, 1, num_classes)]
    moments = [torch.zeros_like(p) for p in params]
    squares = [torch.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        weight, bias = params
        logits = torch.baddbmm(bias, x, weight.transpose(1, 2))
        # By hand: torch.softmax over a last dimension of ~10 classes is ~4x slower (measured).
        exp = (logits - logits.amax(dim=2, keepdim=True)).exp_()
        residual = (exp / exp.sum(dim=2, keepdim=True) - wanted) * weights
        grads = [
            residual.transpose(1, 2) @ x + 2.0 * weight_decay * weight,
            residual.sum(dim=1, keepdim=True),
        ]
        correction1 = 1.0 - beta1**step
        correction2 = 1.0 - beta2**step
        for param, grad, m, v in zip(params, grads, moments, squares, strict=True):
            m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = (v / correction2).sqrt_().add_(eps)
            param.addcdiv_(m, denom, value=-lr / correction1)
    weight, bias = params
    return [(weight[i].double().numpy(), bias[i, 0].double().numpy()) for i in range(count)]


def finetune_copy(
    target: ImageClassifier,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int = 3,
    lr: float = 0.01,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fine-tune a copy of the whole target on ``x`` and hard ``targets``; return its rows."""
    if targets.ndim != 1:
        raise LabelleakError("the finetune construction needs hard labels, not probabilities")
    model = copy.deepcopy(target)
    device = next(target.parameters()).device
    config = TrainConfig(epochs=epochs, batch_size=64, lr=lr, weight_decay=5e-4)
    train_model(model, x, targets, config, seed=seed, device=device)
    return classifier_params(model)


def build_auxiliary(
    target: ImageClassifier, x: torch.Tensor, y: torch.Tensor | None, **settings: Any
) -> AuxiliaryHead:
    """An auxiliary head for ``target`` from images ``x`` ``(N, C, H, W)`` (labels ``y`` or none).

    :func:`build_auxiliaries` for one problem; ``settings`` are its keyword arguments (see the
    module docstring for ``construction`` and :func:`make_targets` for ``label_source``).
    """
    return build_auxiliaries([(target, x, y)], **settings)[0]


def build_auxiliaries(
    problems: Sequence[tuple[ImageClassifier, torch.Tensor, torch.Tensor | None]],
    *,
    construction: Construction = "head",
    label_source: LabelSource = "given",
    steps: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    finetune_epochs: int = 3,
    finetune_lr: float = 0.01,
    seed: int = 0,
) -> list[AuxiliaryHead]:
    """Auxiliary heads for several ``(target, x, y)`` problems; ``head`` fits are batched.

    See the module docstring for ``construction`` and :func:`make_targets` for
    ``label_source``. Each problem gets exactly the head it would get alone (up to float
    rounding).
    """
    prepared = []
    for target, x, y in problems:
        num_classes = classifier_params(target)[0].shape[0]
        targets = make_targets(target, x, y, label_source)
        hard = targets if targets.ndim == 1 else targets.argmax(dim=1)
        if int(hard.min()) < 0 or int(hard.max()) >= num_classes:
            raise LabelleakError(f"labels must lie in 0..{num_classes - 1}")
        counts = np.bincount(hard.numpy(), minlength=num_classes)
        prepared.append((num_classes, targets, hard, counts, extract_features(target, x)))
    if construction == "head":
        widths = {(k, f.shape[1]) for k, _, _, _, f in prepared}
        if len(widths) > 1:
            raise LabelleakError("batched auxiliary heads need models of one shape")
        rows = fit_heads(
            [f for *_, f in prepared],
            [t for _, t, *_ in prepared],
            prepared[0][0],
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
        )
    elif construction == "finetune":
        rows = [
            finetune_copy(target, x, hard, epochs=finetune_epochs, lr=finetune_lr, seed=seed)
            for (target, x, _), (_, _, hard, _, _) in zip(problems, prepared, strict=True)
        ]
    else:
        raise LabelleakError(f"unknown auxiliary construction {construction!r}")
    return [
        AuxiliaryHead(weight, bias, counts, features.double().numpy())
        for (weight, bias), (_, _, _, counts, features) in zip(rows, prepared, strict=True)
    ]


def default_shadow_forget_sets(
    classes: Sequence[int], singles: int = 4, pairs: int = 2, seed: int = 0
) -> list[tuple[int, ...]]:
    """Random single classes and pairs drawn from ``classes`` (the attacker's own)."""
    pool = sorted({int(c) for c in classes})
    if len(pool) < 3:
        raise LabelleakError("shadow runs need attacker data of at least three classes")
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(pool)
    sets: list[tuple[int, ...]] = [(int(c),) for c in chosen[: min(singles, len(pool))]]
    for _ in range(pairs):
        pair = tuple(sorted(int(c) for c in rng.choice(pool, size=2, replace=False)))
        if pair not in sets:
            sets.append(pair)
    return sets


def make_shadow_runs(
    x: torch.Tensor,
    y: torch.Tensor,
    new_model: Callable[[], ImageClassifier],
    train_config: TrainConfig,
    methods: Sequence[str],
    forget_sets: Sequence[tuple[int, ...]],
    seed: int,
    device: torch.device | str = "cpu",
    method_params: dict[str, dict] | None = None,
    include_original: bool = True,
) -> list[ShadowRun]:
    """Train one shadow original on the attacker's ``(x, y)`` and unlearn it every way asked.

    ``x`` ``(N, C, H, W)``, ``y`` ``(N,)``; ``new_model()`` returns a fresh model of the target's
    architecture; ``seed`` must be disjoint from the targets' seeds. Each forget set must consist
    of classes present in ``y``. With ``include_original`` the untouched shadow is added as a
    control run (``forgotten == ()``). Pure: nothing is cached or written.
    """
    if len(x) != len(y) or len(x) == 0:
        raise LabelleakError("shadow runs need non-empty attacker data with one label per image")
    present = set(torch.unique(y).tolist())
    for forget in forget_sets:
        if not forget or not set(forget) <= present:
            raise LabelleakError(
                f"shadow forget set {forget} must be non-empty classes of the attacker's data "
                f"({sorted(present)})"
            )
    device = torch.device(device)
    torch.manual_seed(seed)
    original = new_model()
    num_classes = original.num_classes
    recorder = None
    needs = [m for m in methods if get_method_class(m).needs_training_record]
    if needs:
        recorder = get_method_class(needs[0]).recorder(original, num_classes)
    train_model(original, x, y, train_config, seed=seed, device=device, recorder=recorder)
    record = recorder.record() if recorder is not None else None  # type: ignore[attr-defined]
    original = original.cpu().eval()
    runs = [ShadowRun(original, (), original, "original")] if include_original else []
    for forget in forget_sets:
        mask = torch.isin(y, torch.tensor(sorted(forget)))
        for name in methods:
            method = build_method(name, (method_params or {}).get(name))
            task = UnlearningTask(
                original=original,
                new_model=new_model,
                train_config=train_config,
                retain_x=x[~mask],
                retain_y=y[~mask],
                forget_x=x[mask],
                forget_y=y[mask],
                forget_classes=tuple(sorted(forget)),
                num_classes=num_classes,
                seed=seed,
                device=device,
                training_record=record,
            )
            torch.manual_seed(seed)
            model = method.unlearn(task).cpu().eval()
            runs.append(ShadowRun(model, tuple(sorted(forget)), original, name))
    return runs


class ParameterAttackConfig(SetRuleConfig):
    """Settings shared by ``param-dot`` and ``param-diff``: the auxiliary head and the rules."""

    construction: Construction = Field(
        "head",
        description="auxiliary model: 'head' (fresh linear head on the target's frozen "
        "features) or 'finetune' (a fine-tuned copy of the target)",
    )
    use_bias: bool = Field(False, description="append the bias to each row before comparing")
    head_steps: int = Field(300, ge=1, description="full-batch Adam steps of the 'head' fit")
    head_lr: float = Field(0.01, gt=0, description="learning rate of the 'head' fit")
    head_weight_decay: float = Field(
        1e-3, ge=0, description="L2 penalty of the 'head' fit (bounds rows without samples)"
    )
    finetune_epochs: int = Field(3, ge=1, description="epochs of the 'finetune' construction")
    finetune_lr: float = Field(0.01, gt=0, description="learning rate of 'finetune'")
    kmeans_columns: tuple[str, ...] | None = Field(
        ("score",), description="feature columns kmeans clusters on; None = all columns"
    )
    tree_depth: int = Field(3, ge=1, description="maximum depth of the shadow-fit tree")
    rules: tuple[str, ...] | None = Field(
        None,
        description="rules to report (top, kmeans, gap, youden, tree); None = all. Without youden "
        "and tree the attack needs no shadow runs",
    )

    def auxiliary_kwargs(self) -> dict[str, Any]:
        return {
            "construction": self.construction,
            "steps": self.head_steps,
            "lr": self.head_lr,
            "weight_decay": self.head_weight_decay,
            "finetune_epochs": self.finetune_epochs,
            "finetune_lr": self.finetune_lr,
        }


def validated_target(knowledge: AttackerKnowledge) -> ImageClassifier:
    """The white-box target, checked to expose ``features`` and an ``nn.Linear`` classifier."""
    model = knowledge.need("white_box")
    weight, _ = classifier_params(model)
    if weight.shape[0] != knowledge.num_classes:
        raise LabelleakError(
            f"the target's classifier has {weight.shape[0]} rows, the task has "
            f"{knowledge.num_classes} classes"
        )
    return model


class ParameterAttack(Attack):
    """What ``param-dot`` and ``param-diff`` share: usable shadow runs and the rules' verdicts."""

    rules = ("top", "kmeans", "gap", "youden", "tree")

    def calibration(self, knowledge: AttackerKnowledge, seed: int) -> list[LabelledFeatures]:
        """Shadow features for the fitted rules, computed once per knowledge setting (none
        when no fitted rule is asked for)."""
        raise NotImplementedError

    def prepare(self, knowledge: AttackerKnowledge, seed: int = 0) -> None:
        self.calibration(knowledge, seed)

    def usable_shadows(self, knowledge: AttackerKnowledge) -> list[ShadowRun]:
        """The attacker's shadow runs, less those whose unlearning diverged."""
        runs = list(knowledge.need("shadows")())
        if not runs:
            raise LabelleakError("the attacker's shadow list is empty; youden and tree need some")
        usable = []
        for run in runs:
            classifier_params(run.target)
            # A shadow that diverged while unlearning says nothing about unlearning.
            if is_finite(run.target):
                usable.append(run)
        return usable

    def conclude(
        self,
        features: ClassFeatures,
        shadows: Sequence[LabelledFeatures],
        seed: int,
        started: float,
        details: dict[str, Any] | None = None,
        count: int = 1,
    ) -> list[AttackResult]:
        """One result per rule, deciding on ``features`` with rules fit on ``shadows``.

        ``started`` is the ``time.perf_counter()`` reading when the attack began; ``count`` is
        how many classes ``top`` names.
        """
        config = self.config
        assert isinstance(config, ParameterAttackConfig)
        decisions = decide(
            self.rules,
            features,
            shadows,
            kmeans_columns=config.kmeans_columns,
            settings=config,
            tree_depth=config.tree_depth,
            seed=seed,
            count=count,
        )
        return to_results(
            self.name,
            decisions,
            features,
            seconds=time.perf_counter() - started,
            details={
                **(details or {}),
                "shadow_runs": len(shadows),
                "roc": shadow_roc_points(shadows),
            },
        )
