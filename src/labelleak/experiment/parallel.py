"""Run a grid in parallel: worker processes on this machine, or tasks on a Ray cluster.

The parent expands the grid and hands workers small picklable :class:`GridTask` objects (the config
as a JSON-safe dump, the output and cache folders, the cells). Each worker builds its own
:class:`~labelleak.experiment.runner.ExperimentRunner` on the shared cache folder, computes its
cells and writes each finished cell's JSON file itself, atomically; the parent only rebuilds the
CSVs from those files. The work runs in three phases, so that no model is trained twice even
though the cache would tolerate it (two processes storing the same key keep one copy):

A. ``originals``: one task per (dataset, seed) trains (or loads) the never-unlearned original;
   beside them, when an attack needs shadow models, one ``shadows`` task per knowledge setting
   trains the attacker's shadow models into the cache (they depend only on the attacker's own
   data, not on any target, so they keep the workers busy while an original trains alone);
B. ``unlearn``: one task per missing unlearning cell, loading its original from the cache;
C. ``attack``: the missing attack cells, grouped by knowledge setting (dataset, seed, attacker
   classes) when an attack needs shadow models, since a setting's targets share them (loaded
   from the cache); one task per target otherwise.

A worker killed mid-task loses only the cell it was computing: the others are on disk, and a
rerun with the same output folder skips them (as does a retried Ray task). With Ray, the output
and cache folders must be on a filesystem every node sees at the same path, labelleak must be
installed on every node, and the data folder must be readable from every node.

Threads: convolutional models' training results change in the last bits with torch's intra-op
thread count (measured: LeNet-5 on MNIST gives different weights with 1, 2 and 4 threads; the MLP
on digits does not), which can flip a borderline attack decision. Workers therefore use a fixed
thread count per process, 1 by default whatever the number of workers, so every parallel run of a
grid gives the same tables; a serial run keeps torch's default unless ``threads`` is given, and
matches a parallel run bit for bit at the same thread count.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labelleak.errors import LabelleakError, unknown_choice
from labelleak.utils import TABLE_REFRESH_SECONDS, Every

# Heavy modules (torch, pandas, the runner) are imported where used: a spawned worker imports
# this module to run its initializer, and the parent's import must not cost every CLI command.
if TYPE_CHECKING:
    import pandas as pd

    from labelleak.experiment.attacking import AttackCell
    from labelleak.experiment.runner import Cell, ExperimentRunner

EXECUTORS = ("serial", "processes", "ray")
ORIGINALS, SHADOWS, UNLEARN, ATTACK = "originals", "shadows", "unlearn", "attack"
#: Intra-op threads per worker process unless told otherwise (see the module's note on threads).
DEFAULT_WORKER_THREADS = 1
#: Ray retries a task whose worker died this many times; a retry skips the cells already written.
RAY_TASK_RETRIES = 3

RERUN_HINT = "finished cells are kept: rerun the same command to resume"


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# Tasks: what a worker receives, and what it does with it


@dataclass(frozen=True)
class GridTask:
    """One unit of work for a worker; every field pickles cheaply (no models, no tensors).

    ``cells`` holds ``(dataset, seed)`` pairs in the ``originals`` phase, :class:`Cell` objects in
    ``unlearn`` and :class:`AttackCell` objects in ``attack``; ``pictured`` names the attack cells
    that draw the inversion prototypes (the first target of each (dataset, method) in grid order,
    so the pictures do not depend on which worker finishes first). ``threads`` is torch's
    intra-op thread count for the task, ``None`` to leave the process's setting alone.
    """

    phase: str
    config: dict[str, Any]
    out_dir: str
    cache_dir: str
    cells: tuple[Any, ...]
    threads: int | None = None
    pictured: tuple[AttackCell, ...] = ()


#: One runner per worker process, reused across its tasks so data are loaded once per worker.
_RUNNERS: dict[str, ExperimentRunner] = {}


def _runner_for(task: GridTask) -> ExperimentRunner:
    from labelleak.experiment.config import parse_config
    from labelleak.experiment.runner import ExperimentRunner
    from labelleak.utils import content_hash

    key = content_hash([task.config, task.out_dir, task.cache_dir])
    if key not in _RUNNERS:
        # A worker serves one grid at a time; drop an earlier grid's models from memory.
        _RUNNERS.clear()
        config = parse_config(task.config)
        _RUNNERS[key] = ExperimentRunner(config, task.out_dir, task.cache_dir, progress=False)
    return _RUNNERS[key]


def run_task(task: GridTask) -> int:
    """Compute a task's cells in this process and write their files; return how many it computed.

    Cells whose file already exists are skipped, so a task retried after its worker died
    resumes where that worker stopped.
    """
    import torch

    if task.threads is not None and torch.get_num_threads() != task.threads:
        torch.set_num_threads(task.threads)
    runner = _runner_for(task)
    computed = 0
    if task.phase == ORIGINALS:
        for dataset, seed in task.cells:
            runner.pipeline.original(dataset, seed)
            computed += 1
    elif task.phase == SHADOWS:
        attacker = runner.attacker
        for cell in task.cells:
            # Memoised per knowledge setting: the group's other cells mostly cost nothing.
            classes = attacker.attacker_classes(cell.dataset, cell.seed, cell.gap)
            attacker.shadows(cell.dataset, cell.seed, classes, cell.method, cell.defence)
            computed += 1
    elif task.phase == UNLEARN:
        for cell in task.cells:
            if not runner.cell_path(cell).is_file():
                runner.finish_cell(cell)
                computed += 1
    elif task.phase == ATTACK:
        for cell in task.cells:
            if runner.missing_attacks(cell):
                runner.finish_attack_cell(cell, picture=cell in task.pictured)
                computed += 1
    else:
        raise ValueError(f"unknown grid phase {task.phase!r}")
    return computed


# ---------------------------------------------------------------------------------------------
# Executors: where tasks run


class Executor(ABC):
    """Runs :class:`GridTask` objects somewhere and yields each result as its task finishes.

    Use as a context manager (or call :meth:`close`) so worker processes or a local Ray instance
    are released. ``threads`` is the intra-op thread count each task sets (``None``: leave it).
    """

    name: str = ""
    threads: int | None = None

    @abstractmethod
    def map_unordered(
        self, fn: Callable[[GridTask], int], tasks: Sequence[GridTask]
    ) -> Iterator[int]:
        """Run ``fn`` on every task; yield results in completion order."""

    def start(self) -> None:  # noqa: B027 (optional hook: executors without workers keep it)
        """Connect to or start the workers now rather than at the first task (for timings)."""

    def close(self) -> None:  # noqa: B027 (optional hook: executors without workers keep it)
        """Release workers (a no-op where there are none)."""

    def describe(self) -> str:
        """Where tasks run, in words (for logs and benchmark tables)."""
        threads = "torch's default threads" if self.threads is None else f"{self.threads} thread(s)"
        return f"{self.name}, {threads}"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    """Everything in the calling process, one task after the other.

    :meth:`ExperimentRunner.run` runs its own serial loop for this executor (today's behaviour,
    one progress step per cell); :meth:`map_unordered` serves callers of :func:`run_phases`.
    """

    name = "serial"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def map_unordered(
        self, fn: Callable[[GridTask], int], tasks: Sequence[GridTask]
    ) -> Iterator[int]:
        for task in tasks:
            yield fn(task)


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group; the parent handles it and stops the workers, so
    # they need not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm would otherwise create a multiprocessing lock on its first (disabled) bar, which a
    # worker stopped with SIGTERM leaves registered: a "leaked semaphore" warning at exit.
    import threading

    from tqdm.std import tqdm

    tqdm.set_lock(threading.RLock())


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while worker processes are spawned, so they start with it ignored.

    An ignored signal stays ignored across exec, which covers a worker's start-up before its
    initializer runs; signals can only be changed from the main thread.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM (``kill``, a scheduler's stop) into ``SystemExit`` while workers run.

    By default SIGTERM ends the parent at once, and its workers, in their own processes, would
    go on computing cells nobody waits for; as an exception it reaches the handler that stops
    them. Signals can only be changed from the main thread.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ProcessExecutor(Executor):
    """``workers`` local processes (``concurrent.futures`` with the spawn start method).

    Spawned workers start clean (no inherited torch threads or locks, as fork could leave), at
    the cost of importing torch once each. A worker that dies (killed, out of memory) breaks the
    pool: the run stops with a :class:`LabelleakError` asking for a rerun, which resumes.
    """

    name = "processes"

    def __init__(self, workers: int, threads: int = DEFAULT_WORKER_THREADS) -> None:
        self.workers = workers
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return f"{self.workers} worker processes x {self.threads} thread(s)"

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
        return self._pool

    def map_unordered(
        self, fn: Callable[[GridTask], int], tasks: Sequence[GridTask]
    ) -> Iterator[int]:
        pool = self._get_pool()
        pending: set[Future[int]] = set()
        try:
            # Workers are spawned on submission.
            with _sigint_ignored():
                pending = {pool.submit(fn, task) for task in tasks}
            while pending:
                with _sigterm_raises():
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool:
            self._terminate()
            raise LabelleakError(
                f"a worker process died (killed, or out of memory); {RERUN_HINT}"
            ) from None
        except BaseException:
            # An error in a task, Ctrl-C, SIGTERM, or the caller giving up: stop the workers now
            # rather than letting them finish cells nobody waits for.
            self._terminate()
            raise

    def _terminate(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
        if terminate is not None:
            terminate()
            return
        # Older Pythons have no public way to stop running workers.
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()
        # The pool notices its dead workers at once; waiting lets it release its semaphores.
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Tasks on a Ray cluster: ``address`` ``auto``, ``ray://host:10001``, or ``None`` for a local
    instance started here (and stopped on :meth:`close`).

    Each task asks Ray for ``threads`` CPUs, so Ray never runs more tasks on a node than it has
    cores for; ``workers``, when given, caps the tasks in flight (and sizes a local instance).
    Ray retries a task whose worker died; the retry skips the cells already written.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads: int = DEFAULT_WORKER_THREADS,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise LabelleakError(
                "the ray executor needs Ray: pip install 'labelleak[ray]'"
            ) from None
        self._ray = ray
        self.address = address
        self.workers = workers
        self.threads = threads
        self._started = False

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        cap = f", at most {self.workers} tasks at once" if self.workers else ""
        return f"Ray on {where} ({self.threads} thread(s) per task{cap})"

    def start(self) -> None:
        self._connect()

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        options: dict[str, Any] = {}
        if self.address is None:
            # Workers run quietly (no progress bars); a task's error comes back with the result.
            options = {"include_dashboard": False, "log_to_driver": False}
            if self.workers is not None:
                options["num_cpus"] = self.workers * self.threads
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            text = str(error).strip()
            summary = text.splitlines()[0] if text else type(error).__name__
            raise LabelleakError(f"cannot connect to Ray at {self.address}: {summary}") from None
        self._started = True

    def map_unordered(
        self, fn: Callable[[GridTask], int], tasks: Sequence[GridTask]
    ) -> Iterator[int]:
        ray = self._ray
        self._connect()
        remote = ray.remote(num_cpus=self.threads, max_retries=RAY_TASK_RETRIES)(fn)
        queue = list(tasks)
        limit = self.workers or len(queue)
        pending: list[Any] = []
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    pending.append(remote.remote(queue.pop(0)))
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        except ray.exceptions.RayTaskError as error:
            self._cancel(pending)
            # A user error inside a task reads as it would in a serial run.
            if isinstance(error.cause, LabelleakError):
                raise error.cause from None
            raise
        except ray.exceptions.RayError as error:
            self._cancel(pending)
            summary = str(error).strip().splitlines()[0]
            raise LabelleakError(f"a Ray task failed ({summary}); {RERUN_HINT}") from None
        except BaseException:
            self._cancel(pending)
            raise

    def _cancel(self, pending: list[Any]) -> None:
        for ref in pending:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _positive(option: str, value: str | int | None) -> int | None:
    """``value`` as a whole number >= 1 (``None`` stays ``None``), else a one-line error."""
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(value).strip() != str(number):
        raise LabelleakError(f"{option} must be a whole number >= 1, got {value!r}")
    return number


def make_executor(
    executor: str | None = None,
    workers: str | int | None = None,
    address: str | None = None,
    threads: str | int | None = None,
) -> Executor:
    """The executor the ``run`` command's options describe; bad values raise one-line errors.

    ``executor`` is ``serial``, ``processes`` or ``ray``; ``None`` means ``ray`` when an
    ``address`` is given, ``processes`` when ``workers`` > 1, else ``serial``. ``workers`` is
    the number of worker processes (default: the cores divided by ``threads``) or a cap on Ray
    tasks in flight. ``address`` is a Ray cluster's address (Ray only). ``threads`` is torch's
    intra-op threads per worker (default 1; for a serial run, torch's default unless given).
    """
    count = _positive("--workers", workers)
    per_worker = _positive("--threads", threads)
    if executor is None:
        if address is not None:
            executor = "ray"
        else:
            executor = "processes" if count is not None and count > 1 else "serial"
    if executor not in EXECUTORS:
        raise unknown_choice("executor", executor, EXECUTORS)
    if address is not None and executor != "ray":
        raise LabelleakError("--address names a Ray cluster; use it with --executor ray")
    if executor == "serial":
        if count is not None and count > 1:
            raise LabelleakError(
                "--workers > 1 runs in parallel; drop --executor serial or use processes or ray"
            )
        return SerialExecutor(per_worker)
    per_worker = per_worker or DEFAULT_WORKER_THREADS
    if executor == "processes":
        return ProcessExecutor(count or max(1, available_cores() // per_worker), per_worker)
    return RayExecutor(address, count, per_worker)


# ---------------------------------------------------------------------------------------------
# The phases


def prototype_targets(targets: Sequence[AttackCell], mode: str = "first") -> set[AttackCell]:
    """The first target of each (dataset, method) in grid order: the ones whose prototypes go to
    ``DIR/prototypes/`` (none when the config's ``prototypes`` is ``none``)."""
    if mode == "none":
        return set()
    first: dict[tuple[str, str, str], AttackCell] = {}
    for cell in targets:
        first.setdefault((cell.dataset, cell.method, cell.defence), cell)
    return set(first.values())


def needs_shadows(runner: ExperimentRunner, todo: Sequence[AttackCell]) -> bool:
    """Whether an attack still to run on one of the ``todo`` targets needs shadow models."""
    missing = {name for cell in todo for name in runner.missing_attacks(cell)}
    return any("shadows" in runner.attacker.attack(name).needs() for name in missing)


def attack_groups(
    runner: ExperimentRunner, todo: Sequence[AttackCell], shadowed: bool
) -> list[list[AttackCell]]:
    """Missing attack cells split into tasks, in grid order.

    When an attack needs shadow models (``shadowed``, see :func:`needs_shadows`), targets
    attacked with the same knowledge (dataset, seed, attacker classes, the defence of the
    shadows) share them (and the
    shadow calibrations), so they form one task; otherwise every target is its own task.
    """
    if not shadowed:
        return [[cell] for cell in todo]
    groups: dict[tuple[Any, ...], list[AttackCell]] = {}
    for cell in todo:
        classes = runner.attacker.attacker_classes(cell.dataset, cell.seed, cell.gap)
        defence = runner.attacker.shadow_defence(cell.defence)
        groups.setdefault((cell.dataset, cell.seed, classes, defence), []).append(cell)
    return list(groups.values())


def _execute(
    runner: ExperimentRunner,
    executor: Executor,
    tasks: list[GridTask],
    desc: str,
    after_each: Callable[[], object] | None = None,
) -> None:
    """Run ``tasks`` with a progress bar over finished tasks; ``after_each`` rebuilds a table
    (at most every :data:`TABLE_REFRESH_SECONDS`; :func:`run_phases` rebuilds it at the end)."""
    from tqdm.auto import tqdm

    if not tasks:
        return
    bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not runner.progress)
    refresh = Every(TABLE_REFRESH_SECONDS)
    try:
        for _ in executor.map_unordered(run_task, tasks):
            if after_each is not None and refresh.due():
                after_each()
            bar.update()
    finally:
        bar.close()


def run_phases(runner: ExperimentRunner, cells: list[Cell], executor: Executor) -> pd.DataFrame:
    """Compute ``runner``'s missing cells with ``executor`` (phases A, B, C); return the table.

    The parent rebuilds ``unlearning.csv`` and ``attacks.csv`` from the cell files after every
    finished task and once more at the end, also when a phase fails.
    """
    from labelleak.experiment.config import parse_config

    config = runner.config
    dump = config.model_dump(mode="json")
    # Workers rebuild the config from this dump; cell file names hash it, so it must round-trip
    # exactly or workers would write files the parent never reads.
    if parse_config(dump).model_dump(mode="json") != dump:
        raise RuntimeError("the config does not survive a JSON round trip; cannot distribute it")
    common = {
        "config": dump,
        "out_dir": str(runner.out_dir.resolve()),
        "cache_dir": str(runner.pipeline.store.root.resolve()),
        "threads": executor.threads,
    }
    todo = [cell for cell in cells if not runner.cell_path(cell).is_file()]
    targets = runner.attack_cells(cells) if config.attacks else []
    attack_todo = [cell for cell in targets if runner.missing_attacks(cell)]
    try:
        # A: every original some missing cell needs, once each, and the shadow models of every
        # knowledge setting with a missing attack cell (originals first: they take longest).
        pairs = list(dict.fromkeys((c.dataset, c.seed) for c in [*todo, *attack_todo]))
        originals = [GridTask(ORIGINALS, cells=(pair,), **common) for pair in pairs]
        shadowed = needs_shadows(runner, attack_todo)
        groups = attack_groups(runner, attack_todo, shadowed)
        shadows = (
            [GridTask(SHADOWS, cells=tuple(group), **common) for group in groups]
            if shadowed
            else []
        )
        _execute(runner, executor, [*originals, *shadows], "originals and shadows")
        # B: the unlearning cells, one task per unlearned model (its defences with it, so two
        # workers never make the same model).
        same_model: dict[tuple[Any, ...], list[Cell]] = {}
        for cell in todo:
            same_model.setdefault((cell.dataset, cell.seed, cell.method, cell.forget), []).append(
                cell
            )
        unlearn = [GridTask(UNLEARN, cells=tuple(group), **common) for group in same_model.values()]
        _execute(runner, executor, unlearn, "unlearn", lambda: runner.write_table(cells))
        # C: the attack cells, grouped by knowledge setting where they share shadow models.
        pictured = prototype_targets(targets, config.prototypes)
        attack = [
            GridTask(
                ATTACK,
                cells=tuple(group),
                pictured=tuple(c for c in group if c in pictured),
                **common,
            )
            for group in groups
        ]
        _execute(runner, executor, attack, "attack", lambda: runner.write_attack_table(targets))
    finally:
        # Whatever finished before an error or a kill is in the tables.
        table = runner.write_table(cells)
        if config.attacks:
            runner.write_attack_table(targets)
    return table
