"""Audit one model: would an attacker tell which class it forgot?

Every attack whose knowledge the auditor can give runs on the model (white box, or queries only
with ``black_box``; the attacker's data is the dataset's reserve; unrelated data as in a grid; the
model before unlearning when given). The same attacks also run on ``null_models`` models the
attacker trains itself on its own data and never unlearns: how often a rule names a class on
them is its false-alarm rate, the yardstick for whatever it names on the audited model. Nothing
here reads which class the audited model forgot.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import labelleak
from labelleak.attacks import (
    ATTACKS,
    Attack,
    AttackerKnowledge,
    get_attack_class,
    make_attack_config,
    restrict,
)
from labelleak.attacks.base import FIT_ON_SHADOWS
from labelleak.auditing.loading import LogitsModule, as_classifier, load_model_file
from labelleak.errors import LabelleakError
from labelleak.evaluation import wilson_interval
from labelleak.experiment.attacking import (
    RESULTS_VERSION,
    SHADOW_SEED_OFFSET,
    AttackRunner,
    format_set,
)
from labelleak.experiment.config import parse_config, validate_config
from labelleak.experiment.pipeline import Pipeline
from labelleak.experiment.store import ArtifactStore, default_cache_dir
from labelleak.training import predict_logits, train_model
from labelleak.unlearning import PAPER_METHODS
from labelleak.utils import content_hash, resolve_device, seed_everything, write_text_atomic

#: Null models' seeds start here (shadow runs start at SHADOW_SEED_OFFSET): never a target's.
NULL_SEED_OFFSET = 2 * SHADOW_SEED_OFFSET
#: The white-box attacks that read the final linear layer's parameters.
NEEDS_LINEAR_HEAD = frozenset({"param-dot", "param-diff", "head-bias", "head-norm"})
#: Attacks that are a reference, not evidence, and stay out of the summary.
REFERENCE_ATTACKS = frozenset({"chance"})
#: A set rule counts as evidence when it names a class on at most this fraction of null models.
DEFAULT_MAX_FALSE_ALARM = 0.1


@dataclass(frozen=True)
class Verdict:
    """One attack's conclusion under one rule.

    ``named`` are the classes named as forgotten (empty: nothing). ``false_alarms`` counts the
    ``null_models`` on which the rule named any class; ``None`` for ``top``, which always names
    ``forget_count`` classes (it ranks, it does not detect). ``null_same`` counts the null models
    on which the rule named exactly ``named`` (a class named on the null models too is a habit of
    the attack, not evidence).
    """

    attack: str
    rule: str
    named: tuple[int, ...]
    false_alarms: int | None
    null_models: int
    null_same: int
    queries: int
    seconds: float

    @property
    def decides_count(self) -> bool:
        return self.rule != "top"

    def false_alarm_rate(self) -> float | None:
        if self.false_alarms is None or self.null_models == 0:
            return None
        return self.false_alarms / self.null_models


@dataclass
class AuditResult:
    """What :func:`audit` found; :meth:`summary` says it in words, :meth:`to_frame` as a table."""

    dataset: str
    arch: str
    black_box: bool
    forget_count: int
    attacker_classes: tuple[int, ...]
    null_models: int
    verdicts: list[Verdict]
    skipped: dict[str, str]
    #: The audited model's accuracy per class on the attacker's reserve (what an attacker with
    #: labelled data of every class would see).
    reserve_accuracy: list[float]
    seconds: float
    max_false_alarm: float = DEFAULT_MAX_FALSE_ALARM
    settings: dict[str, Any] = field(default_factory=dict)
    #: Per null model, how many ranking attacks (their ``top``) agree on the set most of them
    #: name: the yardstick for the audited model's own agreement (:meth:`consensus`).
    null_agreement: list[int] = field(default_factory=list)
    #: On how many null models any of the calibrated set rules (:meth:`evidence`) named a class:
    #: their joint false alarms, the yardstick for the set-rule verdict.
    null_set_alarms: int | None = None

    def evidence(self) -> dict[str, Verdict]:
        """Per attack (references left out), its set rule with the fewest false alarms, when
        that rule's false-alarm rate is at most :attr:`max_false_alarm`."""
        chosen: dict[str, Verdict] = {}
        for verdict in self.verdicts:
            rate = verdict.false_alarm_rate()
            if verdict.attack in REFERENCE_ATTACKS or rate is None or rate > self.max_false_alarm:
                continue
            best = chosen.get(verdict.attack)
            if best is None or (verdict.false_alarms or 0) < (best.false_alarms or 0):
                chosen[verdict.attack] = verdict
        return chosen

    def leading(self) -> tuple[tuple[int, ...], int]:
        """The classes most calibrated attacks (:meth:`evidence`) name, and how many name them;
        ``((), 0)`` when none names a class."""
        named = Counter(v.named for v in self.evidence().values() if v.named)
        return named.most_common(1)[0] if named else ((), 0)

    def ranked_first(self) -> tuple[tuple[int, ...], int, int]:
        """The classes most attacks' ``top`` rule names, how many do, and how many ranked."""
        tops = Counter(
            v.named for v in self.verdicts if v.rule == "top" and v.attack not in REFERENCE_ATTACKS
        )
        if not tops:
            return (), 0, 0
        classes, count = tops.most_common(1)[0]
        return classes, count, sum(tops.values())

    def consensus(self) -> tuple[tuple[int, ...], int, int, int]:
        """The set most attacks rank first (:meth:`ranked_first`), how many do, of how many,
        and on how many null models at least that many attacks agree on any one set (its
        false alarms)."""
        classes, count, total = self.ranked_first()
        alarms = sum(agreement >= count for agreement in self.null_agreement)
        return classes, count, total, alarms

    def verdict(self) -> tuple[tuple[int, ...], str]:
        """The classes the audit concludes were forgotten (empty: none) and why.

        The ranking consensus decides when it is calibrated (as many attacks agree on at most
        :attr:`max_false_alarm` of the null models); else the set most calibrated set rules
        (:meth:`evidence`) name; else nothing.
        """
        classes, count, total, alarms = self.consensus()
        nulls = len(self.null_agreement)
        if total and nulls and alarms / nulls <= self.max_false_alarm:
            return classes, (
                f"{count} of {total} attacks rank it first; {alarms} of {nulls} null models see "
                "that much agreement"
            )
        leader, named = self.leading()
        joint = self.null_set_alarms
        if leader and nulls and joint is not None and joint / nulls <= self.max_false_alarm:
            return leader, (
                f"named by {named} of {len(self.evidence())} calibrated set rules, which "
                f"together name a class on {joint} of {nulls} null models"
            )
        if leader:
            return (), (
                f"the calibrated set rules name {_classes(leader)}, but together they name a "
                f"class on {joint} of {nulls} null models"
            )
        return (), "no calibrated agreement or set rule names a class"

    def summary(self) -> str:
        """A plain-language verdict, e.g. ``3 of 4 calibrated attacks name class 7 ...``."""
        evidence = self.evidence()
        lines = []
        named = Counter(v.named for v in evidence.values() if v.named)
        if evidence:
            for classes, count in named.most_common():
                who = [v for v in evidence.values() if v.named == classes]
                alarms = ", ".join(
                    f"{v.attack} {v.rule} {v.false_alarms}/{v.null_models}" for v in who
                )
                lines.append(
                    f"{count} of {len(evidence)} calibrated attacks name "
                    f"{_classes(classes)} (false alarms on {self.null_models} never-unlearned "
                    f"null models: {alarms})."
                )
            silent = [a for a, v in evidence.items() if not v.named]
            if silent and named:
                lines.append(f"{len(silent)} name nothing ({', '.join(silent)}).")
            elif silent:
                lines.append(
                    f"None of the {len(silent)} calibrated attacks names a class "
                    f"({', '.join(silent)})."
                )
        else:
            lines.append(
                f"No attack has a set rule with at most {self.max_false_alarm:.0%} false alarms "
                f"on the {self.null_models} null models: no calibrated verdict."
            )
        ranked, count, total, alarms = self.consensus()
        if total:
            lines.append(
                f"Told {self.forget_count} class{'es' if self.forget_count > 1 else ''} "
                f"{'were' if self.forget_count > 1 else 'was'} forgotten, {count} of {total} "
                f"attacks rank {_classes(ranked)} first; on {alarms} of "
                f"{len(self.null_agreement)} null models as many agree on one answer."
            )
        accuracy = np.asarray(self.reserve_accuracy)
        low = [int(c) for c in np.flatnonzero(accuracy < 0.5)]
        if low:
            lines.append(
                f"An attacker holding labelled data of every class sees "
                f"{_classes(tuple(low))} at {', '.join(f'{accuracy[c]:.2f}' for c in low)} "
                f"accuracy (the other classes {np.delete(accuracy, low).min():.2f} or more)."
            )
        classes, why = self.verdict()
        lines.append(f"Verdict: {_classes(classes) if classes else 'nothing'} ({why}).")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """One row per (attack, rule): named classes, false alarms with a 95% interval, ..."""
        rows = []
        for v in self.verdicts:
            rate = v.false_alarm_rate()
            if rate is None:
                alarms = "- (ranks only)"
            else:
                low, high = wilson_interval(v.false_alarms or 0, v.null_models)
                alarms = f"{v.false_alarms}/{v.null_models} [{100 * low:.0f}, {100 * high:.0f}]%"
            rows.append(
                {
                    "attack": v.attack,
                    "rule": v.rule,
                    "named": format_set(v.named),
                    "false alarms [95% CI]": alarms,
                    "same on null models": f"{v.null_same}/{v.null_models}",
                    "queries": v.queries,
                    "seconds": round(v.seconds, 2),
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``audit.json``): every field, and the summary."""
        content = asdict(self)
        content["summary"] = self.summary()
        return content

    @classmethod
    def from_dict(cls, content: dict[str, Any]) -> AuditResult:
        """The result :meth:`to_dict` (an ``audit.json``) holds."""
        given = {f.name: content[f.name] for f in fields(cls) if f.name in content}
        given["attacker_classes"] = tuple(given["attacker_classes"])
        given["verdicts"] = [
            Verdict(**{**v, "named": tuple(v["named"])}) for v in content["verdicts"]
        ]
        return cls(**given)

    def to_markdown(self) -> str:
        skipped = "".join(f"- {name}: {why}\n" for name, why in self.skipped.items())
        accuracy = " ".join(f"{a:.2f}" for a in self.reserve_accuracy)
        return (
            f"# Label-leakage audit: {self.dataset}, {self.arch}\n\n"
            f"{self.summary()}\n\n"
            f"Access: {'queries only (black box)' if self.black_box else 'white box'}; the "
            f"attacker's data covers classes {format_set(self.attacker_classes)}; rule `top` is "
            f"told {self.forget_count} forgotten class(es). False alarms: how many of "
            f"{self.null_models} models the attacker trained on its own data and never unlearned "
            "a rule names a class on. Wall time "
            f"{self.seconds:.0f} s.\n\n"
            f"{self.to_frame().to_markdown(index=False)}\n\n"
            f"Accuracy per class on the attacker's reserve: {accuracy}\n\n"
            + (f"Not run:\n{skipped}" if skipped else "")
        )

    def write(self, folder: str | Path) -> None:
        """``folder/audit.json`` and ``folder/audit.md``, each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "audit.json", json.dumps(self.to_dict(), indent=2))
        write_text_atomic(folder / "audit.md", self.to_markdown())


def _classes(classes: tuple[int, ...]) -> str:
    if not classes:
        return "no class"
    return ("class " if len(classes) == 1 else "classes ") + " and ".join(map(str, classes))


def _fresh_copy(module: nn.Module, seed: int) -> nn.Module:
    """``module``'s architecture, re-initialised from ``seed`` (for a foreign model's null
    models)."""
    fresh = copy.deepcopy(module)
    seed_everything(seed)
    for layer in fresh.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh


def audit(
    model: nn.Module | str | Path,
    dataset: str,
    *,
    arch: str | None = None,
    original: nn.Module | str | Path | None = None,
    attacks: list[str] | None = None,
    black_box: bool = False,
    data_dir: str | Path | None = None,
    attacker_classes: str | int | list[int] = "all",
    unrelated: str | None = None,
    null_models: int = 20,
    forget_count: int = 1,
    shadow_rules: bool = False,
    shadow_methods: list[str] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    subsample_per_class: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    max_false_alarm: float = DEFAULT_MAX_FALSE_ALARM,
    progress: bool = False,
) -> AuditResult:
    """Run every applicable attack on ``model`` and calibrate each on never-unlearned models.

    ``model`` is any ``nn.Module`` mapping images ``(N, C, H, W)`` in ``[0, 1]`` (the dataset's
    shape) to logits ``(N, K)``, or a weights file (``.safetensors`` or a ``.pt`` state dict)
    of labelleak architecture ``arch``. The white-box parameter attacks need a final
    ``nn.Linear`` producing the logits; without one they are skipped with that reason. With
    ``arch`` (a labelleak architecture) the null models are that architecture, trained with its
    recipe and cached; otherwise they are re-initialised copies of ``model`` trained with the
    dataset's default recipe. ``attacks`` defaults to every registered attack the knowledge
    allows; naming one it does not allow is an error. ``attacker_classes``: ``all``, a count
    (drawn with ``seed``) or class ids. ``forget_count``: how many classes rule ``top`` names.
    ``shadow_rules`` adds the rules fit on unlearned shadow runs (youden and tree; the
    inversions' threshold-fit and entropy-fit) with ``shadow_methods`` (default the paper's
    five), which needs ``arch``.
    """
    started = time.perf_counter()
    if null_models < 1:
        raise LabelleakError(f"null_models must be at least 1, got {null_models}")
    if isinstance(model, str | Path) and arch is None:
        raise LabelleakError("a model file needs its architecture: pass arch (--arch)")
    chosen_attacks = list(attacks) if attacks else None
    raw = {
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "arch": arch,
        "subsample_per_class": subsample_per_class,
        "methods": list(shadow_methods or PAPER_METHODS),
        "seeds": [seed],
        "attacks": chosen_attacks or [],
        "attack_params": attack_params or {},
        "unrelated": unrelated,
        "device": device,
    }
    config = parse_config(raw)
    validate_config(config, set(ATTACKS))
    compute = resolve_device(device)
    store = ArtifactStore(cache_dir or default_cache_dir())
    pipeline = Pipeline(config, store, compute, progress=progress)
    splits = pipeline.splits(dataset)
    data = splits.dataset
    runner = AttackRunner(config, pipeline)

    target = _load(model, arch, data, "model")
    reference = _load(original, arch, data, "original") if original is not None else None
    reserve_x, reserve_y = splits.attacker_data()
    probe = reserve_x[:8].to(compute)
    target, no_head = as_classifier(target.to(compute), probe, data.num_classes)
    if reference is not None:
        reference, _ = as_classifier(reference.to(compute), probe, data.num_classes)
    reserve_accuracy = _per_class_accuracy(target, reserve_x, reserve_y, data.num_classes, compute)
    classes = _attacker_classes(attacker_classes, data.num_classes, seed)

    kinds = {"query", "attacker_data", "unrelated_data"}
    kinds |= set() if black_box else {"white_box"}
    kinds |= {"original"} if reference is not None else set()
    if shadow_rules:
        if arch is None:
            raise LabelleakError("shadow-fit rules need arch: the shadows are that architecture")
        kinds.add("shadows")
    instances, skipped = _select_attacks(
        config, chosen_attacks, kinds, no_head, shadow_rules, black_box
    )
    if not instances:
        raise LabelleakError(
            "no attack can run with this knowledge; see the reasons: "
            + "; ".join(f"{name} {why}" for name, why in skipped.items())
        )
    for attack in instances.values():
        attack.config.check_input(data.input_shape)

    def knowledge_of(model_: nn.Module, before: nn.Module | None) -> AttackerKnowledge:
        """What the attacker holds about ``model_``, with a query counter at zero."""
        return AttackerKnowledge(
            num_classes=data.num_classes,
            input_shape=data.input_shape,
            white_box=model_,  # type: ignore[arg-type]
            query=runner.query_function(dataset, model_),  # type: ignore[arg-type]
            attacker_data=splits.attacker_data(classes),
            attacker_classes=classes,
            unrelated_data=runner.unrelated(dataset),
            original=before,  # type: ignore[arg-type]
            shadows=(lambda: runner.shadows(dataset, seed, classes, "original"))
            if shadow_rules
            else None,
            forget_count=forget_count,
            extra={"trial": f"audit seed {seed}"},
        )

    def stored(model_key: str | None) -> Callable[[str], Path | None]:
        """Where an attack's outcome on a cached null model is kept (``None``: not kept)."""

        def path(name: str) -> Path | None:
            if model_key is None:
                return None
            needs = instances[name].needs()
            key = content_hash(
                {
                    "null": model_key,
                    "attack": name,
                    "params": instances[name].config.key_params(),
                    "classes": list(classes),
                    "forget_count": forget_count,
                    "seed": seed,
                    "unrelated": [
                        config.unrelated_for(dataset),
                        config.unrelated_count,
                        config.split_seed,
                    ]
                    if "unrelated_data" in needs
                    else None,
                    "shadows": list(config.methods) if "shadows" in needs else None,
                    "version": [RESULTS_VERSION, labelleak.__version__],
                }
            )
            return store.root / "audit-null" / key[:2] / f"{key}.json"

        return path

    on_target = _attack_all(instances, lambda: knowledge_of(target, reference), seed)
    nulls = _null_models(pipeline, dataset, target, arch, null_models, seed, progress)
    # A null model is its own "model before unlearning": nothing was unlearned. Its outcomes do
    # not depend on the audited model, so a later audit with the same knowledge reads them.
    on_nulls = [
        _attack_all(instances, lambda null=null: knowledge_of(null, null), seed, stored(key))
        for null, key in tqdm(nulls, desc="attack null models", disable=not progress)
    ]
    ranking = [name for name in instances if name not in REFERENCE_ATTACKS]
    agreement = [
        max(Counter(run[name, "top"][0] for name in ranking if (name, "top") in run).values(),
            default=0)
        for run in on_nulls
    ]  # fmt: skip
    verdicts = []
    for (name, rule), (named, queries, seconds) in on_target.items():
        answers = [run[name, rule][0] for run in on_nulls]
        verdicts.append(
            Verdict(
                attack=name,
                rule=rule,
                named=named,
                false_alarms=None if rule == "top" else sum(bool(a) for a in answers),
                null_models=len(answers),
                null_same=sum(a == named for a in answers),
                queries=queries,
                seconds=seconds,
            )
        )
    result = AuditResult(
        dataset=dataset,
        arch=arch or type(model).__name__,
        black_box=black_box,
        forget_count=forget_count,
        attacker_classes=classes,
        null_models=len(nulls),
        verdicts=verdicts,
        skipped=skipped,
        reserve_accuracy=reserve_accuracy,
        seconds=time.perf_counter() - started,
        max_false_alarm=max_false_alarm,
        null_agreement=agreement,
        settings={
            "seed": seed,
            "unrelated": config.unrelated_for(dataset),
            "shadow_rules": shadow_rules,
            "subsample_per_class": subsample_per_class,
            "attack_params": {n: a.config.model_dump(mode="json") for n, a in instances.items()},
        },
    )
    chosen = [(v.attack, v.rule) for v in result.evidence().values()]
    result.null_set_alarms = sum(any(run[key][0] for key in chosen) for run in on_nulls)
    return result


def _load(model: nn.Module | str | Path, arch: str | None, data: Any, what: str) -> nn.Module:
    if isinstance(model, str | Path):
        assert arch is not None
        return load_model_file(model, arch, data)
    if not isinstance(model, nn.Module):
        raise LabelleakError(f"the {what} must be an nn.Module or a weights file path")
    # The audit moves and evaluates its own copy: the caller's module is left as it was.
    return copy.deepcopy(model).eval()


def _attacker_classes(
    wanted: str | int | list[int], num_classes: int, seed: int
) -> tuple[int, ...]:
    """The classes the attacker's data covers: ``all``, a count drawn with ``seed``, or ids
    (a string of comma-separated ids is accepted, as the command line passes them)."""
    if isinstance(wanted, str) and wanted != "all":
        parts = [part.strip() for part in wanted.split(",") if part.strip()]
        if not parts or not all(part.isdigit() for part in parts):
            raise LabelleakError(
                f"attacker classes must be 'all', a count, or class ids like 0,1,2; got {wanted!r}"
            )
        wanted = [int(p) for p in parts] if "," in wanted else int(parts[0])
    if wanted == "all":
        return tuple(range(num_classes))
    if isinstance(wanted, list):
        bad = [c for c in wanted if not 0 <= c < num_classes]
        if bad or not wanted:
            raise LabelleakError(f"attacker classes must be ids 0..{num_classes - 1}; got {wanted}")
        return tuple(sorted(set(wanted)))
    if not 1 <= int(wanted) <= num_classes:
        raise LabelleakError(f"attacker classes: a count must be 1..{num_classes}; got {wanted}")
    rng = np.random.default_rng([seed, NULL_SEED_OFFSET])
    picked = rng.choice(num_classes, size=int(wanted), replace=False)
    return tuple(sorted(int(c) for c in picked))


def _per_class_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, device: torch.device
) -> list[float]:
    hits = predict_logits(model, x, device=device).argmax(dim=1) == y
    return [
        round(float(hits[y == c].float().mean()), 4) if bool((y == c).any()) else float("nan")
        for c in range(num_classes)
    ]


def _select_attacks(
    config: Any,
    chosen: list[str] | None,
    kinds: set[str],
    no_head: str | None,
    shadow_rules: bool,
    black_box: bool,
) -> tuple[dict[str, Attack], dict[str, str]]:
    """The attacks to run, and why each registered one that cannot run does not."""
    instances: dict[str, Attack] = {}
    skipped: dict[str, str] = {}
    hints = {
        "white_box": "white-box access (drop --black-box)",
        "original": "the model before unlearning (--original)",
        "shadows": "shadow runs (--shadow-rules)",
    }
    for name in chosen or list(ATTACKS):
        params = dict(config.attack_params.get(name, {}))
        cls = get_attack_class(name)
        if "rules" in cls.Config.model_fields and "rules" not in params:
            # Every rule the attack has, less those fit on shadow runs unless they are asked for.
            params["rules"] = [r for r in cls.rules if shadow_rules or r not in FIT_ON_SHADOWS]
        attack = cls(make_attack_config(name, params))
        missing = sorted(attack.needs() - kinds)
        why = None
        if missing:
            why = "needs " + ", ".join(hints.get(kind, kind) for kind in missing)
        elif name in NEEDS_LINEAR_HEAD and no_head is not None and not black_box:
            why = no_head
        if why is None:
            instances[name] = attack
        elif chosen:
            raise LabelleakError(f"attack {name} cannot run in this audit: it {why}")
        else:
            skipped[name] = why
    return instances, skipped


def _attack_all(
    instances: dict[str, Attack],
    knowledge: Callable[[], AttackerKnowledge],
    seed: int,
    stored: Callable[[str], Path | None] = lambda name: None,
) -> dict[tuple[str, str], tuple[tuple[int, ...], int, float]]:
    """Every attack on one model, each with its own query counter (``knowledge()`` builds a
    fresh one): ``(attack, rule) -> (named classes, queries, seconds)``. An attack whose
    ``stored(name)`` file exists is read from it; one computed is written there."""
    outcome = {}
    for name, attack in instances.items():
        path = stored(name)
        if path is not None and path.is_file():
            for rule, (named, queries, seconds) in json.loads(path.read_text()).items():
                outcome[name, rule] = (tuple(named), queries, seconds)
            continue
        view = restrict(knowledge(), attack.needs())
        attack.prepare(view, seed=seed)
        began = time.perf_counter()
        results = attack.run(view, seed=seed)
        seconds = time.perf_counter() - began
        rows = {r.rule: (tuple(r.predicted), int(r.queries), seconds) for r in results}
        outcome.update({(name, rule): row for rule, row in rows.items()})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps({rule: list(row) for rule, row in rows.items()}))
    return outcome


def _null_models(
    pipeline: Pipeline,
    dataset: str,
    target: nn.Module,
    arch: str | None,
    count: int,
    seed: int,
    progress: bool,
) -> list[tuple[nn.Module, str | None]]:
    """``count`` models trained on the attacker's whole reserve and never unlearned, with
    their cache keys: ``arch`` with its recipe (cached), else re-initialised copies of
    ``target``'s own module (not cached: key ``None``)."""
    splits = pipeline.splits(dataset)
    x, y = splits.attacker_data()
    device = pipeline.device
    models = []
    for index in tqdm(range(count), desc="train null models", disable=not progress):
        null_seed = NULL_SEED_OFFSET + 1000 * seed + index
        if arch is not None:
            built = pipeline.shadow_models(dataset, null_seed, x, y, [("original", ())])[0][2]
            models.append((built.model.to(device).eval(), built.key))
            continue
        base = target.module if isinstance(target, LogitsModule) else target
        fresh = _fresh_copy(base, null_seed)
        train_model(fresh, x, y, pipeline.train_config(dataset), seed=null_seed, device=device)
        wrapped, _ = as_classifier(fresh.eval(), x[:8].to(device), splits.num_classes)
        models.append((wrapped, None))
    return models
