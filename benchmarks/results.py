"""Rebuild docs/results.md (and the README's headline tables) from benchmark result folders.

No number in those documents is typed by hand: each table is rendered here from the CSVs a
benchmark wrote. Results folders (``results/``) are not kept in git and may not outlive a
machine, so ``archive`` copies what the tables need into ``docs/data/`` (gzipped CSVs, with the
command, date and code version that made them), and ``render`` builds the documents from there.

    .venv/bin/python benchmarks/results.py archive [--results results] [--data docs/data]
        [--only NAME] [--merge]
    .venv/bin/python benchmarks/results.py render [--data docs/data] [--out docs/results.md]

A section whose data is not archived says so and gives the command that makes it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from bench_attacks import compact_table, unlearning_targets
from bench_defences import defence_headline, defence_tables
from bench_neg_grad_margin import ATTACK_COLUMNS as MARGIN_COLUMNS
from bench_neg_grad_margin import attack_rates, unlearning_costs
from bench_query_budget import budget_table
from bench_query_budget import summary as summary_by_budget
from common import ROOT, with_sizes

from labelleak.defences import NO_DEFENCE
from labelleak.report import attack_summary, format_rate, load_results, unlearning_summary
from labelleak.report.tables import (
    best_rule,
    best_rule_table,
    ordered_attacks,
    ordered_methods,
)
from labelleak.utils import write_text_atomic

DATA = ROOT / "docs" / "data"
META = "meta.json"


@dataclass(frozen=True)
class Section:
    """One benchmark's part of docs/results.md.

    ``source`` is the results folder (under ``--results``) holding ``files``; ``render`` turns
    the folder of archived files into Markdown.
    """

    name: str
    title: str
    command: str
    source: str
    files: tuple[str, ...]
    render: Callable[[Path], str]
    intro: str = ""
    #: The README's compact table (default: :func:`headline`, a grid's best rules).
    summary: Callable[[Path], str] | None = None
    #: Files archived and rendered when the run made them (a benchmark run without a phase).
    optional: tuple[str, ...] = ()
    #: The column ``archive --merge`` replaces rows by (the defences of a partial rerun), and
    #: the value whose rows every run must hold alike (the undefended control, which the kept
    #: rows are compared with).
    merge_by: str | None = None
    merge_control: str = NO_DEFENCE


def grid_tables(folder: Path) -> str:
    """Unlearning quality, the unlearning targets, the best-rule tables per forget-set size and
    every rule's compact row, for one dataset's grid."""
    results = load_results([folder])
    attacks, unlearning = results.attacks, results.unlearning
    (dataset,) = set(attacks["dataset"])
    parts = [
        "Unlearning (test accuracy in %, means over the targets; `(original)` is the model "
        "before unlearning):",
        unlearning_summary(unlearning),
        "Against issue 18's targets (forget test accuracy at most 5%, retained within 3 points "
        "of the original's), per method over every target:",
        unlearning_targets(unlearning),
    ]
    for k, label in ((1, "one forgotten class"), (2, "two forgotten classes")):
        if (attacks["k"] == k).any():
            parts += [
                f"Exact identification, {label}: each attack and baseline with its best rule "
                "(chosen on the targets' truth, so optimistic for the attacker), % [95% Wilson "
                "interval] n targets; the original column is how often it is rightly left "
                "alone:",
                best_rule_table(attacks, dataset, k),
            ]
    parts += [
        "Every rule, all methods pooled (worst method on one class; the original rightly "
        "left alone; wall seconds per target; black-box queries per class):",
        compact_table(attacks.drop(columns=["k", "control"])),
    ]
    for k, label in ((1, "one forgotten class"), (2, "two forgotten classes")):
        if (attacks["k"] == k).any():
            parts += [
                f"Every rule on every method, {label} (the original column: rightly left alone):",
                attack_summary(attacks[attacks["k"] == k].drop(columns=["k", "control"])),
            ]
    return "\n\n".join(parts)


def headline(folder: Path) -> str:
    """The README's compact table for one dataset's grid: per attack, its ``top`` (told how
    many classes were forgotten) and its best rule that decides the count itself (best over both
    forget-set sizes), each on one and two forgotten classes over every method, and how often
    that set rule leaves the never-unlearned original alone."""
    attacks = load_results([folder]).attacks
    rows = []
    for attack in ordered_attacks(attacks["attack"]):
        frame = with_sizes(attacks[attacks["attack"] == attack])
        row = [attack]
        set_rules = frame[frame["rule"] != "top"]
        for rule, sizes in (("top", (1, 2)), (None, (1, 2, 0))):
            if rule is None:
                if set_rules.empty:
                    row += ["-"] * (len(sizes) + 1)
                    continue
                rule = best_rule(set_rules, balance_sizes=True)
                row.append(rule)
            chosen = frame[frame["rule"] == rule]
            for size in sizes:
                picked = chosen[chosen["size"] == size]["success"]
                row.append(format_rate(int(picked.sum()), len(picked)) if len(picked) else "-")
        rows.append(row)
    headers = ["attack", "top, 1 class", "top, 2 classes", "best set rule", "1 class",
               "2 classes", "original left alone"]  # fmt: skip
    return pd.DataFrame(rows, columns=headers).to_markdown(index=False)


def audit_table(folder: Path) -> str:
    """The audit benchmark's rows (the original first, then the methods in the report's
    order), and how many verdicts were right."""
    table = pd.read_csv(folder / "audits.csv", dtype=str)
    order = {m: i for i, m in enumerate(["original", *ordered_methods(table["model"], False)])}
    table = table.sort_values("model", key=lambda column: column.map(order), kind="stable")
    right = int((table["right"] == "True").sum())
    cold = pd.read_csv(folder / "cold.csv")["wall s"].iloc[0]
    return (
        table.to_markdown(index=False)
        + f"\n\nRight verdicts: {right} of {len(table)}; median wall time "
        f"{pd.to_numeric(table['wall s']).median():.1f} s with the null models and their "
        f"outcomes cached, {cold:.1f} s for the original's audit from an empty cache (20 null "
        "LeNet-5 trained on the 1,000-image reserve, then attacked)."
    )


def runs_table(folder: Path) -> str:
    """A timing benchmark's ``runs.csv`` as it is."""
    return pd.read_csv(folder / "runs.csv", dtype=str).to_markdown(index=False)


def budget_tables(folder: Path) -> str:
    """invert-black and noise-histogram against the query budget, for each archived dataset."""
    parts = []
    for path in sorted(folder.glob("*.csv")):
        frame = pd.read_csv(path, dtype={"forgotten": str, "predicted": str})
        parts += [f"{path.stem}:", budget_table(frame), summary_by_budget(frame)]
    return "\n\n".join(parts)


def margin_tables(folder: Path) -> str:
    """neg-grad at each margin: what unlearning cost, and each attack's rates."""
    costs, rates = {}, {}
    margins = sorted(folder.glob("margin-*"), key=lambda p: float(p.name.split("-", 1)[1]))
    for path in margins:
        label = path.name.replace("-", " ")
        costs[label] = unlearning_costs(pd.read_csv(path / "unlearning.csv"))
        attacks = pd.read_csv(path / "attacks.csv", dtype={"forgotten": str, "predicted": str})
        rates[label] = attack_rates(attacks)
    parts = ["Unlearning cost per margin:", pd.DataFrame(costs).to_markdown()]
    for column in MARGIN_COLUMNS[:2]:
        table = pd.DataFrame({label: frame[column] for label, frame in rates.items()})
        table["original: names nothing"] = next(iter(rates.values()))[MARGIN_COLUMNS[2]]
        parts += [f"{column} forgotten by neg-grad:", table.to_markdown()]
    return "\n\n".join(parts)


GRID_COMMAND = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_attacks.py --only {dataset} --seeds 0 1 2 "
    "--pairs 10 --subsample 1000 --attacker-classes 5 --workers 2 --methods retrain finetune "
    "random-label amnesiac neg-grad ssd salun scrub bad-teacher unsir l1-sparse boundary-shrink "
    "--out results/bench-methods"
)
GRID_INTRO = (
    "LeNet-5 on {name}, 1,000 training images per class (900 train the target, 100 are the "
    "attacker's reserve), twelve unlearning methods, every single class and 10 random pairs per "
    "seed, seeds 0-2: 60 targets per method and forget-set size, plus the never-unlearned "
    "original attacked with each target's knowledge (the control). The attacker's labelled data "
    "covers 5 retained classes drawn per target; the parameter attacks use their shadow-free "
    "rules (`top`, `kmeans`, `gap`), the inversions their default rules."
)

CIFAR_COMMAND = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_attacks.py --only cifar10 --seeds 0 1 2 "
    "--pairs 10 --subsample 1000 --attacker-classes 5 --workers 2 --out results/bench-cifar"
)
CIFAR_INTRO = (
    "ResNet-8 on 1,000 CIFAR-10 images per class (the lossy JPEG copy in ../shared/data), the "
    "paper's five methods, photograph crops as unrelated data (SVHN is not available here). One "
    "seed takes about 3 h 15 min on the 2-core machine."
)
BUDGET_INTRO = (
    "MNIST and Fashion-MNIST, LeNet-5 on 1,000 images per class, the paper's five methods (models "
    "from the grid above): invert-black at each budget per class, beside noise-histogram given "
    "the same total number of queries."
)
MARGIN_INTRO = (
    "neg-grad ascending until the forget data trails another class by 0, 2 or 5 nats, {name}, "
    "LeNet-5 on 1,000 images per class, every class and 10 pairs on seeds 0-2: does deeper "
    "removal hide the class?"
)
AUDIT_INTRO = (
    "The seed-0 MNIST LeNet-5 of each method forgetting class 7 (from the grid above), written "
    "to a safetensors file and audited by the command line in a fresh process with 20 null "
    "models (the first audit trains and attacks them; later ones read both from the cache). "
    "`verdict` is the audit's (the ranking consensus when at most 10% of null models agree as "
    "much, else the calibrated set rules); for the original, the right verdict is none."
)
MARGIN_COMMAND = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_neg_grad_margin.py --only {dataset}"
)
PAPER_DATASETS = (("mnist", "MNIST"), ("fashion_mnist", "Fashion-MNIST"))
DEFENCE_COMMAND = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_defences.py --only {dataset} --seeds 0 "
    "--pairs 0 --defences none calibrate-logit distil graft --adaptive-defences graft "
    "--workers 2 -q"
)
DEFENCE_INTRO = (
    "LeNet-5 on {name}, 1,000 training images per class, the paper's five methods, every single "
    "class on seed 0 (n=50 targets per defence), each unlearned model released under each "
    "defence; the attack benchmark's attacks with their "
    "shadow-free rules, the attacker's data covering 5 retained classes. `adaptive`: the "
    "shadow-fit rules fit on shadows the attacker unlearned and defended itself (2 single "
    "classes per method, its own data and seeds), single-class targets only. Each attack's "
    "rate is its best rule per defence on one forgotten class (picked on the targets' truth: "
    "an upper bound for the attacker); `Δ retain` is against the same models undefended."
)

SECTIONS = [
    *(
        Section(
            f"methods-{dataset}",
            f"Every method and attack on {name}",
            GRID_COMMAND.format(dataset=dataset),
            f"bench-methods/{dataset}",
            ("attacks.csv", "unlearning.csv"),
            grid_tables,
            GRID_INTRO.format(name=name),
        )
        for dataset, name in PAPER_DATASETS
    ),
    *(
        Section(
            f"defences-{dataset}",
            f"Defences on {name}",
            DEFENCE_COMMAND.format(dataset=dataset),
            f"bench-defences/{dataset}",
            ("plain/attacks.csv", "plain/unlearning.csv"),
            defence_tables,
            DEFENCE_INTRO.format(name=name),
            summary=defence_headline,
            optional=("adaptive/attacks.csv",),
            merge_by="defence",
            merge_control=NO_DEFENCE,
        )
        for dataset, name in PAPER_DATASETS
    ),
    Section(
        "audit",
        "`labelleak audit` on LeNet-5 files",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_audit.py",
        "bench-audit",
        ("audits.csv", "cold.csv"),
        audit_table,
        AUDIT_INTRO,
    ),
    Section(
        "demo",
        "The demo's wall time",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_demo.py",
        "bench-demo",
        ("runs.csv",),
        runs_table,
        "`labelleak demo` (digits, five methods, ten single classes and three pairs, every attack "
        "and baseline with its default rules, controls, 16 shadow models per forget set, the "
        "report with its plots), one worker per core, on the 2-core machine otherwise idle.",
    ),
    Section(
        "parallel",
        "Parallel runs",
        ".venv/bin/python benchmarks/bench_parallel.py --data-dir ../shared/data",
        "bench-parallel",
        ("runs.csv",),
        runs_table,
        "One grid (MNIST, LeNet-5 on 300 images per class, five methods, three single classes, "
        "the attack benchmark's attacks) from an empty cache: serially, on 2 worker processes "
        "and on a local Ray instance when Ray is installed, 1 torch thread per process; `tables` "
        "says whether the CSVs equal the serial run's.",
    ),
    Section(
        "methods-cifar10",
        "Every paper method and attack on CIFAR-10 (ResNet-8, CPU)",
        CIFAR_COMMAND,
        "bench-cifar/cifar10",
        ("attacks.csv", "unlearning.csv"),
        grid_tables,
        CIFAR_INTRO,
    ),
    Section(
        "query-budget",
        "invert-black against its query budget",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_query_budget.py --seeds 0 1 2",
        "bench-query-budget",
        ("mnist.csv", "fashion_mnist.csv"),
        budget_tables,
        BUDGET_INTRO,
    ),
    *(
        Section(
            f"neg-grad-margin-{dataset}",
            f"neg-grad's margin on {name}",
            MARGIN_COMMAND.format(dataset=dataset),
            f"bench-neg-grad-margin/{dataset}",
            tuple(f"margin-{m}/{f}" for m in (0, 2, 5) for f in ("attacks.csv", "unlearning.csv")),
            margin_tables,
            MARGIN_INTRO.format(name=name),
        )
        for dataset, name in PAPER_DATASETS
    ),
]


def code_version() -> str:
    described = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return described.stdout.strip() or "unknown"


def archive(results: Path, data: Path, only: list[str] | None, merge: bool = False) -> None:
    """Copy each section's files from its results folder into ``data``/NAME/ (gzipped).

    With ``merge`` a section that has a ``merge_by`` column keeps the archived rows whose value
    the new files do not hold (a rerun of some defences replaces their rows only), and its
    meta records where the kept rows came from; other sections are replaced whole."""
    for section in SECTIONS:
        if only and section.name not in only:
            continue
        source = results / section.source
        if not all((source / name).is_file() for name in section.files):
            print(f"{section.name}: {source} lacks {', '.join(section.files)}; not archived")
            continue
        target = data / section.name
        present = [name for name in section.optional if (source / name).is_file()]
        frames = {
            name: pd.read_csv(source / name, dtype=str, keep_default_na=False)
            for name in (*section.files, *present)
        }
        meta: dict[str, object] = {
            "date": date.today().isoformat(), "code": code_version(), "source": str(source)
        }  # fmt: skip
        if merge and section.merge_by and (target / META).is_file():
            frames, meta["kept"] = merged(frames, target, section)
        if target.is_dir():  # an archive replaces the last one whole, optional files included
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name, frame in frames.items():
            # Files may sit in subfolders (one per margin, plain and adaptive attacks).
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(
                target / f"{name}.gz", index=False, compression={"method": "gzip", "mtime": 0}
            )
        write_text_atomic(target / META, json.dumps(meta, indent=2) + "\n")
        print(f"{section.name}: archived {', '.join(frames)} from {source}")


def merged(
    frames: dict[str, pd.DataFrame], target: Path, section: Section
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """``frames`` with the rows of ``target``'s archive whose ``section.merge_by`` value they
    lack put back (an optional file the rerun did not make stays whole), and, per file, which
    values were kept from which run: rows an earlier merge kept keep that earlier origin."""
    column = section.merge_by
    assert column is not None
    if not any((frame[column] == section.merge_control).any() for frame in frames.values()):
        raise SystemExit(
            f"{section.name}: a merged rerun must include the '{section.merge_control}' control"
        )
    before = json.loads((target / META).read_text())
    result, kept = dict(frames), []
    for name in (*frames, *(n for n in section.optional if n not in frames)):
        archived = target / f"{name}.gz"
        if not archived.is_file():
            continue
        old = pd.read_csv(archived, dtype=str, keep_default_na=False)
        new = frames.get(name)
        if new is not None:
            check_control(old, new, column, section.merge_control, f"{section.name}/{name}")
            old = old[~old[column].isin(set(new[column]))]
        if old.empty:
            continue
        result[name] = old if new is None else pd.concat([old, new], ignore_index=True)
        values = set(old[column])
        for entry in before.get("kept", []):
            if entry["file"] == name and values & set(entry["values"]):
                kept.append({**entry, "values": sorted(values & set(entry["values"]))})
                values -= set(entry["values"])
        if values:
            kept.append({"file": name, "values": sorted(values),
                         "date": before["date"], "code": before["code"]})  # fmt: skip
    return result, kept


def check_control(
    old: pd.DataFrame, new: pd.DataFrame, column: str, control: str, where: str
) -> None:
    """Exit with one line unless ``old`` and ``new`` hold the same ``control`` rows (timings
    aside): kept rows were compared with the old control, so the models must be the same ones.
    Float results differ between machines, so a merge across machines is refused here."""

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        part = frame[frame[column] == control].drop(columns=["seconds"], errors="ignore")
        return part.sort_values(list(part.columns)).reset_index(drop=True)

    if (new[column] == control).any() and not rows(old).equals(rows(new)):
        raise SystemExit(
            f"{where}: the rerun's '{control}' rows differ from the archived ones (other models: "
            "another machine or code); rerun every defence and archive without --merge"
        )


def unpacked(folder: Path, files: tuple[str, ...]) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder holding ``folder``'s gzipped ``files`` under their plain names."""
    scratch = tempfile.TemporaryDirectory()
    for name in files:
        frame = pd.read_csv(folder / f"{name}.gz", dtype=str, keep_default_na=False)
        (Path(scratch.name) / name).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(Path(scratch.name) / name, index=False)
    return scratch


def render_section(section: Section, data: Path) -> str:
    folder = data / section.name
    heading = f"## {section.title}\n\n{section.intro}\n\n```bash\n{section.command}\n```\n\n"
    if not (folder / META).is_file():
        return heading + "Not archived on this checkout: run the command above, then `archive`.\n"
    meta = json.loads((folder / META).read_text())
    present = [name for name in section.optional if (folder / f"{name}.gz").is_file()]
    with unpacked(folder, (*section.files, *present)) as plain:
        body = section.render(Path(plain))
    origin = f"Measured {meta['date']} at code version `{meta['code']}`"
    for kept in meta.get("kept", []):
        origin += (
            f"; in `{kept['file']}` the rows of {', '.join(kept['values'])} are from "
            f"{kept['date']} at `{kept['code']}` (the command above, limited to the others, "
            "made the rest)"
        )
    return heading + f"{origin}.\n\n{body}\n"


def render(data: Path, out: Path, readme: Path) -> None:
    """docs/results.md from every section, and the README's headline blocks."""
    text = (
        "# Benchmark results\n\n"
        "Every table here is rendered by `benchmarks/results.py render` from the archived CSVs "
        "in `docs/data/` (`archive` copies them from the benchmarks' result folders); none is "
        "edited by hand. All ran on the development machine (2 CPU cores, no GPU, PyTorch "
        "2.13.0 CPU build) unless a section says otherwise. Rates are exact identification of "
        "the forgotten set (chance: 10% for one class of ten, 2.2% for a pair) with 95% Wilson "
        "intervals.\n\n" + "\n".join(render_section(s, data) for s in SECTIONS)
    )
    write_text_atomic(out, text)
    print(f"wrote {out}")
    if readme.is_file():
        write_text_atomic(readme, replace_headlines(readme.read_text(), data))
        print(f"updated the headline tables in {readme}")


HEADLINE = re.compile(r"(<!-- headline: ([\w-]+) -->\n)(.*?)(<!-- /headline -->)", re.DOTALL)


def replace_headlines(text: str, data: Path) -> str:
    """``text`` with every ``<!-- headline: NAME -->`` block re-rendered from NAME's data."""

    def fill(match: re.Match[str]) -> str:
        section = next((s for s in SECTIONS if s.name == match.group(2)), None)
        if section is None:
            raise SystemExit(f"the README names an unknown results section {match.group(2)!r}")
        folder = data / section.name
        if not (folder / META).is_file():
            body = f"(not archived: `{section.command}`)\n"
        else:
            with unpacked(folder, section.files) as plain:
                body = (section.summary or headline)(Path(plain)) + "\n"
        return match.group(1) + body + match.group(4)

    return HEADLINE.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("archive", help="copy result CSVs into docs/data/")
    packing.add_argument("--results", type=Path, default=ROOT / "results")
    packing.add_argument("--data", type=Path, default=DATA)
    packing.add_argument("--only", action="append", choices=[s.name for s in SECTIONS])
    packing.add_argument(
        "--merge",
        action="store_true",
        help="keep the archived rows of defences the new results lack (a partial rerun)",
    )
    drawing = commands.add_parser("render", help="write docs/results.md and README headlines")
    drawing.add_argument("--data", type=Path, default=DATA)
    drawing.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    drawing.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    if args.command == "archive":
        archive(args.results, args.data, args.only, args.merge)
    else:
        render(args.data, args.out, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
