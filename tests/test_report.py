"""The report: built from a small hand-made CSV fixture (no training), merged, and its errors."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from labelleak.cli import main
from labelleak.errors import LabelleakError
from labelleak.report import build_report, format_rate, load_results
from labelleak.report.tables import chance_level

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SINGLES = ["0", "1", "2", "3", "4"]
PAIRS = ["2+7", "3+8"]
METHODS = ["retrain", "finetune"]
ATTACKS = {"param-dot": ["top", "kmeans"], "invert-black": ["top"], "chance": ["top"],
           "absent-class": ["set"]}  # fmt: skip
#: Hand-set misses: (dataset, method, forget set or the control's gap, attack, rule) -> named.
MISSES = {
    ("digits", "finetune", "4", "param-dot", "kmeans"): "none",
    ("digits", "original", "0", "param-dot", "kmeans"): "6",  # a false alarm on the control
}


def complement(forgotten: str) -> str:
    gone = set(forgotten.split("+"))
    return "+".join(str(c) for c in range(10) if str(c) not in gone)


def attack_rows(dataset: str) -> list[dict[str, object]]:
    """Every (target, attack, rule) of a small grid: singles and pairs, a control per gap.

    ``top`` names the gap's first class (right for singles, wrong for pairs and controls),
    ``set`` the whole gap (wrong on controls), ``chance`` always class 0, and the other rules
    the truth, except for :data:`MISSES`.
    """
    rows = []
    for gap in SINGLES + PAIRS:
        for method in [*METHODS, "original"]:
            truth = "none" if method == "original" else gap
            for attack, rules in ATTACKS.items():
                for rule in rules:
                    named = {"top": gap.split("+")[0], "set": gap}.get(rule, truth)
                    named = "0" if attack == "chance" else named
                    named = MISSES.get((dataset, method, gap, attack, rule), named)
                    rows.append(
                        {
                            "dataset": dataset,
                            "arch": "lenet",
                            "method": method,
                            "forgotten": truth,
                            "seed": 0,
                            "attack": attack,
                            "rule": rule,
                            "predicted": named,
                            "success": int(named == truth),
                            "queries": 500 if attack == "invert-black" else 0,
                            "seconds": 0.5 if attack == "invert-black" else 0.01,
                            "attacker_classes": complement(gap),
                        }
                    )
    return rows


def unlearning_rows(dataset: str) -> list[dict[str, object]]:
    rows = []
    for forgotten in SINGLES + PAIRS:
        for method in METHODS:
            rows.append(
                {
                    "dataset": dataset,
                    "arch": "lenet",
                    "method": method,
                    "forgotten": forgotten,
                    "seed": 0,
                    "forget_acc": 0.05 if method == "finetune" else 0.0,
                    "retain_acc": 0.97,
                    "test_acc": 0.88,
                    "seconds": 2.0 if method == "finetune" else 1.0,
                    "original_forget_acc": 0.99,
                    "original_retain_acc": 0.98,
                    "original_test_acc": 0.98,
                }
            )
    return rows


def calibration_rows(dataset: str) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    rows = []
    for knowledge in ("gap-0", "gap-1"):
        for shadow in range(4):
            for c in range(10):
                forgotten = int(c == shadow)
                score = rng.normal(3.0 if forgotten else 0.0)
                rows.append({"dataset": dataset, "attack": "param-dot", "knowledge": knowledge,
                             "score": score, "forgotten": forgotten})  # fmt: skip
    return rows


def write_results(folder: Path, datasets: tuple[str, ...] = ("digits", "mnist")) -> Path:
    """A results folder as `labelleak run` writes it, plus calibration scores and a picture."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([r for d in datasets for r in attack_rows(d)]).to_csv(
        folder / "attacks.csv", index=False
    )
    pd.DataFrame([r for d in datasets for r in unlearning_rows(d)]).to_csv(
        folder / "unlearning.csv", index=False
    )
    pd.DataFrame([r for d in datasets for r in calibration_rows(d)]).to_csv(
        folder / "calibration.csv", index=False
    )
    (folder / "prototypes").mkdir(exist_ok=True)
    for dataset in datasets:
        matplotlib.image.imsave(
            folder / "prototypes" / f"{dataset}-finetune-invert-black.png",
            np.random.default_rng(len(dataset)).random((8, 8)),
        )
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return write_results(tmp_path / "run")


def section(text: str, heading: str) -> str:
    """The text of the section starting with ``heading`` up to the next one of its level."""
    level = heading.split(" ")[0]
    start = text.index(heading)
    rest = text[start + len(heading) :]
    end = re.search(rf"^{level} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_after(text: str, marker: str) -> str:
    """The first Markdown table after ``marker`` in ``text``."""
    lines = text[text.index(marker) + len(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def row_of(table_text: str, label: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``label``."""
    for line in table_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{table_text}")


def linked_files(report: Path) -> list[Path]:
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    return [report.parent / link for link in links]


# ---------------------------------------------------------------------------------------------
# Contents


def test_format_rate_and_chance() -> None:
    assert format_rate(4, 5) == "80.0 [37.6, 96.4] n=5"
    assert format_rate(0, 0) == "n/a"
    assert chance_level(10, 1) == pytest.approx(0.1)
    assert chance_level(10, 2) == pytest.approx(1 / 45)


def test_report_has_every_section_and_the_expected_numbers(results: Path) -> None:
    path = build_report([results], results)
    assert path == results / "report.md"
    text = path.read_text()
    for heading in (
        "## 1. Each attack beside the baselines and controls",
        "## 2. Exact identification per attack and rule",
        "## 3. Per-class precision and recall",
        "## 4. Unlearning quality",
        "## 5. Cost",
        "## 6. Plots",
        "### ROC curves behind the Youden thresholds",
        "### Inversion prototypes",
    ):
        assert heading in text, heading

    # Paper-style table: param-dot/kmeans on finetune singles missed one of five on digits.
    kmeans = section(text, "#### param-dot · kmeans")
    singles = table_after(kmeans, "**One forgotten class**")
    assert row_of(singles, "target method")[1:] == ["digits", "mnist"]
    assert row_of(singles, "finetune")[1:] == ["80.0 [37.6, 96.4] n=5", format_rate(5, 5)]
    # The control (last row) names nothing except once, on the gap-0 knowledge.
    control = row_of(singles, "original (control: names nothing)")
    assert control[1:] == [format_rate(4, 5), format_rate(5, 5)]
    assert singles.splitlines()[-1].startswith("| original (control")
    pairs = table_after(kmeans, "**2 forgotten classes**")
    assert row_of(pairs, "retrain (oracle)")[1:] == [format_rate(2, 2)] * 2
    assert row_of(pairs, "original (control: names nothing)")[1:] == [format_rate(2, 2)] * 2

    # Baselines beside the attacks, with the chance level.
    summary = section(text, "### digits, one forgotten class")
    assert "naming 1 of 10 classes at random is right 10.0%" in summary
    assert row_of(summary, "chance · top (baseline)")[1:4] == [format_rate(1, 5)] * 2 + [
        format_rate(0, 5)
    ]
    # param-dot's best single-class rule is top (10/10), equal to absent-class's set: +0.0.
    assert row_of(summary, "param-dot · top")[-1] == "+0.0"
    assert "2.22%" in section(text, "### digits, 2 forgotten classes")

    # Per-class precision/recall: chance names 0 on all 14 unlearned targets; 0 was forgotten
    # by 2 of them (the single "0" under both methods).
    classes = section(text, "### digits\n")
    chance = row_of(classes, "chance · top")
    assert chance[1] == "14"
    assert chance[3] == "14/100"  # class 0
    assert chance[4] == "–/0"  # class 1: never named, forgotten twice

    unlearning = section(text, "## 4. Unlearning quality")
    assert row_of(unlearning, "digits")[2:] == ["(original)", "7", "99.0", "98.0", "98.0", "–"]
    finetune = next(r for r in unlearning.splitlines() if "| finetune" in r)
    assert [c.strip() for c in finetune.split("|")][4:9] == ["7", "5.0", "97.0", "88.0", "2.0"]

    cost = section(text, "## 5. Cost")
    black = next(r for r in cost.splitlines() if "| invert-black" in r)
    # 21 targets (14 unlearned + 7 controls), 0.5 s each, 500 queries over 10 classes.
    assert [c.strip() for c in black.split("|")][3:8] == ["21", "0.500", "10.5", "50", "50"]


def test_plots_are_valid_pngs_linked_from_the_report(results: Path) -> None:
    report = build_report([results], results)
    files = linked_files(report)
    names = {f.name for f in files}
    assert {f"heatmap-{a}.png" for a in ATTACKS} <= names
    assert {"success-vs-forgotten-digits.png", "success-vs-forgotten-mnist.png"} <= names
    assert {"roc-digits.png", "roc-mnist.png"} <= names
    # Pictures already in the folder are linked where they are, not copied.
    assert results / "prototypes" / "digits-finetune-invert-black.png" in files
    assert not (results / "plots" / "prototypes").exists()
    for file in files:
        data = file.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 100, file
        assert matplotlib.image.imread(file).size > 0
    assert not list(results.rglob("*.tmp"))


def test_report_elsewhere_copies_the_prototypes(results: Path, tmp_path: Path) -> None:
    report = build_report([results], tmp_path / "elsewhere")
    copied = tmp_path / "elsewhere" / "plots" / "prototypes" / "digits-finetune-invert-black.png"
    assert copied in linked_files(report)
    assert copied.read_bytes() == (results / "prototypes" / copied.name).read_bytes()


def test_without_calibration_the_report_says_so_and_stale_plots_go(results: Path) -> None:
    build_report([results], results)
    assert (results / "plots" / "roc-digits.png").exists()
    (results / "calibration.csv").unlink()
    text = build_report([results], results).read_text()
    assert "No calibration scores found" in text
    assert not (results / "plots" / "roc-digits.png").exists()


def test_calibration_folder_is_read_too(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "run", ("digits",))
    (folder / "calibration").mkdir()
    shutil.move(folder / "calibration.csv", folder / "calibration" / "digits-param-dot.csv")
    assert len(load_results([folder]).calibration) == 80


def test_unlearning_only_results(tmp_path: Path) -> None:
    folder = write_results(tmp_path / "run", ("digits",))
    (folder / "attacks.csv").unlink()
    text = build_report([folder], folder).read_text()
    assert "No attack results" in text
    assert "## 4. Unlearning quality" in text


# ---------------------------------------------------------------------------------------------
# Merging


def test_two_folders_give_the_union(tmp_path: Path) -> None:
    left = write_results(tmp_path / "left", ("digits",))
    right = write_results(tmp_path / "right", ("mnist",))
    merged = load_results([left, right])
    assert len(merged.attacks) == 2 * len(attack_rows("digits"))
    assert set(merged.unlearning["dataset"]) == {"digits", "mnist"}
    text = build_report([left, right], tmp_path / "merged").read_text()
    singles = table_after(section(text, "#### param-dot · kmeans"), "**One forgotten class**")
    assert row_of(singles, "finetune")[1:] == ["80.0 [37.6, 96.4] n=5", format_rate(5, 5)]
    # Both folders drew a digits/mnist picture of their own: both are linked.
    assert len(list((tmp_path / "merged" / "plots" / "prototypes").glob("*.png"))) == 2


def test_the_same_results_twice_count_once(results: Path, tmp_path: Path) -> None:
    once = load_results([results])
    copy = tmp_path / "copy"
    shutil.copytree(results, copy)
    for folders in ([results, results], [results, copy]):
        merged = load_results(folders)
        assert len(merged.attacks) == len(once.attacks)
        assert len(merged.unlearning) == len(once.unlearning)
        assert len(merged.calibration) == len(once.calibration)
        assert len(merged.prototypes) == len(once.prototypes)
    text = build_report([results, copy], tmp_path / "merged").read_text()
    assert "counted once" in text
    assert "80.0 [37.6, 96.4] n=5" in text


def test_a_cell_merged_with_other_timings_counts_once(results: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(results, other)
    attacks = pd.read_csv(other / "attacks.csv", dtype=str, keep_default_na=False)
    attacks["seconds"] = "9.9"
    attacks.to_csv(other / "attacks.csv", index=False)
    merged = load_results([results, other])
    assert len(merged.attacks) == len(load_results([results]).attacks)
    assert any("repeated a cell" in note for note in merged.notes)


# ---------------------------------------------------------------------------------------------
# Errors and the command line


def run_report(args: list[str]) -> tuple[int, str, str]:
    """``labelleak report ARGS`` through the console entry point: (exit status, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["report", *args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_cli_report_prints_the_table_and_the_path(results: Path) -> None:
    code, out, _ = run_report([str(results)])
    assert code == 0
    assert "param-dot · top" in out and "finetune n=5" in out
    assert out.strip().endswith(f"report written to {results / 'report.md'}")


def test_cli_report_merges_into_out(results: Path, tmp_path: Path) -> None:
    other = write_results(tmp_path / "other", ("cifar10",))
    code, _, err = run_report([str(results), str(other)])
    assert_one_line_error(code, err, "--out")
    code, _, _ = run_report([str(results), str(other), "--out", str(tmp_path / "merged")])
    assert code == 0
    assert "cifar10" in (tmp_path / "merged" / "report.md").read_text()


def test_cli_report_on_an_empty_folder_fails_cleanly(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_report([str(empty)])
    assert_one_line_error(code, err, "no results", str(empty), "labelleak run")
    assert list(empty.iterdir()) == []
    # Header-only CSVs hold no results either.
    pd.DataFrame(columns=list(attack_rows("digits")[0])).to_csv(empty / "attacks.csv", index=False)
    code, _, err = run_report([str(empty)])
    assert_one_line_error(code, err, "no results")
    assert sorted(p.name for p in empty.iterdir()) == ["attacks.csv"]


def test_cli_report_on_a_missing_folder(tmp_path: Path) -> None:
    code, _, err = run_report([str(tmp_path / "nowhere")])
    assert_one_line_error(code, err, "does not exist", "nowhere")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda t: t.drop(columns=["success", "rule"]), ["attacks.csv", "success", "rule"]),
        (lambda t: t.assign(success="yes"), ["attacks.csv line 2", "success", "0 or 1"]),
        (lambda t: t.assign(queries="many"), ["line 2", "queries", "a number"]),
        (lambda t: t.assign(forgotten="3,7"), ["line 2", "forgotten", "'+'"]),
    ],
)
def test_cli_report_on_a_malformed_csv(results: Path, damage, words) -> None:
    table = pd.read_csv(results / "attacks.csv", dtype=str, keep_default_na=False)
    damage(table).to_csv(results / "attacks.csv", index=False)
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    code, _, err = run_report([str(results)])
    assert_one_line_error(code, err, *words)
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before


def test_malformed_unlearning_and_calibration_csvs(results: Path) -> None:
    (results / "unlearning.csv").write_text("dataset,method\ndigits,retrain\n")
    with pytest.raises(LabelleakError, match=r"unlearning\.csv lacks the column\(s\) arch"):
        load_results([results])
    write_results(results)
    calibration = pd.read_csv(results / "calibration.csv")
    calibration.assign(score="high").to_csv(results / "calibration.csv", index=False)
    with pytest.raises(LabelleakError, match=r"calibration\.csv line 2: column score"):
        load_results([results])


def test_a_ragged_csv_is_reported_not_raised(results: Path) -> None:
    with (results / "attacks.csv").open("a") as handle:
        handle.write("digits,lenet,retrain,3,0,chance,top,0,0,0,0.1,x,extra,fields\n")
    code, _, err = run_report([str(results)])
    assert_one_line_error(code, err, "attacks.csv", "not a readable CSV")


def test_an_unchanged_report_is_not_redrawn(results: Path) -> None:
    report = build_report([results], results)
    heatmap = results / "plots" / "heatmap-param-dot.png"
    drawn = (report.stat().st_mtime_ns, heatmap.stat().st_mtime_ns)
    build_report([results], results)
    assert (report.stat().st_mtime_ns, heatmap.stat().st_mtime_ns) == drawn
    heatmap.unlink()  # a missing picture is redrawn
    build_report([results], results)
    assert heatmap.exists()
    with (results / "unlearning.csv").open("a") as handle:  # so are new results
        handle.write("digits,lenet,neg-grad,5,0,0.0,0.9,0.8,1.0,0.99,0.98,0.98\n")
    assert "neg-grad" in build_report([results], results).read_text()


def test_shipped_configs_are_valid() -> None:
    """Every config under configs/ parses and validates (names, attack settings, class ids)."""
    from labelleak.attacks import ATTACKS
    from labelleak.experiment.config import load_config, validate_config

    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.glob("*.yaml"))
    assert {"paper-mnist.yaml", "paper-cifar10.yaml", "mnist-cpu.yaml"} <= {p.name for p in paths}
    for path in paths:
        config = load_config(path, {})
        if config.dataset == ["digits"] or all(d == "digits" for d in config.dataset):
            validate_config(config, set(ATTACKS))
        else:
            # Without the data folder only the dataset-independent checks can run.
            assert set(config.attacks) <= set(ATTACKS), path.name
            for name, params in config.attack_params.items():
                ATTACKS.get_class(name)(ATTACKS.make_config(name, params))


def test_attacks_are_compared_with_baselines_of_no_more_knowledge() -> None:
    from labelleak.report.tables import needs_no_more

    assert needs_no_more("unrelated-histogram", "param-diff")  # white box includes queries
    assert needs_no_more("absent-class", "param-dot")
    assert not needs_no_more("absent-class", "param-diff")  # param-diff holds no labelled data
    assert not needs_no_more("probe-drop", "invert-black")  # probe-drop needs the original
    assert needs_no_more("noise-histogram", "invert-black")
    assert needs_no_more("chance", "some-new-attack")
