"""Data-parallel SPMD over all devices of all processes.

The mesh has one axis, 'data'. Batches are sharded on their leading axis,
parameters and optimizer state are replicated. Devices are ordered by process,
so process p owns the contiguous rows [p*B/P, (p+1)*B/P) of a global batch of B
rows: each process loads only those rows (see `process_rows`, defined with the
loaders in `seqmodels.data.rows` and re-exported here).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from seqmodels.data.rows import process_rows

__all__ = ['DATA_AXIS', 'batch_sharding', 'global_batch', 'initialize_distributed',
           'make_mesh', 'process_rows', 'replicated']

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> None:
    """Joins a multi-process run; a no-op for a single process.

    Call it before any other JAX call. On CPU, cross-process collectives use gloo
    (set explicitly: it must be chosen before the CPU backend starts). On TPU,
    SLURM or Open MPI the arguments may be left out and are detected.
    """
    if num_processes is not None and num_processes <= 1:
        return
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id, **kwargs)


def make_mesh(devices=None) -> Mesh:
    """A 1-D 'data' mesh over all devices, grouped by process."""
    devices = jax.devices() if devices is None else devices
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch, mesh: Mesh, name: str = 'batch'):
    """Global arrays sharded on 'data' from this process's rows of every leaf.

    Every leaf must have the batch as leading axis, with the same number of rows,
    divisible by the number of local devices.
    """
    leaves = jax.tree.leaves(local_batch)
    if not leaves:
        raise ValueError(f'{name} is empty')
    rows = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    local_devices = mesh.local_mesh.size
    if len(rows) != 1 or None in rows:
        raise ValueError(f'every array of {name} needs the batch as leading axis, with the '
                         f'same number of rows; got shapes '
                         f'{jax.tree.map(np.shape, local_batch)}')
    (num_rows,) = rows
    if num_rows % local_devices:
        raise ValueError(f'{name} has {num_rows} rows on this process, not divisible by its '
                         f'{local_devices} local devices')
    sharding = batch_sharding(mesh)
    process_count = jax.process_count()

    def to_global(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(
            sharding, x, (x.shape[0] * process_count,) + x.shape[1:])

    return jax.tree.map(to_global, local_batch)
