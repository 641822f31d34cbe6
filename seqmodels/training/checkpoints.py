"""Orbax checkpoints of the train state in WORKDIR/checkpoints/<step>/.

Each step directory holds two items: `params` (alone, so that sampling and
evaluation can load it without knowing the optimizer) and `train` (step,
optimizer state, rng). Saves are asynchronous: the device-to-host copy happens
before `save` returns (so the train step may donate the state right after), the
writing happens in the background. Orbax writes into a temporary directory and
renames it when complete, so a run killed during a save leaves the previous
checkpoints intact and the partial one is ignored and cleaned up on restart.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from seqmodels.training.state import TrainState

CHECKPOINT_DIR = 'checkpoints'


class _QuietOrbax(logging.Filter):
    """Orbax logs dozens of INFO lines per save through absl; keep its warnings only."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or '/orbax/' not in record.pathname


_quiet_orbax = _QuietOrbax()
logging.getLogger('absl').addFilter(_quiet_orbax)


class Checkpointer:
    """Saves TrainStates every so often, keeps the last `keep`, restores the latest."""

    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=('params', 'train'))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState) -> None:
        step = int(jax.device_get(state.step))
        train = {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng}
        self._manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(train)), force=True)

    def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
        """The checkpoint at `step` (default: latest) laid out like `abstract_state`.

        `abstract_state` is a TrainState of jax.ShapeDtypeStruct with shardings: a
        checkpoint written on any number of devices restores onto this mesh.
        """
        step = self.latest_step() if step is None else step
        train = {'step': abstract_state.step, 'opt_state': abstract_state.opt_state,
                 'rng': abstract_state.rng}
        restored = self._manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state.params),
            train=ocp.args.StandardRestore(train)))
        return TrainState(step=restored['train']['step'], params=restored['params'],
                          opt_state=restored['train']['opt_state'],
                          rng=restored['train']['rng'])

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def restore_params(workdir: str, step: int | None = None):
    """The parameters of the latest (or `step`) checkpoint in `workdir`, as numpy.

    Needs neither the model nor the optimizer: the tree comes from the checkpoint
    metadata, so it works in sampling or evaluation modes of a driver.
    """
    directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f'no checkpoint in {directory}')
    with ocp.CheckpointManager(
            directory, item_names=('params', 'train'),
            item_handlers={'params': ocp.StandardCheckpointHandler(),
                           'train': ocp.StandardCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(create=False)) as manager:
        saved = sorted(manager.all_steps())
        if not saved:
            raise FileNotFoundError(f'no checkpoint in {directory}')
        step = saved[-1] if step is None else step
        if step not in saved:
            raise FileNotFoundError(
                f'no checkpoint for step {step} in {directory}; saved steps: '
                f'{", ".join(map(str, saved))}')
        metadata = manager.item_metadata(step)['params']
        # A numpy target restores on the host whatever mesh wrote the checkpoint.
        target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype),
                              getattr(metadata, 'tree', metadata))
        restored = manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(target)))
    return restored['params']
