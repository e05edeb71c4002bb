"""The ``labelleak`` command line: a thin layer over the library.

User errors print one line on stderr and exit with status 2; an interrupted run exits with 130 and
resumes when rerun with the same output folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from labelleak.errors import LabelleakError

DEMO_CONFIG: dict[str, Any] = {
    "dataset": "digits",
    "methods": ["retrain", "finetune", "random-label", "amnesiac", "neg-grad"],
    "forget": ["each", {"random_pairs": 3}],
    "seeds": [0],
    "attacks": [
        "param-dot", "param-diff", "invert-white", "invert-black",
        "chance", "head-bias", "head-norm", "absent-class", "data-peak",
        "unrelated-histogram", "noise-histogram", "probe-drop",
    ],
    # Sized to run in about a minute: per forget set the attacker trains 16 shadow models
    # (an untouched one, and 2 single classes and 1 pair unlearned by each of the five
    # methods) instead of 21, and holds 500 unrelated (noise) images instead of 2,000.
    "shadow_singles": 2,
    "shadow_pairs": 1,
    "unrelated_count": 500,
}  # fmt: skip

#: The demo's default worker count is one per core up to this many.
DEMO_MAX_WORKERS = 8


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="labelleak")
def cli() -> None:
    """Label-leakage attacks on machine-unlearned classifiers: which class was forgotten?"""


def _cache_option(function: Any) -> Any:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="where trained models are cached (default: $LABELLEAK_CACHE, else ~/.cache/labelleak)",
    )(function)


def _run(config: Any, out: Path, cache_dir: Path | None, quiet: bool, executor: Any = None) -> None:
    import pandas as pd

    from labelleak.experiment.runner import ExperimentRunner
    from labelleak.experiment.store import default_cache_dir
    from labelleak.report import attack_summary, build_report, unlearning_summary

    runner = ExperimentRunner(config, out, cache_dir or default_cache_dir(), progress=not quiet)
    if executor is None:
        table = runner.run()
    else:
        with executor:
            table = runner.run(executor)
    click.echo("Unlearning (accuracy on the test set)\n")
    click.echo(unlearning_summary(table))
    written = ["unlearning.csv", "config.resolved.yaml"]
    if config.attacks:
        attacks = pd.read_csv(out / "attacks.csv")
        click.echo("\nExact identification of the forgotten classes, % [95% CI] (n targets)\n")
        click.echo(attack_summary(attacks))
        written.insert(1, "attacks.csv")
    build_report([out], out)
    written.append("report.md with plots/")
    click.echo(f"\nresults written to {out}/ ({', '.join(written)})")
    click.echo(f"report: {out / 'report.md'}")


@cli.command()
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="results folder; rerunning with the same folder resumes",
)
@_cache_option
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="folder with the real datasets (overrides data_dir in the config)",
)
@click.option("--device", default=None, help="auto, cpu, cuda, ... (overrides the config)")
# Counts and names are checked by make_executor, so a bad value is one line and exit 2.
@click.option(
    "--workers", default=None, metavar="N", help="worker processes; N > 1 runs in parallel"
)
@click.option(
    "--executor",
    "executor_name",
    default=None,
    metavar="serial|processes|ray",
    help="where cells run (default: serial, or processes with --workers N > 1)",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster address (auto, ray://HOST:10001); default: start a local Ray instance",
)
@click.option(
    "--threads",
    default=None,
    metavar="T",
    help="torch threads per worker (default 1; a serial run keeps torch's default)",
)
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
def run(
    config_path: Path,
    out: Path,
    cache_dir: Path | None,
    data_dir: Path | None,
    device: str | None,
    workers: str | None,
    executor_name: str | None,
    address: str | None,
    threads: str | None,
    quiet: bool,
) -> None:
    """Run the grid described by CONFIG.yaml and write its results to --out.

    With --workers or --executor ray, the output and cache folders must be on a filesystem every
    worker sees; tables are identical to a serial run's at the same --threads.
    """
    from labelleak.experiment.config import load_config
    from labelleak.experiment.parallel import make_executor

    executor = make_executor(executor_name, workers, address, threads)
    overrides = {
        "data_dir": str(data_dir.resolve()) if data_dir is not None else None,
        "device": device,
    }
    _run(load_config(config_path, overrides), out, cache_dir, quiet, executor)


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-results"),
    show_default=True,
    help="results folder",
)
@_cache_option
@click.option(
    "--workers",
    default=None,
    metavar="N",
    help="worker processes (default: one per core, at most 8; 1 runs serially)",
)
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
def demo(out: Path, cache_dir: Path | None, workers: str | None, quiet: bool) -> None:
    """The whole pipeline on scikit-learn's bundled digits: nothing to download."""
    from labelleak.experiment.config import parse_config
    from labelleak.experiment.parallel import available_cores, make_executor

    # Parallel by default: on 2 cores the demo takes ~60 s instead of ~130 s serially, with the
    # same tables (workers run one torch thread each; the digits MLP is too small to gain from
    # more). Beyond 8 workers the demo's 13 knowledge settings leave processes idle.
    count = workers if workers is not None else min(available_cores(), DEMO_MAX_WORKERS)
    _run(parse_config(DEMO_CONFIG), out, cache_dir, quiet, make_executor(None, count))


@cli.command()
@click.argument("folders", metavar="DIR [DIR ...]", nargs=-1, required=True,
                type=click.Path(path_type=Path))  # fmt: skip
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where report.md and plots/ go (default: DIR when one folder is given)",
)
def report(folders: tuple[Path, ...], out: Path | None) -> None:
    """Rebuild report.md and its plots from the CSVs of one or several result folders."""
    from labelleak.report import headline, load_results, write_report

    if out is None and len(folders) > 1:
        raise LabelleakError("several folders are merged into one report: say where with --out")
    results = load_results(list(folders))
    path = write_report(results, out if out is not None else folders[0])
    click.echo(headline(results))
    click.echo(f"\nreport written to {path}")


@cli.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--arch", required=True, help="the model's architecture: lenet, resnet18, resnet8, mlp"
)
@click.option("--dataset", required=True, help="what the model classifies (labelleak datasets)")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="folder with the real datasets (not needed for digits)",
)
@click.option(
    "--original",
    "original_path",
    type=click.Path(path_type=Path),
    default=None,
    help="the model before unlearning (enables probe-drop)",
)
@click.option(
    "--attacks",
    "attack_names",
    multiple=True,
    metavar="NAME[,NAME]",
    help="attacks to run (repeatable or comma-separated; default: every one the knowledge allows)",
)
@click.option("--black-box", is_flag=True, help="query access only: no parameter or gradient")
@click.option(
    "--attacker-classes",
    default="all",
    show_default=True,
    help="classes of the attacker's labelled data: all, a count, or ids like 0,1,2",
)
@click.option("--unrelated", default=None, help="unrelated data (default: the dataset's sibling)")
@click.option(
    "--null-models",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="never-unlearned models the false-alarm rates are measured on",
)
@click.option(
    "--forget-count",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="how many classes rule top names",
)
@click.option(
    "--shadow-rules",
    is_flag=True,
    help="also the rules fit on unlearned shadow runs: youden, tree, threshold-fit, "
    "entropy-fit (trains ~20 more models)",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--subsample",
    default=None,
    type=click.IntRange(min=2),
    help="training images per class the dataset's splits are cut from: a grid's "
    "subsample_per_class gives the attacker that grid's reserve (default: all)",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write audit.json and audit.md here",
)
@_cache_option
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
def audit(
    model_path: Path,
    arch: str,
    dataset: str,
    data_dir: Path | None,
    original_path: Path | None,
    attack_names: tuple[str, ...],
    black_box: bool,
    attacker_classes: str,
    unrelated: str | None,
    null_models: int,
    forget_count: int,
    shadow_rules: bool,
    seed: int,
    subsample: int | None,
    out: Path | None,
    cache_dir: Path | None,
    device: str,
    quiet: bool,
) -> None:
    """Would an attacker tell which class MODEL forgot? MODEL is a weights file (.safetensors,
    or a .pt state dict, read with weights_only=True; nothing else is opened).

    Every attack the knowledge allows runs on MODEL and on --null-models models the attacker
    trains on the dataset's reserve and never unlearns; how often a rule names a class on those
    is its false-alarm rate.
    """
    from labelleak.auditing import audit as run_audit

    names = [name for given in attack_names for name in given.split(",") if name.strip()]
    result = run_audit(
        model_path,
        dataset,
        arch=arch,
        original=original_path,
        attacks=[name.strip() for name in names] or None,
        black_box=black_box,
        data_dir=data_dir.resolve() if data_dir is not None else None,
        attacker_classes=attacker_classes,
        unrelated=unrelated,
        null_models=null_models,
        forget_count=forget_count,
        shadow_rules=shadow_rules,
        subsample_per_class=subsample,
        seed=seed,
        cache_dir=cache_dir,
        device=device,
        progress=not quiet,
    )
    click.echo(result.to_frame().to_markdown(index=False))
    click.echo("\n" + result.summary())
    for name, why in result.skipped.items():
        click.echo(f"not run: {name}: {why}")
    if out is not None:
        result.write(out)
        click.echo(f"\naudit written to {out}/ (audit.json, audit.md); {result.seconds:.0f} s")


@cli.command()
def datasets() -> None:
    """List the datasets, their default architectures and unrelated siblings."""
    from labelleak.data import DATASETS

    for spec in DATASETS.values():
        where = "needs --data-dir" if spec.needs_data_dir else "bundled"
        click.echo(
            f"{spec.name:<14} arch={spec.default_arch:<9} unrelated={spec.unrelated:<14}"
            f"{where:<16} {spec.description}"
        )


@cli.command()
def methods() -> None:
    """List the unlearning methods (plugins included) and their hyperparameters with defaults."""
    from labelleak.unlearning import METHODS
    from labelleak.unlearning.plugins import load_entry_points

    load_entry_points()

    for name, cls in METHODS.items():
        click.echo(f"{name:<16} {cls.summary}")
        for field, info in cls.Config.model_fields.items():
            click.echo(f"    {field} = {info.default!r}: {info.description}")


@cli.command()
def defences() -> None:
    """List the defences and their settings with defaults."""
    from labelleak.defences import DEFENCES

    for name, cls in DEFENCES.items():
        always = " (always on: also the never-unlearned original)" if cls.always_on else ""
        click.echo(f"{name:<16} {cls.summary}{always}")
        for field, info in cls.Config.model_fields.items():
            click.echo(f"    {field} = {info.default!r}: {info.description}")


@cli.command()
def attacks() -> None:
    """List the attacks and baselines: the knowledge each needs, its rules and settings."""
    from labelleak.attacks import ATTACKS
    from labelleak.attacks.base import FIT_ON_SHADOWS

    for name, cls in ATTACKS.items():
        default = cls()
        needs = ", ".join(sorted(default.needs())) or "nothing"
        fitted = [rule for rule in cls.rules if rule in FIT_ON_SHADOWS]
        if "shadows" not in default.needs() and fitted:
            needs += f" (and shadow runs for rules {', '.join(fitted)})"
        click.echo(
            f"{name:<20} needs {needs}; rules {', '.join(cls.rules)} "
            f"(by default {', '.join(default.rules)})"
        )
        if cls.summary:
            click.echo(f"    {cls.summary}")
        for field, info in cls.Config.model_fields.items():
            click.echo(f"    {field} = {info.default!r}: {info.description}")
    click.echo(
        "\nRule top names as many classes as the attacker is told were forgotten (a run tells it "
        "each target's count); every other rule decides how many itself, possibly none."
    )


@cli.command()
def archs() -> None:
    """List the architectures."""
    from labelleak.models import ARCHITECTURE_NOTES

    for name, note in ARCHITECTURE_NOTES.items():
        click.echo(f"{name:<9} {note}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line and exit 2 for user errors, exit 130 on Ctrl-C."""
    try:
        cli.main(args=argv, standalone_mode=False)
    except LabelleakError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
