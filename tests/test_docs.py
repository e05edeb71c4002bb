"""The documents stay true: every command the README and docs/results.md show parses, and the
results script rebuilds a table from a results folder."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import pytest
from conftest import subprocess_env

from labelleak.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "docs" / "results.md",
    ROOT / "docs" / "choices.md",
    ROOT / "docs" / "python.md",
    ROOT / "docs" / "extending.md",
]


def run_script(path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """A benchmark script run from the benchmarks folder, as the documents show them run."""
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=BENCHMARKS,
        timeout=timeout,
    )


def shown_commands(path: Path) -> list[str]:
    """The shell commands in ``path``'s bash blocks, continuation lines joined, comments cut."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def words_after(command: str, program: str) -> list[str] | None:
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word.endswith(program):
            return words[index + 1 :]
    return None


def labelleak_commands() -> list[list[str]]:
    found = []
    for path in DOCUMENTS:
        for command in shown_commands(path):
            words = words_after(command, "bin/labelleak")
            if words is not None:
                found.append(words)
    return found


def benchmark_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCUMENTS:
        for command in shown_commands(path):
            for word in shlex.split(command):
                if word.startswith("benchmarks/") and word.endswith(".py"):
                    found.append((word, words_after(command, word) or []))
    return found


def test_the_documents_show_commands() -> None:
    # The README shows the two set-up commands and the main subcommands.
    readme = shown_commands(ROOT / "README.md")
    assert "make demo" in readme and "make test" in readme
    shown = {words[0] for words in labelleak_commands()}
    assert {"run", "report", "audit", "methods", "attacks", "datasets"} <= shown
    assert benchmark_commands()


@pytest.mark.parametrize("words", labelleak_commands(), ids=" ".join)
def test_every_labelleak_command_shown_parses(words: list[str]) -> None:
    command = cli.get_command(click.Context(cli), words[0])
    assert command is not None, f"no subcommand {words[0]!r}"
    # Parsing checks every option and argument without running the command.
    command.make_context(words[0], list(words[1:]))


@pytest.mark.parametrize(("script", "words"), benchmark_commands(), ids=lambda v: str(v))
def test_every_benchmark_command_shown_parses(script: str, words: list[str]) -> None:
    path = ROOT / script
    assert path.is_file(), f"{script} is shown but does not exist"
    helped = run_script(path, "--help", timeout=120)
    assert helped.returncode == 0, helped.stderr
    if words and not words[0].startswith("-"):
        # A subcommand (results.py archive / render): its own options are listed under it.
        helped = run_script(path, words[0], "--help", timeout=120)
        assert helped.returncode == 0, helped.stderr
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in helped.stdout, f"{script} has no option {word}"


def write_grid(folder: Path) -> None:
    """A tiny results folder as bench_attacks.py writes it: two methods, two targets each."""
    folder.mkdir(parents=True)
    rows = []
    for method, hits in (("retrain", (1, 1)), ("ssd", (1, 0)), ("original", (1, 0))):
        for index, hit in enumerate(hits):
            forgotten = "none" if method == "original" else str(index + 3)
            for attack, rule, success in (("head-bias", "top", hit), ("head-bias", "gap", 0)):
                rows.append(
                    {
                        "dataset": "mnist", "arch": "lenet", "method": method,
                        "forgotten": forgotten, "seed": 0, "attack": attack, "rule": rule,
                        "predicted": forgotten if success else "none", "success": success,
                        "queries": 0, "seconds": 0.01, "attacker_classes": f"{index}+5+6",
                    }
                )  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "attacks.csv", index=False)
    unlearning = [
        {
            "dataset": "mnist", "arch": "lenet", "method": method, "forgotten": str(c),
            "seed": 0, "forget_acc": 0.0, "retain_acc": 0.97, "test_acc": 0.88, "seconds": 1.5,
            "original_forget_acc": 0.99, "original_retain_acc": 0.98,
            "original_test_acc": 0.98,
        }
        for method in ("retrain", "ssd")
        for c in (3, 4)
    ]  # fmt: skip
    pd.DataFrame(unlearning).to_csv(folder / "unlearning.csv", index=False)


def test_results_script_rebuilds_tables_from_a_results_folder(tmp_path) -> None:
    write_grid(tmp_path / "results" / "bench-methods" / "mnist")
    readme = tmp_path / "README.md"
    readme.write_text(
        "before\n<!-- headline: methods-mnist -->\nstale\n<!-- /headline -->\nafter\n"
    )

    def script(*args: str) -> str:
        done = run_script(BENCHMARKS / "results.py", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    data = tmp_path / "data"
    said = script("archive", "--results", str(tmp_path / "results"), "--data", str(data),
                  "--only", "methods-mnist")  # fmt: skip
    assert "methods-mnist: archived" in said
    assert (data / "methods-mnist" / "attacks.csv.gz").is_file()
    out = tmp_path / "results.md"
    script("render", "--data", str(data), "--out", str(out), "--readme", str(readme))
    text = out.read_text()
    # head-bias top: retrain 2 of 2, ssd 1 of 2; the original named nothing once in two.
    assert "100.0 [34.2, 100.0] n=2" in text and "50.0 [9.5, 90.5] n=2" in text
    assert "Not archived on this checkout" in text  # the sections without data say so
    headline = readme.read_text()
    assert headline.startswith("before\n<!-- headline: methods-mnist -->\n")
    assert "stale" not in headline and headline.endswith("<!-- /headline -->\nafter\n")
    # top: 3 of 4 unlearned targets on one class; the set rule gap: no success on the 4
    # targets, nor on the 2 controls (the fixture scores every gap row 0).
    assert "| head-bias " in headline and "75.0 [30.1, 95.4] n=4" in headline
    assert "| gap " in headline and "0.0 [0.0, 49.0] n=4" in headline
    assert "0.0 [0.0, 65.8] n=2" in headline


def write_defence_grid(
    folder: Path, defences: tuple[tuple[str, tuple[int, int]], ...] | None = None
) -> None:
    """A tiny bench_defences.py folder: retrain forgetting 3 and 4, undefended and distilled
    (unless ``defences`` names others, with head-bias's hits on the two targets); head-bias
    names the class on both undefended targets and on one distilled one."""
    rows, unlearning = [], []
    for defence, hits in defences or (("none", (1, 1)), ("distil", (1, 0))):
        for index, hit in enumerate(hits):
            forgotten = str(index + 3)
            rows.append(
                {
                    "dataset": "mnist", "arch": "lenet", "method": "retrain",
                    "defence": defence, "forgotten": forgotten, "seed": 0,
                    "attack": "head-bias", "rule": "top",
                    "predicted": forgotten if hit else "0", "success": hit, "queries": 0,
                    "seconds": 0.01, "attacker_classes": "0+5+6",
                }
            )  # fmt: skip
            unlearning.append(
                {
                    "dataset": "mnist", "arch": "lenet", "method": "retrain",
                    "defence": defence, "forgotten": forgotten, "seed": 0,
                    "forget_acc": 0.0, "retain_acc": 0.97 - 0.005 * (defence == "distil"),
                    "test_acc": 0.88, "seconds": 1.5, "original_forget_acc": 0.99,
                    "original_retain_acc": 0.98, "original_test_acc": 0.98,
                }
            )  # fmt: skip
    for part in ("plain", "adaptive"):
        (folder / part).mkdir(parents=True)
        pd.DataFrame(rows).to_csv(folder / part / "attacks.csv", index=False)
    pd.DataFrame(unlearning).to_csv(folder / "plain" / "unlearning.csv", index=False)


def test_results_script_renders_the_defence_tables(tmp_path) -> None:
    write_defence_grid(tmp_path / "results" / "bench-defences" / "mnist")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- headline: defences-mnist -->\n<!-- /headline -->\n")
    data = tmp_path / "data"
    results = str(tmp_path / "results")
    done = run_script(BENCHMARKS / "results.py", "archive", "--results", results,
                      "--data", str(data), "--only", "defences-mnist")  # fmt: skip
    assert done.returncode == 0 and "defences-mnist: archived" in done.stdout, done.stderr
    out = tmp_path / "results.md"
    done = run_script(BENCHMARKS / "results.py", "render", "--data", str(data), "--out",
                      str(out), "--readme", str(readme))  # fmt: skip
    assert done.returncode == 0, done.stderr
    section = out.read_text().split("## Defences on MNIST", 1)[1]
    # The distilled row: 1 of 2 named by head-bias and by its adaptive copy, 0.5 points lost.
    distil = next(line for line in section.splitlines() if line.startswith("| distil"))
    assert distil.count("50.0 [9.5, 90.5] n=2") == 2 and "-0.50" in distil
    headline = readme.read_text()
    assert "| none " in headline and "| distil " in headline and "| no " in headline


def test_archive_merge_replaces_the_rerun_defences_rows_only(tmp_path) -> None:
    """A rerun of some defences (none and a new graft) merged into the archive: distil's rows
    stay, with their origin said in the rendered section; the rerun's replace the old ones."""
    data, results = tmp_path / "data", tmp_path / "results"
    write_defence_grid(results / "bench-defences" / "mnist")
    archive = [BENCHMARKS / "results.py", "archive", "--results", str(results), "--data",
               str(data), "--only", "defences-mnist"]  # fmt: skip
    assert run_script(*archive).returncode == 0
    shutil.rmtree(results)
    write_defence_grid(results / "bench-defences" / "mnist", (("none", (1, 1)), ("graft", (0, 0))))
    done = run_script(*archive, "--merge")
    assert done.returncode == 0, done.stderr
    plain = pd.read_csv(data / "defences-mnist" / "plain" / "attacks.csv.gz")
    assert sorted(plain.groupby("defence").size().items()) == [
        ("distil", 2),
        ("graft", 2),
        ("none", 2),
    ]
    out = tmp_path / "results.md"
    readme = tmp_path / "README.md"
    readme.write_text("")
    done = run_script(BENCHMARKS / "results.py", "render", "--data", str(data), "--out",
                      str(out), "--readme", str(readme))  # fmt: skip
    assert done.returncode == 0, done.stderr
    section = out.read_text().split("## Defences on MNIST", 1)[1].split("\n## ", 1)[0]
    assert "the rows of distil are from" in section
    graft = next(line for line in section.splitlines() if line.startswith("| graft"))
    assert graft.count("0.0 [0.0, 65.8] n=2") == 2
    # Another machine's undefended models: the kept rows would be paired with other models.
    shutil.rmtree(results)
    write_defence_grid(results / "bench-defences" / "mnist", (("none", (1, 0)),))
    done = run_script(*archive, "--merge")
    assert done.returncode != 0 and "rows differ from the archived ones" in done.stderr
    assert len(pd.read_csv(data / "defences-mnist" / "plain" / "attacks.csv.gz")) == 6
