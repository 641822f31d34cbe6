"""Orbax checkpoints of the train state in WORKDIR/checkpoints/<step>/.

Each step directory holds two items: `params` (alone, so that sampling and
evaluation can load it without knowing the optimizer) and `train` (step,
optimizer state, rng). Saves are asynchronous: the device-to-host copy happens
before `save` returns (so the train step may donate the state right after), the
writing happens in the background. Orbax writes into a temporary directory and
renames it when complete, so a run killed during a save leaves the previous
checkpoints intact and the partial one is ignored and cleaned up on restart.

A step directory damaged afterwards (a file truncated or deleted) is skipped:
resuming moves it aside to `<step>.damaged` (orbax ignores that name) and
restores the newest intact step; `restore_params` skips it without moving it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from seqmodels.training.state import TrainState

CHECKPOINT_DIR = 'checkpoints'
DAMAGED_SUFFIX = '.damaged'


class CheckpointError(RuntimeError):
    """The checkpoints in a workdir cannot be resumed from (all damaged, or another model)."""

    exit_code = 1


class _QuietOrbax(logging.Filter):
    """Orbax logs dozens of INFO lines per save through absl; keep its warnings only."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


_quiet_orbax = _QuietOrbax()
logging.getLogger('absl').addFilter(_quiet_orbax)


@contextlib.contextmanager
def _quiet_failed_reads():
    """A failed orbax read leaves coroutines and loop callbacks behind that print
    'Exception ignored ... Event loop is closed' tracebacks or 'coroutine ... was
    never awaited' warnings when collected; the failure itself is reported as one
    line, so these are dropped."""
    previous = sys.unraisablehook

    def hook(unraisable):
        origin = getattr(getattr(unraisable.object, 'cr_code', None), 'co_filename', '')
        closed = isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(
            unraisable.exc_value
        )
        if not (closed or '/orbax/' in origin):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', r'coroutine .* was never awaited', RuntimeWarning)
            try:
                yield
            finally:
                gc.collect()
    finally:
        sys.unraisablehook = previous


def _reason(error: BaseException) -> str:
    """One line for a log: the error type and what went wrong, capped.

    TensorStore's messages nest every driver it went through and end with the
    whole spec; its status code and last 'Error reading' clause (which names the
    file) are the part a person needs.
    """
    lines = re.split(r' \[tensorstore_spec', str(error))[0].strip().splitlines()
    text = lines[0] if lines else ''
    code = re.match(r'([A-Z_]{3,}): ', text)
    clause = text.rfind('Error reading ')
    if code and clause > 0:
        text = f'{code.group(1)}: {text[clause:]}'
    line = f'{type(error).__name__}: {text}' if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + '...'


def _item_tree(metadata, item: str):
    """The tree of ArrayMetadata saved for `item`, or None where it is unreadable."""
    tree = metadata[item] if metadata is not None else None
    return getattr(tree, 'tree', tree)


def _leaf_shapes(tree) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{key path: shape}, with the path spelled the same for dicts, lists and dataclasses
    (orbax's metadata stores every node as a dict or a list)."""

    def name(key):
        for attribute in ('key', 'idx', 'name'):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)

    return {
        tuple(name(k) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _difference(saved, expected) -> str | None:
    """The first way the saved tree differs from the expected one, or None."""
    saved, expected = _leaf_shapes(saved), _leaf_shapes(expected)
    for path in sorted(set(saved) | set(expected)):
        where = '/'.join(path)
        if path not in saved:
            return f'{where} is not in the checkpoint'
        if path not in expected:
            return f'the checkpoint has {where}, which this config does not build'
        if saved[path] != expected[path]:
            return f'{where} has shape {saved[path]} there, {expected[path]} here'
    return None


def _all_processes_max(value: int) -> int:
    """The largest `value` over all processes: every process takes the same branch."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.int32(value))))


def _move_aside(path: str) -> str:
    """Renames <step> to <step>.damaged (or .damaged.1, ...): a later save of the
    same step then does not collide, and nothing is deleted."""
    target = path + DAMAGED_SUFFIX
    index = 0
    while os.path.exists(target):
        index += 1
        target = f'{path}{DAMAGED_SUFFIX}.{index}'
    os.rename(path, target)
    return target


def _manager(directory: str, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    # Handlers named up front so that item_metadata can be read before any restore.
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_names=('params', 'train'),
        item_handlers={
            'params': ocp.StandardCheckpointHandler(),
            'train': ocp.StandardCheckpointHandler(),
        },
    )


class Checkpointer:
    """Saves TrainStates every so often, keeps the last `keep`, restores the latest."""

    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save,
        )
        self._manager = _manager(self.directory, options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState) -> None:
        step = int(jax.device_get(state.step))
        train = {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params), train=ocp.args.StandardSave(train)
            ),
            force=True,
        )

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
        """The checkpoint at `step` (default: latest) laid out like `abstract_state`.

        `abstract_state` is a TrainState of jax.ShapeDtypeStruct with shardings: a
        checkpoint written on any number of devices restores onto this mesh.
        """
        step = self.latest_step() if step is None else step
        train = {
            'step': abstract_state.step,
            'opt_state': abstract_state.opt_state,
            'rng': abstract_state.rng,
        }
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_state.params),
                train=ocp.args.StandardRestore(train),
            ),
        )
        return TrainState(
            step=restored['train']['step'],
            params=restored['params'],
            opt_state=restored['train']['opt_state'],
            rng=restored['train']['rng'],
        )

    def _mismatch(self, step: int, abstract_state: TrainState) -> str | None:
        """How a readable checkpoint differs from `abstract_state`; None if it does not
        or if its metadata is unreadable (then it is damaged, not different)."""
        try:
            metadata = self._manager.item_metadata(step)
            saved = {
                'params': _item_tree(metadata, 'params'),
                'train': _item_tree(metadata, 'train'),
            }
        except Exception:  # unreadable metadata is damage
            return None
        if saved['params'] is None or saved['train'] is None:
            return None
        expected = {
            'params': abstract_state.params,
            'train': {
                'step': abstract_state.step,
                'opt_state': abstract_state.opt_state,
                'rng': abstract_state.rng,
            },
        }
        return _difference(saved, expected)

    def restore_latest(self, abstract_state: TrainState) -> tuple[int, TrainState] | None:
        """(step, state) of the newest intact checkpoint; None when there is none at all.

        A newer step that fails to restore is logged and moved aside to
        <step>.damaged by process 0. Raises CheckpointError when steps exist but
        none restores, or when the newest one holds another model or optimizer
        than `abstract_state` (a config change, not damage: nothing is moved).
        """
        damaged: list[tuple[int, str]] = []
        with _quiet_failed_reads():
            for step in sorted(self._manager.all_steps(), reverse=True):
                try:
                    state, problem = self.restore(abstract_state, step), None
                except Exception as error:  # any failure to read is damage
                    # Only the text: the error's frames hold orbax's coroutines.
                    state, problem = None, _reason(error)
                if _all_processes_max(int(problem is not None)) == 0:
                    break
                if not damaged:
                    difference = self._mismatch(step, abstract_state)
                    if _all_processes_max(int(difference is not None)):
                        raise CheckpointError(
                            f'checkpoint step {step} in {self.directory} does not fit the '
                            f'model and optimizer of this config: '
                            f'{difference or "it differs on another process"}; resume with '
                            f'the config it was saved with '
                            f'({os.path.join(os.path.dirname(self.directory), "config.json")})'
                            f' or start in a new --workdir'
                        )
                damaged.append((step, problem or 'failed on another process'))
            else:
                state = None
        if damaged and state is None:
            for step, reason in damaged:
                absl_logging.warning('checkpoint step %d is damaged (%s)', step, reason)
            raise CheckpointError(
                f'no intact checkpoint in {self.directory}: steps '
                f'{", ".join(str(step) for step, _ in damaged)} all fail to restore (step '
                f'{damaged[0][0]}: {damaged[0][1]}); to start fresh use a new --workdir or '
                f'move {self.directory} away'
            )
        if damaged:
            resumed = int(jax.device_get(state.step))
            for step, reason in damaged:
                path = os.path.join(self.directory, str(step))
                if jax.process_index() == 0:
                    moved = _move_aside(path)
                    absl_logging.warning(
                        'checkpoint step %d is damaged (%s); moved it to %s and resuming '
                        'from step %d',
                        step,
                        reason,
                        moved,
                        resumed,
                    )
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices('seqmodels_checkpoints_moved_aside')
            self._manager.reload()  # its cached step list still names the moved steps
        return None if state is None else (int(jax.device_get(state.step)), state)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def restore_params(workdir: str, step: int | None = None):
    """The parameters of the latest (or `step`) checkpoint in `workdir`, as numpy.

    Needs neither the model nor the optimizer: the tree comes from the checkpoint
    metadata, so it works in sampling or evaluation modes of a driver. Without
    `step`, a damaged newest checkpoint is skipped with a warning (and left in
    place); a damaged requested `step` raises CheckpointError.
    """
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'no checkpoint in {directory}')
    with _manager(directory, ocp.CheckpointManagerOptions(create=False)) as manager:
        saved = sorted(manager.all_steps())
        if not saved:
            raise FileNotFoundError(f'no checkpoint in {directory}')
        if step is not None and step not in saved:
            raise FileNotFoundError(
                f'no checkpoint for step {step} in {directory}; saved steps: '
                f'{", ".join(map(str, saved))}'
            )
        damaged = []
        with _quiet_failed_reads():
            for candidate in [step] if step is not None else saved[::-1]:
                try:
                    params = _restore_params(manager, candidate)
                except Exception as error:  # any failure to read is damage
                    damaged.append((candidate, _reason(error)))
                    continue
                for bad, reason in damaged:
                    absl_logging.warning(
                        'checkpoint step %d in %s is damaged (%s); using step %d',
                        bad,
                        directory,
                        reason,
                        candidate,
                    )
                return params
    if step is not None:
        raise CheckpointError(f'checkpoint step {step} in {directory} is damaged: {damaged[0][1]}')
    raise CheckpointError(
        f'no intact checkpoint in {directory}: steps '
        f'{", ".join(str(bad) for bad, _ in damaged)} all fail to restore (step '
        f'{damaged[0][0]}: {damaged[0][1]})'
    )


def _restore_params(manager: ocp.CheckpointManager, step: int):
    tree = _item_tree(manager.item_metadata(step), 'params')
    if tree is None:
        raise FileNotFoundError(f'the metadata of params in step {step} is missing')
    # A numpy target restores on the host whatever mesh wrote the checkpoint.
    target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), tree)
    restored = manager.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))
    )
    return restored['params']
