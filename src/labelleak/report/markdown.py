"""``report.md``: the paper-style tables, baselines, costs and plots of one or several runs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import quote, unquote

from labelleak.defences import NO_DEFENCE
from labelleak.report.defences import defence_table, defences_of, tradeoff_plot
from labelleak.report.tables import (
    Results,
    best_rule_table,
    chance_level,
    cost_table,
    headline_table,
    is_baseline,
    load_results,
    ordered_attacks,
    ordered_methods,
    precision_recall_table,
    success_table,
    unlearning_summary,
)
from labelleak.utils import atomic_path, content_hash, write_text_atomic

REPORT_NAME = "report.md"
PLOTS_DIR = "plots"
#: Files this module writes under ``plots/``; others found there are left alone.
_OWN_PLOTS = ("heatmap-*.png", "success-vs-forgotten-*.png", "roc-*.png", "prototypes/*.png")

SECTIONS = {
    "summary": "1. Each attack beside the baselines and controls",
    "tables": "2. Exact identification per attack and rule",
    "classes": "3. Per-class precision and recall",
    "unlearning": "4. Unlearning quality",
    "cost": "5. Cost",
    "plots": "6. Plots",
}
#: Only in a report of a grid with defences.
DEFENCE_SECTION = "7. Defences"


def build_report(folders: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Read the results in ``folders`` and write ``out_dir/report.md`` with its plots.

    Several folders are merged (rows read twice count once). Nothing is written when the input
    is unusable: a :class:`~labelleak.errors.LabelleakError` says which folder or file and why.
    Returns the path of ``report.md``.
    """
    return write_report(load_results(folders), out_dir)


def write_report(results: Results, out_dir: str | Path) -> Path:
    """Write ``report.md`` and ``plots/`` for already loaded ``results``; return the report path.

    Every file is written under a temporary name and renamed, so a reader never sees half a
    report; plots a previous report made that no longer apply are removed.
    """
    out = Path(out_dir)
    path = out / REPORT_NAME
    stamp = f"<!-- labelleak report {_stamp(results, out)} -->"
    if _up_to_date(path, stamp):
        return path  # a warm rerun: the same inputs and code would draw the same report
    written: set[Path] = set()
    plots = _draw_plots(results, out, written)
    prototypes = _place_prototypes(results, out, written)
    _remove_stale_plots(out / PLOTS_DIR, written)
    text = render_markdown(results, out, plots, prototypes)
    write_text_atomic(path, f"{text}\n{stamp}\n")
    return path


def headline(results: Results) -> str:
    """The compact summary for a terminal: per dataset and forget-set size, every attack with its
    best rule against the target methods, rates in % (the report has the intervals)."""
    attacks = results.attacks
    if attacks.empty:
        return "no attack results; the report shows unlearning quality only"
    parts = []
    for dataset, size in _dataset_sizes(results):
        parts.append(
            f"{dataset}, {_size_words(size)}: exact identification, % of targets "
            f"(chance {_chance_text(results.num_classes[dataset], size)})\n"
        )
        parts.append(headline_table(attacks, dataset, size) + "\n")
    return "\n".join(parts).rstrip()


def render_markdown(
    results: Results,
    out: Path,
    plots: dict[str, list[tuple[str, Path]]],
    prototypes: list[tuple[str, Path]],
) -> str:
    """The Markdown text of the report; ``plots`` and ``prototypes`` are (caption, file) pairs."""
    full = results
    results = undefended(results)
    attacks = results.attacks
    defended = len(defences_of(full.unlearning if len(full.unlearning) else full.attacks)) > 1
    lines = ["# Label-leakage report", ""]
    lines += _overview(results)
    if defended:
        lines += [
            "Sections 1-6 are the undefended models (defence `none`); the defences are in "
            f"[{DEFENCE_SECTION}](#{_anchor(DEFENCE_SECTION)}).",
            "",
        ]
    lines += ["## Contents", ""]
    titles = [*SECTIONS.values(), *([DEFENCE_SECTION] if defended else [])]
    lines += [f"- [{title}](#{_anchor(title)})" for title in titles]
    lines.append("")
    if attacks.empty:
        lines += [f"## {SECTIONS[key]}\n\nNo attack results (attacks.csv is missing or empty).\n"
                  for key in ("summary", "tables", "classes")]  # fmt: skip
    else:
        lines += _summary_section(results)
        lines += _tables_section(results)
        lines += _classes_section(results)
    lines += [f"## {SECTIONS['unlearning']}", ""]
    lines += [
        "Mean accuracy on the test set, in %: `forget` over the forgotten classes' images, "
        "`retain` over the others, `test` over all; `n` models; `unlearn s` is the mean wall time "
        "of the unlearning. `(original)` is the never-unlearned model on the same splits.",
        "",
        unlearning_summary(results.unlearning),
        "",
    ]
    lines += [f"## {SECTIONS['cost']}", ""]
    if attacks.empty:
        lines += ["No attack results.", ""]
    else:
        lines += [
            "Wall time of one attack on one target (every rule decides from the same run; the "
            "attacker's shadow models, trained once per knowledge setting, are not charged), and "
            "the black-box queries it made per class of the dataset (0 for white-box attacks). "
            "Controls are counted: the attacker pays for them too.",
            "",
            cost_table(attacks, results.num_classes),
            "",
        ]
    lines += _plots_section(results, out, plots, prototypes)
    if defended:
        lines += _defences_section(full, out, plots)
    return "\n".join(lines).rstrip() + "\n"


def undefended(results: Results) -> Results:
    """``results`` restricted to the undefended models where a grid also holds defended ones
    (all of it where none is undefended)."""
    attacks, unlearning = results.attacks, results.unlearning
    has_control = (attacks["defence"] == NO_DEFENCE).any() or (
        unlearning["defence"] == NO_DEFENCE
    ).any()
    if not has_control:
        return results
    return replace(
        results,
        attacks=attacks[attacks["defence"] == NO_DEFENCE],
        unlearning=unlearning[unlearning["defence"] == NO_DEFENCE],
    )


def _defences_section(
    results: Results, out: Path, plots: dict[str, list[tuple[str, Path]]]
) -> list[str]:
    lines = [
        f"## {DEFENCE_SECTION}",
        "",
        "Per defence, over its unlearned models: mean forget and retained test accuracy (%), "
        "the retained accuracy's mean change against the same models undefended (points, "
        "paired by method, forget set and seed), and each attack's exact identification of a "
        "single forgotten class with its best rule on that defence (picked on the targets' "
        "truth: the attacker's most favourable rule), 95% Wilson interval and n.",
        "",
    ]
    for dataset in dict.fromkeys(results.unlearning["dataset"]):
        lines += [f"### {dataset}", ""]
        lines += [defence_table(results.attacks, results.unlearning, dataset), ""]
    lines += _images(plots.get("tradeoff", []), out)
    return lines


# ---------------------------------------------------------------------------------------------
# Sections


def _overview(results: Results) -> list[str]:
    attacks, unlearning = results.attacks, results.unlearning
    sources = ", ".join(f"`{folder}`" for folder in results.folders)
    try:
        package = f"labelleak {version('labelleak')}"
    except PackageNotFoundError:
        package = "labelleak"
    datasets = list(dict.fromkeys([*unlearning["dataset"], *attacks["dataset"]]))
    described = ", ".join(f"{d} ({results.num_classes.get(d, '?')} classes)" for d in datasets)
    lines = [f"Built by {package} from {sources}. Datasets: {described}.", ""]
    if not attacks.empty:
        targets = attacks.drop_duplicates(
            ["dataset", "arch", "method", "forgotten", "seed", "attacker_classes"]
        )
        controls = int(targets["control"].sum())
        methods = ", ".join(ordered_methods(targets["method"], with_control=False))
        seeds = ", ".join(str(s) for s in sorted(set(targets["seed"])))
        lines += [
            f"Attacked targets: {len(targets) - controls} unlearned models ({methods}) and "
            f"{controls} controls; seeds {seeds}; {attacks['attack'].nunique()} attacks and "
            f"baselines, {len(attacks)} (target, attack, rule) rows.",
            "",
            "**How to read.** Success is *exact identification*: the set of classes an attack "
            "names equals the forgotten set. Rates are % of targets with the 95% Wilson interval "
            "and `n`, the number of targets. `retrain (oracle)` is exact unlearning (a model "
            "trained without the classes). `original (control)` is the never-unlearned model "
            "attacked with the same knowledge: nothing was forgotten, so its success is how "
            "often the attack *names nothing* (100 minus the false-alarm rate). Baselines use "
            "the same knowledge as the attacks; see `labelleak attacks`.",
            "",
        ]
        unmatched = int((attacks["k"] == 0).sum())
        if unmatched:
            lines += [
                f"{unmatched} control rows could not be matched to a forget-set size (their "
                "knowledge matches no unlearned target) and are left out of the tables.",
                "",
            ]
    lines += [f"Note: {note}" for note in results.notes]
    return [*lines, ""] if results.notes else lines


def _summary_section(results: Results) -> list[str]:
    lines = [
        f"## {SECTIONS['summary']}",
        "",
        "Each attack and baseline with its best rule: the rule with the highest success on the "
        "unlearned targets, chosen knowing their truth, so these rates are optimistic for the "
        "attacker ([section 2](#" + _anchor(SECTIONS["tables"]) + ") has every rule). "
        "A `top` rule is told how many classes were forgotten and names that many; every other "
        "rule decides how many itself, and only those can be right on a control. "
        "`all unlearned` pools the unlearned targets of every method; `vs best baseline` is "
        "what an attack adds, in percentage points, over the pooled rate of the best baseline "
        "that needs no knowledge the attack lacks (e.g. `probe-drop`, which needs the original "
        "model, is compared with no attack here; white-box access includes query access).",
        "",
    ]
    for dataset, size in _dataset_sizes(results):
        lines += [
            f"### {dataset}, {_size_words(size)}",
            "",
            f"Chance: {_chance_text(results.num_classes[dataset], size)}.",
            "",
            best_rule_table(results.attacks, dataset, size),
            "",
        ]
    return lines


def _tables_section(results: Results) -> list[str]:
    attacks = results.attacks[results.attacks["k"] > 0]
    lines = [
        f"## {SECTIONS['tables']}",
        "",
        "Rows are the target methods (the control last), columns the datasets; a cell is the "
        "exact-identification rate in % with its 95% Wilson interval and the number of targets. "
        "Separate tables for one and for several forgotten classes. The baselines' tables are "
        "folded; click to open.",
        "",
    ]
    for attack in ordered_attacks(attacks["attack"]):
        of_attack = attacks[attacks["attack"] == attack]
        body: list[str] = []
        for rule in dict.fromkeys(of_attack["rule"]):
            body += [f"#### {attack} · {rule}", ""]
            of_rule = of_attack[of_attack["rule"] == rule]
            for size in sorted(set(of_rule["k"])):
                chance = ", ".join(
                    _chance_text(results.num_classes[d], size)
                    for d in dict.fromkeys(of_rule[of_rule["k"] == size]["dataset"])
                )
                body += [
                    f"**{_size_words(size).capitalize()}** (chance {chance})",
                    "",
                    success_table(of_rule, attack, rule, size),
                    "",
                ]
        if is_baseline(attack):
            lines += [f"### {attack} (baseline)", "", "<details><summary>tables</summary>", ""]
            lines += [*body, "</details>", ""]
        else:
            lines += [f"### {attack}", "", *body]
    return lines


def _classes_section(results: Results) -> list[str]:
    lines = [
        f"## {SECTIONS['classes']}",
        "",
        "For each class, `P/R`: the precision (of the times an attack named the class, % it was "
        "forgotten) and recall (of the times it was forgotten, % the attack named it), pooled "
        "over the unlearned targets of every method and forget-set size; `–` where the class "
        "was never named or never forgotten. `all classes` pools the counts.",
        "",
    ]
    for dataset in dict.fromkeys(results.attacks["dataset"]):
        lines += [
            f"### {dataset}",
            "",
            precision_recall_table(results.attacks, dataset, results.num_classes[dataset]),
            "",
        ]
    return lines


def _plots_section(
    results: Results,
    out: Path,
    plots: dict[str, list[tuple[str, Path]]],
    prototypes: list[tuple[str, Path]],
) -> list[str]:
    lines = [f"## {SECTIONS['plots']}", ""]
    if results.attacks.empty:
        lines += ["No attack results to plot.", ""]
    else:
        lines += [
            "### Success rate per method and dataset",
            "",
            "One heatmap per attack, for its best rule (highest success averaged over the "
            "forget-set sizes, on the unlearned targets); the control row's success means naming "
            "nothing.",
            "",
        ]
        lines += _images(plots["heatmap"], out)
        lines += ["### Success against the number of forgotten classes", ""]
        lines += _images(plots["by_size"], out)
    lines += ["### ROC curves behind the Youden thresholds", ""]
    if plots["roc"]:
        lines += [
            "From the attacker's shadow runs (calibration scores): one point per (shadow run, "
            "class); the Youden point maximises TPR − FPR.",
            "",
            *_images(plots["roc"], out),
        ]
    else:
        lines += [
            "No calibration scores found (`calibration.csv` or `calibration/*.csv`): no ROC plot.",
            "",
        ]
    lines += ["### Inversion prototypes", ""]
    if prototypes:
        lines += [
            "Each class's reconstructed prototype with the target's top predictions; the "
            "forgotten class is framed in red.",
            "",
            *_images(prototypes, out),
        ]
    else:
        lines += ["No prototype pictures (no inversion attack was run).", ""]
    return lines


def _images(items: list[tuple[str, Path]], out: Path) -> list[str]:
    lines = []
    for caption, path in items:
        link = quote(_link(path, out))
        lines += [f"**{caption}**", "", f"![{caption}]({link})", ""]
    return lines


# ---------------------------------------------------------------------------------------------
# Files


def _draw_plots(results: Results, out: Path, written: set[Path]) -> dict[str, list]:
    from labelleak.report.plots import roc_curves, success_by_size, success_heatmap

    plots: dict[str, list[tuple[str, Path]]] = {"heatmap": [], "by_size": [], "roc": []}
    folder = out / PLOTS_DIR
    full, results = results, undefended(results)
    attacks = results.attacks[results.attacks["k"] > 0]
    if not attacks.empty:
        for attack in ordered_attacks(attacks["attack"]):
            path = success_heatmap(attacks, attack, folder / f"heatmap-{_slug(attack)}.png")
            plots["heatmap"].append((attack + (" (baseline)" if is_baseline(attack) else ""), path))
        for dataset in dict.fromkeys(attacks["dataset"]):
            if (~attacks[attacks["dataset"] == dataset]["control"]).any():
                path = success_by_size(
                    attacks,
                    dataset,
                    results.num_classes[dataset],
                    folder / f"success-vs-forgotten-{_slug(dataset)}.png",
                )
                plots["by_size"].append((dataset, path))
    plots["tradeoff"] = []
    every = full.attacks
    for dataset in dict.fromkeys(every[every["k"] == 1]["dataset"]):
        if len(defences_of(every[every["dataset"] == dataset])) > 1:
            path = tradeoff_plot(
                every,
                full.unlearning,
                dataset,
                full.num_classes[dataset],
                folder / f"defences-{_slug(dataset)}.png",
            )
            plots["tradeoff"].append((f"{dataset}: defences' cost and protection", path))
    calibration = results.calibration
    for dataset in dict.fromkeys(calibration["dataset"]):
        path = roc_curves(calibration, dataset, folder / f"roc-{_slug(dataset)}.png")
        plots["roc"].append((dataset, path))
    written.update(path.resolve() for items in plots.values() for _, path in items)
    return plots


def _stamp(results: Results, out: Path) -> str:
    """What determines the report: its inputs, where it goes (links), this code, matplotlib."""
    sources = sorted(Path(__file__).parent.glob("*.py"))
    code = [hashlib.sha256(source.read_bytes()).hexdigest() for source in sources]
    try:
        plotting = version("matplotlib")
    except PackageNotFoundError:
        plotting = "?"
    return content_hash([results.fingerprint, str(out.resolve()), code, plotting])


def _up_to_date(path: Path, stamp: str) -> bool:
    """Whether ``path`` is a report with this ``stamp`` whose linked pictures all exist."""
    if not path.is_file():
        return False
    text = path.read_text()
    if not text.rstrip().endswith(stamp):
        return False
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    return all((path.parent / unquote(link)).is_file() for link in links)


def _place_prototypes(results: Results, out: Path, written: set[Path]) -> list[tuple[str, Path]]:
    """Link prototype pictures already inside ``out``; copy the others to plots/prototypes/."""
    placed: list[tuple[str, Path]] = []
    taken: set[str] = set()
    root = out.resolve()
    for picture in results.prototypes:
        caption = picture.stem
        if picture.resolve().is_relative_to(root):
            placed.append((caption, picture))
            continue
        name, copies = picture.name, 1
        while name in taken:
            # Two runs drew the same (dataset, method) differently (identical copies were
            # dropped when reading): keep both, the later one numbered.
            copies += 1
            name = f"{picture.stem}-{copies}{picture.suffix}"
            caption = f"{picture.stem} ({picture.parent.parent})"
        taken.add(name)
        target = out / PLOTS_DIR / "prototypes" / name
        with atomic_path(target) as tmp:
            shutil.copyfile(picture, tmp)
        written.add(target.resolve())
        placed.append((caption, target))
    return placed


def _remove_stale_plots(folder: Path, written: set[Path]) -> None:
    if not folder.is_dir():
        return
    for pattern in _OWN_PLOTS:
        for path in folder.glob(pattern):
            if path.resolve() not in written:
                path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _dataset_sizes(results: Results) -> list[tuple[str, int]]:
    attacks = results.attacks[results.attacks["k"] > 0]
    pairs = attacks[["dataset", "k"]].drop_duplicates()
    order = {d: i for i, d in enumerate(dict.fromkeys(attacks["dataset"]))}
    return sorted(((d, int(k)) for d, k in pairs.itertuples(index=False)),
                  key=lambda p: (order[p[0]], p[1]))  # fmt: skip


def _size_words(size: int) -> str:
    return "one forgotten class" if size == 1 else f"{size} forgotten classes"


def _chance_text(num_classes: int, size: int) -> str:
    rate = chance_level(num_classes, size)
    if size == 1:
        return f"naming 1 of {num_classes} classes at random is right {100 * rate:.1f}%"
    return f"a random set of {size} of {num_classes} classes is right {100 * rate:.2f}%"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "unnamed"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _link(path: Path, out: Path) -> str:
    relative = os.path.relpath(Path(path).resolve(), Path(out).resolve())
    return "" if relative == "." else relative.replace(os.sep, "/")
