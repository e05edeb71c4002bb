"""The result tables: reading and checking the CSVs, and paper-style Markdown tables from them."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labelleak.errors import LabelleakError
from labelleak.evaluation import wilson_interval
from labelleak.utils import content_hash

#: The never-unlearned model attacked as a control (its truth is the empty set) and the oracle.
CONTROL = "original"
ORACLE = "retrain"
#: How the CSVs spell an empty class set.
NOTHING = "none"
#: The paper's methods in its order, then the modern ones; others follow in the order they appear.
METHOD_ORDER = (
    "retrain", "finetune", "random-label", "amnesiac", "neg-grad",
    "ssd", "salun", "scrub", "bad-teacher", "unsir", "l1-sparse", "boundary-shrink",
)  # fmt: skip
MAIN_ATTACKS = ("param-dot", "param-diff", "invert-white", "invert-black")
BASELINES = (
    "chance", "head-bias", "head-norm", "absent-class", "data-peak",
    "unrelated-histogram", "noise-histogram", "probe-drop",
)  # fmt: skip

ATTACK_COLUMNS = (
    "dataset", "arch", "method", "forgotten", "seed", "attack", "rule",
    "predicted", "success", "queries", "seconds",
)  # fmt: skip
UNLEARNING_COLUMNS = (
    "dataset", "arch", "method", "forgotten", "seed",
    "forget_acc", "retain_acc", "test_acc", "seconds",
)  # fmt: skip
ORIGINAL_COLUMNS = ("original_forget_acc", "original_retain_acc", "original_test_acc")
CALIBRATION_COLUMNS = ("dataset", "attack", "knowledge", "score", "forgotten")

#: The columns that identify one measurement; rows repeating a key (the same cell merged from two
#: machines, with other timings) are counted once.
ATTACK_KEY = ["dataset", "arch", "method", "defence", "forgotten", "seed", "attack",
              "rule", "attacker_classes"]  # fmt: skip
UNLEARNING_KEY = ["dataset", "arch", "method", "defence", "forgotten", "seed"]


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class Results:
    """Everything a report is built from, read from one or several result folders.

    ``attacks`` has the columns of ``attacks.csv`` plus ``k`` (how many classes the target's
    attacker looked for: the size of the forget set; for a control, that of the unlearned targets
    attacked with the same knowledge, 0 where it cannot be told) and ``control`` (a bool).
    """

    folders: list[Path]
    attacks: pd.DataFrame
    unlearning: pd.DataFrame
    calibration: pd.DataFrame
    prototypes: list[Path]
    num_classes: dict[str, int]
    notes: list[str] = field(default_factory=list)
    #: A hash of every input file's content and place: equal fingerprints give equal reports.
    fingerprint: str = ""


def load_results(folders: Sequence[str | Path]) -> Results:
    """Read ``attacks.csv``, ``unlearning.csv``, calibration scores and prototype pictures.

    Several folders are concatenated; a row read twice (the same folder given twice, or the same
    cell merged from two machines) counts once. Raises :class:`LabelleakError` with one line for a
    missing folder, a folder set without any result row, or a malformed CSV.
    """
    if not folders:
        raise LabelleakError("no results folder given; pass the folder `labelleak run --out` wrote")
    unique: list[Path] = []
    for folder in map(Path, folders):
        if not folder.exists():
            raise LabelleakError(
                f"results folder {folder} does not exist; pass a folder `labelleak run --out` wrote"
            )
        if not folder.is_dir():
            raise LabelleakError(f"{folder} is not a folder; pass a folder `labelleak run` wrote")
        if folder.resolve() not in {f.resolve() for f in unique}:
            unique.append(folder)
    attack_parts, unlearning_parts, calibration_parts = [], [], []
    prototypes: list[Path] = []
    inputs: dict[str, Path] = {}  # content digest -> first file with that content
    for folder in unique:
        for name, parts, spec in (
            ("attacks.csv", attack_parts, _ATTACK_SPEC),
            ("unlearning.csv", unlearning_parts, _UNLEARNING_SPEC),
        ):
            if (folder / name).is_file():
                inputs.setdefault(_digest(folder / name), folder / name)
            parts.append(_read_csv(folder / name, spec))
        extras = [folder / "calibration.csv"]
        if (folder / "calibration").is_dir():
            extras += sorted((folder / "calibration").glob("*.csv"))
        if (folder / "prototypes").is_dir():
            extras += sorted((folder / "prototypes").glob("*.png"))
        # Calibration rows carry no key and may repeat legitimately within a file, so a copy
        # (like a copied picture) is recognised by its whole content instead of row by row.
        for path in filter(Path.is_file, extras):
            digest = _digest(path)
            if digest in inputs:
                continue
            inputs[digest] = path
            if path.suffix == ".png":
                prototypes.append(path)
            else:
                calibration_parts.append(_read_csv(path, _CALIBRATION_SPEC))
    notes: list[str] = []
    attacks = _merge(attack_parts, _ATTACK_SPEC, ATTACK_KEY, "attack", notes)
    unlearning = _merge(unlearning_parts, _UNLEARNING_SPEC, UNLEARNING_KEY, "unlearning", notes)
    calibration = _merge(calibration_parts, _CALIBRATION_SPEC, None, None, notes)
    if attacks.empty and unlearning.empty:
        where = ", ".join(str(f) for f in unique)
        raise LabelleakError(
            f"no results in {where}: attacks.csv and unlearning.csv are missing or have no rows; "
            "run `labelleak run CONFIG --out FOLDER` first"
        )
    num_classes = _num_classes(attacks, unlearning)
    attacks = _with_forget_sizes(attacks, num_classes)
    fingerprint = content_hash(sorted(f"{d} {p.resolve()}" for d, p in inputs.items()))
    return Results(
        unique, attacks, unlearning, calibration, prototypes, num_classes, notes, fingerprint
    )


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]
    optional: dict[str, str]  # column -> value when absent
    floats: tuple[str, ...] = ()  # numbers; empty or nan allowed (an unmeasured time)
    strict: tuple[str, ...] = ()  # numbers that must be present
    binary: tuple[str, ...] = ()  # 0/1 (also true/false)
    integers: tuple[str, ...] = ()
    class_sets: tuple[str, ...] = ()  # "none" or class ids joined by "+"
    texts: tuple[str, ...] = ()  # must not be empty


_ATTACK_SPEC = _Spec(
    required=ATTACK_COLUMNS,
    # Results written before defences existed are undefended.
    optional={"attacker_classes": "", "defence": "none"},
    floats=("queries", "seconds"),
    binary=("success",),
    integers=("seed",),
    class_sets=("forgotten", "predicted"),
    texts=("dataset", "method", "attack", "rule"),
)
_UNLEARNING_SPEC = _Spec(
    required=UNLEARNING_COLUMNS,
    optional={**dict.fromkeys(ORIGINAL_COLUMNS, "nan"), "defence": "none"},
    floats=("seconds", *ORIGINAL_COLUMNS),
    strict=("forget_acc", "retain_acc", "test_acc"),
    integers=("seed",),
    class_sets=("forgotten",),
    texts=("dataset", "method"),
)
_CALIBRATION_SPEC = _Spec(
    required=CALIBRATION_COLUMNS,
    optional={},
    strict=("score",),
    binary=("forgotten",),
    texts=("dataset", "attack"),
)


def _read_csv(path: Path, spec: _Spec) -> pd.DataFrame:
    """Read and check one CSV; a missing or empty file gives an empty table."""
    columns = [*spec.required, *spec.optional]
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=columns)
    try:
        # Strings throughout: class sets such as "3" or "2+7" must not become numbers.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=columns)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        reason = " ".join(str(error).split())
        raise LabelleakError(
            f"{path} is not a readable CSV ({reason}); fix or delete it and rerun `labelleak run`"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in spec.required if c not in frame.columns]
    if missing:
        raise LabelleakError(
            f"{path} lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(spec.required)} (the header `labelleak run` writes)"
        )
    for column, default in spec.optional.items():
        if column not in frame.columns:
            frame[column] = default
    frame = frame[columns].fillna("")  # a short row leaves NaN even with keep_default_na=False
    frame = frame.apply(lambda column: column.str.strip())
    for column in spec.texts:
        _check(path, frame, column, frame[column] != "", "a name")
    for column in spec.class_sets:
        valid = frame[column].str.fullmatch(rf"{NOTHING}|\d+(\+\d+)*")
        _check(path, frame, column, valid, f"'{NOTHING}' or class ids joined by '+'")
    for column in spec.integers:
        _check(path, frame, column, frame[column].str.fullmatch(r"-?\d+"), "an integer")
        frame[column] = frame[column].astype(int)
    for column in spec.binary:
        spellings = {"true": "1", "false": "0", "1.0": "1", "0.0": "0"}
        lowered = frame[column].str.lower().replace(spellings)
        _check(path, frame, column, lowered.isin(["0", "1"]), "0 or 1")
        frame[column] = lowered.astype(int)
    for column in (*spec.floats, *spec.strict):
        values = pd.to_numeric(frame[column], errors="coerce")
        blank = frame[column].str.lower().isin(["", "nan"])
        valid = values.notna() | (blank if column in spec.floats else False)
        _check(path, frame, column, valid, "a number")
        frame[column] = values.astype(float)
    return frame


def _check(path: Path, frame: pd.DataFrame, column: str, valid: pd.Series, wanted: str) -> None:
    bad = ~valid.fillna(False).astype(bool)
    if bad.any():
        index = int(bad.to_numpy().argmax())
        line = index + 2  # the header is line 1
        raise LabelleakError(
            f"{path} line {line}: column {column} is {frame[column].iloc[index]!r}, expected "
            f"{wanted}; fix the row or rerun `labelleak run` to rewrite the file"
        )


def _merge(
    parts: list[pd.DataFrame],
    spec: _Spec,
    key: list[str] | None,
    what: str | None,
    notes: list[str],
) -> pd.DataFrame:
    """Concatenate; with a ``key``, count a row read twice (or a cell merged twice) once."""
    columns = [*spec.required, *spec.optional]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(parts, ignore_index=True)
    if key is None:
        return frame
    before = len(frame)
    frame = frame.drop_duplicates(ignore_index=True)
    exact = before - len(frame)
    if exact:
        notes.append(f"{exact} {what} row(s) read twice (identical) were counted once.")
    repeated = frame.duplicated(subset=key)
    if repeated.any():
        notes.append(
            f"{int(repeated.sum())} {what} row(s) repeated a cell already read with other "
            "values (e.g. timings from another machine); the first was kept."
        )
        frame = frame[~repeated].reset_index(drop=True)
    return frame


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def class_set(text: str) -> frozenset[int]:
    """``"2+7"`` -> ``{2, 7}``; ``"none"`` (or an empty string) -> the empty set."""
    if text in (NOTHING, ""):
        return frozenset()
    return frozenset(int(c) for c in text.split("+"))


def _num_classes(attacks: pd.DataFrame, unlearning: pd.DataFrame) -> dict[str, int]:
    """Classes per dataset: the registry's count where the dataset is known, else the largest id
    seen plus one (a dataset the CSVs alone describe)."""
    from labelleak.data import DATASETS

    seen: dict[str, int] = {}
    for frame, columns in (
        (attacks, ("forgotten", "predicted", "attacker_classes")),
        (unlearning, ("forgotten",)),
    ):
        for column in columns:
            for dataset, text in zip(frame["dataset"], frame[column], strict=True):
                ids = class_set(text)
                if ids:
                    seen[dataset] = max(seen.get(dataset, 0), max(ids) + 1)
                else:
                    seen.setdefault(dataset, 0)
    counts = {}
    for dataset, largest in seen.items():
        spec = DATASETS.get(dataset)
        counts[dataset] = max(largest, spec.num_classes if spec is not None else 0)
    return counts


def _with_forget_sizes(attacks: pd.DataFrame, num_classes: dict[str, int]) -> pd.DataFrame:
    """Add ``control`` and ``k``, the number of classes each target's attacker looks for.

    A control's CSV truth is ``none``; its knowledge is that of the unlearned targets with the
    same ``attacker_classes`` (same dataset and seed), so it takes their forget-set size. Where
    no such target was attacked, the classes missing from the attacker's data are the gap.
    """
    attacks = attacks.copy()
    attacks["control"] = attacks["method"] == CONTROL
    if attacks.empty:
        attacks["k"] = pd.Series(dtype=int)
        return attacks
    sizes = attacks["forgotten"].map(lambda text: len(class_set(text)))
    unlearned = attacks[~attacks["control"]]
    knowledge = ["dataset", "seed", "attacker_classes"]
    by_knowledge = (
        pd.DataFrame({**{c: unlearned[c] for c in knowledge}, "k": sizes[~attacks["control"]]})
        .drop_duplicates()
        .groupby(knowledge)["k"]
        .agg(lambda values: int(values.iloc[0]) if values.nunique() == 1 else 0)
        .to_dict()
    )
    for index in attacks.index[attacks["control"]]:
        row = attacks.loc[index]
        matched = by_knowledge.get((row["dataset"], row["seed"], row["attacker_classes"]), 0)
        if not matched and row["attacker_classes"]:
            gap = num_classes.get(row["dataset"], 0) - len(class_set(row["attacker_classes"]))
            matched = max(gap, 0)
        sizes.loc[index] = matched
    attacks["k"] = sizes.astype(int)
    return attacks


# ---------------------------------------------------------------------------------------------
# Ordering and formatting


def ordered_methods(methods: Iterable[str], with_control: bool = True) -> list[str]:
    """The oracle and the paper's methods first, other methods next, the control last."""
    present = list(dict.fromkeys(methods))
    known = [m for m in METHOD_ORDER if m in present]
    others = [m for m in present if m not in METHOD_ORDER and m != CONTROL]
    tail = [CONTROL] if with_control and CONTROL in present else []
    return known + others + tail


def ordered_attacks(attacks: Iterable[str]) -> list[str]:
    """Main attacks in the paper's order, unknown names next (they count as attacks), then the
    baselines."""
    present = list(dict.fromkeys(attacks))
    main = [a for a in MAIN_ATTACKS if a in present]
    unknown = [a for a in present if a not in MAIN_ATTACKS and a not in BASELINES]
    return main + unknown + [b for b in BASELINES if b in present]


def is_baseline(attack: str) -> bool:
    """Whether ``attack`` is one of the trivial baselines (anything unknown counts as an attack)."""
    return attack in BASELINES


def method_label(method: str, wrap: bool = False) -> str:
    """Row label of a target method in the tables (``wrap``: split the control's over two lines,
    for a plot's tick)."""
    if method == CONTROL:
        return "original (control:" + ("\n" if wrap else " ") + "names nothing)"
    if method == ORACLE:
        return "retrain (oracle)"
    return method


def format_rate(successes: int, trials: int) -> str:
    """``"96.7 [88.6, 99.1] n=60"``: success rate in % with its 95% Wilson interval and n."""
    if trials == 0:
        return "n/a"
    low, high = wilson_interval(successes, trials)
    return f"{100 * successes / trials:.1f} [{100 * low:.1f}, {100 * high:.1f}] n={trials}"


def chance_level(num_classes: int, k: int) -> float:
    """Exact-identification rate of naming ``k`` of ``num_classes`` classes uniformly at random."""
    if k <= 0 or k > num_classes:
        return float("nan")
    return 1.0 / math.comb(num_classes, k)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table, padded so the raw text reads too; numbers align right."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    cells = [[c.replace("|", "\\|") for c in row] for row in cells]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(headers))]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells[1:]) and len(cells) > 1
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |"]
    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    lines.append("| " + " | ".join(rule) + " |")
    for row in cells[1:]:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("| " + " | ".join(padded) + " |")
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    head = text.split(" ")[0].lstrip("<+-")
    return head in ("–", "n/a") or head.replace(".", "", 1).isdigit()


# ---------------------------------------------------------------------------------------------
# Tables


def success_table(attacks: pd.DataFrame, attack: str, rule: str, k: int) -> str:
    """Paper-style table for one attack, rule and forget-set size ``k``: rows are the target
    methods (the control last), columns the datasets, cells the exact-identification rate in %
    with its 95% Wilson interval and the number of targets."""
    frame = attacks[(attacks["attack"] == attack) & (attacks["rule"] == rule) & (attacks["k"] == k)]
    datasets = list(dict.fromkeys(frame["dataset"]))
    counts = frame.groupby(["method", "dataset"])["success"].agg(["sum", "size"])
    rows = []
    for method in ordered_methods(frame["method"]):
        row: list[object] = [method_label(method)]
        for dataset in datasets:
            if (method, dataset) in counts.index:
                hits, n = counts.loc[(method, dataset)]
                row.append(format_rate(int(hits), int(n)))
            else:
                row.append("–")
        rows.append(row)
    return markdown_table(["target method", *datasets], rows)


def best_rule(frame: pd.DataFrame, balance_sizes: bool = False) -> str:
    """The rule with the highest success on unlearned targets in ``frame`` (one attack's rows).

    With ``balance_sizes`` the success is averaged per forget-set size first, so that the many
    single-class targets do not pick a rule (such as ``top``) that cannot name several classes.
    Ties go to the rule with fewer false alarms on the controls, then the first listed. The
    choice looks at the targets' truth, so a best-rule rate is optimistic for the attacker.
    """
    rules = list(dict.fromkeys(frame["rule"]))
    unlearned_rows = frame[~frame["control"]]
    if balance_sizes:
        unlearned = unlearned_rows.groupby(["rule", "k"])["success"].mean().groupby("rule").mean()
    else:
        unlearned = unlearned_rows.groupby("rule")["success"].mean()
    control = frame[frame["control"]].groupby("rule")["success"].mean()
    return max(
        rules,
        key=lambda r: (unlearned.get(r, -1.0), control.get(r, -1.0), -rules.index(r)),
    )


def best_rule_table(attacks: pd.DataFrame, dataset: str, k: int) -> str:
    """Every attack and baseline with its best rule for one dataset and forget-set size: rows
    are attacks (then baselines), columns the target methods, the rate over all unlearned
    targets, and what an attack adds over the best baseline of no more knowledge, in points."""
    frame = attacks[(attacks["dataset"] == dataset) & (attacks["k"] == k)]
    methods = ordered_methods(frame["method"])
    pooled: dict[str, float] = {}
    rows = []
    baseline_rates = {
        b: frame[(frame["attack"] == b) & ~frame["control"]].groupby("rule")["success"].mean().max()
        for b in set(frame["attack"])
        if is_baseline(b)
    }
    for attack in ordered_attacks(frame["attack"]):
        rows_of = frame[frame["attack"] == attack]
        rule = best_rule(rows_of)
        chosen = rows_of[rows_of["rule"] == rule]
        row: list[object] = [f"{attack} · {rule}" + (" (baseline)" if is_baseline(attack) else "")]
        for method in methods:
            cell = chosen[chosen["method"] == method]["success"]
            row.append(format_rate(int(cell.sum()), len(cell)) if len(cell) else "–")
        unlearned = chosen[~chosen["control"]]["success"]
        row.append(format_rate(int(unlearned.sum()), len(unlearned)) if len(unlearned) else "–")
        pooled[attack] = float(unlearned.mean()) if len(unlearned) else float("nan")
        comparable = [r for b, r in baseline_rates.items() if needs_no_more(b, attack)]
        gain = 100 * (pooled[attack] - max(comparable, default=float("nan")))
        row.append("–" if is_baseline(attack) or math.isnan(gain) else f"{gain:+.1f}")
        rows.append(row)
    headers = ["attack · best rule", *[_short_label(m) for m in methods], "all unlearned"]
    return markdown_table([*headers, "vs best baseline, same knowledge (pts)"], rows)


def needs_no_more(baseline: str, attack: str) -> bool:
    """Whether ``baseline`` needs no knowledge ``attack`` lacks (by the registered attacks).

    White-box access implies query access; shadow runs are the attacker's own work and do not
    count. Names that are not registered are compared with every baseline.
    """
    from labelleak.attacks import ATTACKS

    if baseline not in ATTACKS or attack not in ATTACKS:
        return True

    def knowledge(name: str) -> set[str]:
        kinds = set(ATTACKS.get_class(name).requires) - {"shadows"}
        return kinds | {"query"} if "white_box" in kinds else kinds

    return knowledge(baseline) <= knowledge(attack)


def _short_label(method: str) -> str:
    return {CONTROL: "original (control)", ORACLE: "retrain (oracle)"}.get(method, method)


def headline_table(attacks: pd.DataFrame, dataset: str, k: int) -> str:
    """A compact screen table: attacks with their best rule against methods, rates in % only."""
    frame = attacks[(attacks["dataset"] == dataset) & (attacks["k"] == k)]
    methods = ordered_methods(frame["method"])
    rows = []
    for attack in ordered_attacks(frame["attack"]):
        rows_of = frame[frame["attack"] == attack]
        rule = best_rule(rows_of)
        chosen = rows_of[rows_of["rule"] == rule]
        row: list[object] = [f"{attack} · {rule}"]
        for method in methods:
            cell = chosen[chosen["method"] == method]["success"]
            row.append(f"{100 * cell.mean():.1f}" if len(cell) else "–")
        rows.append(row)
    sizes = frame.drop_duplicates(["method", "forgotten", "seed", "attacker_classes"])
    n = sizes.groupby("method").size()
    headers = [f"{_short_label(m)} n={n.get(m, 0)}" for m in methods]
    return markdown_table(["attack · best rule", *headers], rows)


def precision_recall_table(attacks: pd.DataFrame, dataset: str, num_classes: int) -> str:
    """Per-class precision/recall (in %) of the classes each attack and rule names, pooled over
    the unlearned targets of ``dataset``; "–" where a class was never named (precision) or never
    forgotten (recall)."""
    frame = attacks[(attacks["dataset"] == dataset) & ~attacks["control"]]
    rows = []
    for attack in ordered_attacks(frame["attack"]):
        of_attack = frame[frame["attack"] == attack]
        for rule in dict.fromkeys(of_attack["rule"]):
            chosen = of_attack[of_attack["rule"] == rule]
            hits = [0] * num_classes
            named = [0] * num_classes
            truths = [0] * num_classes
            pairs = zip(chosen["forgotten"], chosen["predicted"], strict=True)
            for truth_text, named_text in pairs:
                truth, guess = class_set(truth_text), class_set(named_text)
                for c in guess:
                    if c < num_classes:
                        named[c] += 1
                        hits[c] += c in truth
                for c in truth:
                    if c < num_classes:
                        truths[c] += 1
            cells = [_pr(hits[c], named[c], truths[c]) for c in range(num_classes)]
            total = _pr(sum(hits), sum(named), sum(truths))
            rows.append([f"{attack} · {rule}", len(chosen), total, *cells])
    headers = ["attack · rule", "targets", "all classes", *[str(c) for c in range(num_classes)]]
    return markdown_table(headers, rows)


def _pr(hits: int, named: int, truths: int) -> str:
    precision = f"{100 * hits / named:.0f}" if named else "–"
    recall = f"{100 * hits / truths:.0f}" if truths else "–"
    return f"{precision}/{recall}"


def unlearning_summary(table: pd.DataFrame) -> str:
    """Mean forget/retain/test accuracy (in %) and seconds per (dataset, arch, method), Markdown.

    ``table`` has the columns of ``unlearning.csv``; the original model's accuracies (on the same
    splits, averaged over the forget sets) come first as their own row so the cost of unlearning
    is visible.
    """
    if table.empty:
        return "(no unlearned models)"
    grouped = table.groupby(["dataset", "arch", "method"], sort=False)
    summary = grouped.agg(
        n=("forgotten", "size"),
        forget_acc=("forget_acc", "mean"),
        retain_acc=("retain_acc", "mean"),
        test_acc=("test_acc", "mean"),
        seconds=("seconds", "mean"),
    ).reset_index()
    original_columns = [c for c in ORIGINAL_COLUMNS if c in table.columns]
    # The original's accuracies repeat on every method's row of a forget set: count them once.
    per_split = table.drop_duplicates(["dataset", "arch", "forgotten", "seed"])
    if len(original_columns) == len(ORIGINAL_COLUMNS) and per_split[original_columns].notna().any(
        axis=None
    ):
        originals = (
            per_split.groupby(["dataset", "arch"], sort=False)
            .agg(
                n=("forgotten", "size"),
                forget_acc=("original_forget_acc", "mean"),
                retain_acc=("original_retain_acc", "mean"),
                test_acc=("original_test_acc", "mean"),
            )
            .reset_index()
            .assign(method="(original)", seconds=float("nan"))
        )
        summary = pd.concat([originals, summary], ignore_index=True)
    order = {m: i for i, m in enumerate(["(original)", *ordered_methods(table["method"])])}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(table["dataset"]))}
    summary["order"] = summary["method"].map(order)
    summary["dataset_order"] = summary["dataset"].map(datasets)
    summary = summary.sort_values(["dataset_order", "arch", "order"], kind="stable")
    for column in ("forget_acc", "retain_acc", "test_acc"):
        summary[column] = (100 * summary[column]).round(1)
    summary["seconds"] = summary["seconds"].round(2)
    summary["method"] = summary["method"].map(lambda m: m if m != ORACLE else "retrain (oracle)")
    summary = summary[["dataset", "arch", "method", "n", "forget_acc", "retain_acc",
                       "test_acc", "seconds"]]  # fmt: skip
    headers = ["dataset", "arch", "method", "n", "forget acc %", "retain acc %",
               "test acc %", "unlearn s"]  # fmt: skip
    rows = [
        ["–" if isinstance(v, float) and math.isnan(v) else v for v in row]
        for row in summary.itertuples(index=False)
    ]
    return markdown_table(headers, rows)


def cost_table(attacks: pd.DataFrame, num_classes: dict[str, int]) -> str:
    """Wall seconds per attacked target and black-box queries per class, per dataset and attack.

    An attack's time and queries are per target (every rule decides from the same run), so rules
    are counted once; controls are included, as the attacker pays for them too.
    """
    target = ["dataset", "arch", "method", "forgotten", "seed", "attacker_classes", "attack"]
    runs = attacks.groupby(target, sort=False)[["seconds", "queries"]].max().reset_index()
    runs["per_class"] = runs["queries"] / runs["dataset"].map(num_classes).clip(lower=1)
    rows = []
    for dataset in dict.fromkeys(runs["dataset"]):
        of_dataset = runs[runs["dataset"] == dataset]
        for attack in ordered_attacks(of_dataset["attack"]):
            chosen = of_dataset[of_dataset["attack"] == attack]
            seconds = chosen["seconds"].dropna()
            per_class = chosen["per_class"].dropna()
            rows.append(
                [
                    dataset,
                    attack + (" (baseline)" if is_baseline(attack) else ""),
                    len(chosen),
                    _seconds(seconds.mean()) if len(seconds) else "–",
                    f"{seconds.sum():.1f}" if len(seconds) else "–",
                    f"{per_class.median():.0f}" if len(per_class) else "–",
                    f"{per_class.max():.0f}" if len(per_class) else "–",
                ]
            )
    headers = ["dataset", "attack", "targets", "mean s / target", "total s",
               "queries / class (median)", "queries / class (max)"]  # fmt: skip
    return markdown_table(headers, rows)


def _seconds(value: float) -> str:
    return "<0.001" if value < 0.0005 else f"{value:.3f}"


def attack_summary(table: pd.DataFrame) -> str:
    """Exact-identification rate per (dataset, attack, rule) and target method, Markdown.

    Rows are (dataset, attack, rule); columns are the target methods, with the never-unlearned
    ``original`` last (there, "success" means naming nothing). Cells give the rate in % with its
    95% Wilson interval and the number of targets.
    """
    if table.empty:
        return "(no attack results)"
    methods = [m for m in dict.fromkeys(table["method"]) if m != "original"]
    if "original" in set(table["method"]):
        methods.append("original")
    rows = []
    for (dataset, attack, rule), group in table.groupby(["dataset", "attack", "rule"], sort=False):
        row = {"dataset": dataset, "attack": attack, "rule": rule}
        for method in methods:
            cell = group[group["method"] == method]
            row[method] = format_rate(int(cell["success"].sum()), len(cell))
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)
