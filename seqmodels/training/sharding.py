"""SPMD over all devices of all processes, and joining a multi-process run.

The mesh comes from `config.mesh`, e.g. 'data:-1' (the default: every device on
one data-parallel axis) or 'data:2,fsdp:4' (sizes multiply to the device count;
-1 stands for what the others leave). Batches are sharded on their leading axis
over data x fsdp. Parameters and optimizer state are replicated over 'data' and,
with an 'fsdp' axis, sharded over it (fully sharded data parallelism, Zhao et al.
2023; ZeRO-3, Rajbhandari et al. 2020): each leaf is split along one axis that the
fsdp size divides (`fsdp_spec`), and XLA gathers the parameters where a step
needs them and reduce-scatters the gradients. Devices are ordered by process, so
process p owns the contiguous rows [p*B/P, (p+1)*B/P) of a global batch of B
rows: each process loads only those rows (see `process_rows`, defined with the
loaders in `seqmodels.data.rows` and re-exported here).

A process is part of a multi-process run when flags or environment variables
say so (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`) or when
a scheduler started several tasks of it (SLURM, Open MPI, a multi-host TPU
slice); `detect_cluster` reads which, `join_cluster` joins it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from seqmodels.data.rows import process_rows

__all__ = [
    'DATA_AXIS',
    'FSDP_AXIS',
    'Cluster',
    'batch_sharding',
    'detect_cluster',
    'fsdp_spec',
    'global_batch',
    'initialize_distributed',
    'join_cluster',
    'make_mesh',
    'parse_mesh',
    'process_rows',
    'replicated',
    'state_shardings',
]

DATA_AXIS = 'data'
FSDP_AXIS = 'fsdp'
MESH_AXES = (DATA_AXIS, FSDP_AXIS)  # outer to inner: fsdp groups are neighbouring devices
DEFAULT_MESH = 'data:-1'


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> None:
    """Joins a multi-process run; a no-op for a single process.

    Call it before any other JAX call. On CPU, cross-process collectives use gloo
    (set explicitly: it must be chosen before the CPU backend starts). On TPU,
    SLURM or Open MPI the arguments may be left out and are detected.
    """
    if num_processes is not None and num_processes <= 1:
        return
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **kwargs,
    )


ENV_COORDINATOR_ADDRESS = 'JAX_COORDINATOR_ADDRESS'  # JAX itself reads this one too
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'
DISTRIBUTED_MODES = ('auto', 'on', 'off')


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The multi-process run this process belongs to.

    `source` says what told us (flags, the JAX_* variables, SLURM, Open MPI, TPU).
    A field left None is for `jax.distributed.initialize` to detect from the same
    scheduler (e.g. SLURM's coordinator, the first host of SLURM_STEP_NODELIST).
    """

    source: str
    num_processes: int | None
    process_id: int | None
    coordinator_address: str | None

    def describe(self) -> str:
        count = '?' if self.num_processes is None else self.num_processes
        index = '?' if self.process_id is None else self.process_id
        where = self.coordinator_address or 'detected by JAX'
        return f'process {index} of {count} ({self.source}; coordinator {where})'


def _int_var(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, '').strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f'environment variable {name}={value!r} is not an integer') from None


def _scheduler(environ: Mapping[str, str]) -> tuple[str, int | None, int | None, bool] | None:
    """(name, task count, this task's index, whether JAX finds the coordinator) of the
    scheduler that started this process, or None."""
    if 'SLURM_JOB_ID' in environ and 'SLURM_PROCID' in environ:
        # The tasks of this job step (srun), not of the allocation: a batch script run
        # by sbatch --ntasks=N is one task until it calls srun.
        count = _int_var(environ, 'SLURM_STEP_NUM_TASKS') or _int_var(environ, 'SLURM_NTASKS')
        return (
            'SLURM',
            count,
            _int_var(environ, 'SLURM_PROCID'),
            ('SLURM_STEP_NODELIST' in environ and 'SLURM_LOCALID' in environ),
        )
    if 'OMPI_COMM_WORLD_SIZE' in environ:
        return (
            'Open MPI',
            _int_var(environ, 'OMPI_COMM_WORLD_SIZE'),
            _int_var(environ, 'OMPI_COMM_WORLD_RANK'),
            'OMPI_MCA_orte_hnp_uri' in environ,
        )
    hosts = [h for h in environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h.strip()]
    if len(hosts) > 1 or environ.get('MEGASCALE_COORDINATOR_ADDRESS'):
        # Multislice counts slices x hosts: JAX reads both from the TPU environment.
        return 'TPU', None, None, True
    return None


def detect_cluster(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Cluster | None:
    """The multi-process run this process is in, or None for a run of one process.

    Arguments (a driver's flags) take precedence over the JAX_* variables, which
    take precedence over a scheduler's (SLURM_STEP_NUM_TASKS or SLURM_NTASKS and
    SLURM_PROCID; OMPI_COMM_WORLD_SIZE and _RANK; TPU_WORKER_HOSTNAMES). A count
    of 1 is a run of one process (one SLURM array task): nothing to join. Raises
    ValueError, naming the flag, for an incomplete or inconsistent description.
    """
    environ = os.environ if environ is None else environ
    source = 'flags'
    if coordinator_address is None and environ.get(ENV_COORDINATOR_ADDRESS):
        coordinator_address, source = environ[ENV_COORDINATOR_ADDRESS], ENV_COORDINATOR_ADDRESS
    if num_processes is None and _int_var(environ, ENV_NUM_PROCESSES) is not None:
        num_processes, source = _int_var(environ, ENV_NUM_PROCESSES), ENV_NUM_PROCESSES
    if process_id is None and _int_var(environ, ENV_PROCESS_ID) is not None:
        process_id = _int_var(environ, ENV_PROCESS_ID)
    scheduler = _scheduler(environ)
    finds_coordinator = False
    if scheduler is not None and num_processes is None:
        source, num_processes, scheduler_id, finds_coordinator = scheduler
        process_id = scheduler_id if process_id is None else process_id
        if num_processes is None:  # a TPU slice: JAX knows the rest
            return Cluster(source, None, None, coordinator_address)
    if num_processes is None:
        if coordinator_address or process_id is not None:
            raise ValueError(
                f'--coordinator_address and --process_id join a multi-process run '
                f'and need --num_processes (or {ENV_NUM_PROCESSES})'
            )
        return None
    if num_processes < 1:
        raise ValueError(f'--num_processes must be >= 1, got {num_processes}')
    if num_processes == 1:
        return None
    if process_id is None:
        raise ValueError(
            f'a run of {num_processes} processes needs --process_id '
            f'(or {ENV_PROCESS_ID}) on each, from 0 to {num_processes - 1}'
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f'--process_id must lie in [0, {num_processes}), got {process_id}')
    if coordinator_address is None and not finds_coordinator:
        raise ValueError(
            f'a run of {num_processes} processes needs --coordinator_address '
            f'(or {ENV_COORDINATOR_ADDRESS}): HOST:PORT of process 0, the same '
            f'on every process'
        )
    return Cluster(source, num_processes, process_id, coordinator_address)


def join_cluster(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = 'auto',
    environ: Mapping[str, str] | None = None,
    **kwargs,
) -> Cluster | None:
    """Joins the run `detect_cluster` finds (mode 'auto'); 'on' also joins when nothing
    is detected, leaving everything to JAX's own detection (a TPU pod slice on GCE,
    whose hosts are known only to its metadata server); 'off' never joins.

    Call it before anything touches JAX devices. Returns the Cluster joined, or None.
    `kwargs` go to `jax.distributed.initialize` (e.g. initialization_timeout).
    """
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(
            f'--distributed must be one of {", ".join(DISTRIBUTED_MODES)}, got {mode!r}'
        )
    if mode == 'off':
        return None
    cluster = detect_cluster(coordinator_address, num_processes, process_id, environ)
    if cluster is None and mode == 'on':
        cluster = Cluster('--distributed=on', num_processes, process_id, coordinator_address)
    if cluster is None or jax.distributed.is_initialized():
        return cluster
    initialize_distributed(
        cluster.coordinator_address, cluster.num_processes, cluster.process_id, **kwargs
    )
    return cluster


def parse_mesh(spec: str, num_devices: int | None = None) -> dict[str, int]:
    """{axis: size} of a mesh spec such as 'data:2,fsdp:4' or 'data:-1,fsdp:2', with
    the -1 resolved when `num_devices` is given. Raises ValueError saying what is wrong.
    """
    sizes: dict[str, int] = {}
    for item in str(spec).split(','):
        name, _, size = item.strip().partition(':')
        if name not in MESH_AXES:
            raise ValueError(
                f'{spec!r}: unknown axis {name!r}; axes are '
                f'{", ".join(MESH_AXES)} (e.g. "data:-1,fsdp:2")'
            )
        if name in sizes:
            raise ValueError(f'{spec!r}: axis {name!r} appears twice')
        try:
            sizes[name] = int(size)
        except ValueError:
            raise ValueError(
                f'{spec!r}: the size of {name!r} must be an integer '
                f'(-1 for the devices left), got {size!r}'
            ) from None
        if sizes[name] == 0 or sizes[name] < -1:
            raise ValueError(f'{spec!r}: the size of {name!r} must be positive or -1')
    if list(sizes.values()).count(-1) > 1:
        raise ValueError(f'{spec!r}: at most one axis may be -1')
    if num_devices is None:
        return sizes
    known = int(np.prod([n for n in sizes.values() if n != -1]))
    if -1 in sizes.values():
        if num_devices % known:
            raise ValueError(f'{spec!r}: {num_devices} devices do not split into axes of {known}')
        sizes = {k: (num_devices // known if n == -1 else n) for k, n in sizes.items()}
    elif known != num_devices:
        raise ValueError(
            f'{spec!r}: the axis sizes multiply to {known}, not to the {num_devices} devices'
        )
    return sizes


def make_mesh(devices=None, spec: str = DEFAULT_MESH) -> Mesh:
    """A mesh of `spec`'s axes (see `parse_mesh`) over all devices, ordered by process
    (so that the flattened mesh, the order batch rows are laid out in, is too)."""
    devices = jax.devices() if devices is None else devices
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    sizes = parse_mesh(spec, len(ordered))
    names = tuple(axis for axis in MESH_AXES if axis in sizes)
    return Mesh(np.array(ordered).reshape([sizes[a] for a in names]), names)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a batch's rows are split over: all of data x fsdp."""
    return tuple(axis for axis in mesh.axis_names if axis in MESH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(batch_axes(mesh)))


def fsdp_spec(path: tuple[str, ...], shape: tuple[int, ...], fsdp_size: int) -> P:
    """How a parameter (or optimizer-state) leaf at `path` is split over 'fsdp': along
    its largest axis that fsdp_size divides, never the layer axis of a scanned stack
    (which the scan walks one layer at a time); replicated when no axis fits."""
    if fsdp_size <= 1 or not shape:
        return P()
    first = 1 if 'layers' in path and len(shape) > 1 else 0
    candidates = [i for i in range(first, len(shape)) if shape[i] % fsdp_size == 0]
    if not candidates:
        return P()
    axis = max(candidates, key=lambda i: (shape[i], -i))
    return P(*[FSDP_AXIS if i == axis else None for i in range(len(shape))])


def _path_names(path) -> tuple[str, ...]:
    names = []
    for key in path:
        for attribute in ('key', 'name', 'idx'):
            if hasattr(key, attribute):
                names.append(str(getattr(key, attribute)))
                break
    return tuple(names)


def state_shardings(abstract_state, mesh: Mesh):
    """NamedShardings for a TrainState (or any tree) of ShapeDtypeStructs on `mesh`:
    params and opt_state by `fsdp_spec`, everything else (step, rng) replicated."""
    fsdp_size = dict(zip(mesh.axis_names, mesh.devices.shape)).get(FSDP_AXIS, 1)

    def leaf(path, x):
        names = _path_names(path)
        if not names or names[0] not in ('params', 'opt_state'):
            return replicated(mesh)
        return NamedSharding(mesh, fsdp_spec(names, tuple(x.shape), fsdp_size))

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)


def global_batch(local_batch, mesh: Mesh, name: str = 'batch'):
    """Global arrays sharded over the batch axes from this process's rows of every leaf.

    Every leaf must have the batch as leading axis, with the same number of rows,
    divisible by the number of local devices.
    """
    leaves = jax.tree.leaves(local_batch)
    if not leaves:
        raise ValueError(f'{name} is empty')
    rows = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    local_devices = mesh.local_mesh.size
    if len(rows) != 1 or None in rows:
        raise ValueError(
            f'every array of {name} needs the batch as leading axis, with the '
            f'same number of rows; got shapes '
            f'{jax.tree.map(np.shape, local_batch)}'
        )
    (num_rows,) = rows
    if num_rows % local_devices:
        raise ValueError(
            f'{name} has {num_rows} rows on this process, not divisible by its '
            f'{local_devices} local devices'
        )
    sharding = batch_sharding(mesh)
    process_count = jax.process_count()

    def to_global(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(
            sharding, x, (x.shape[0] * process_count,) + x.shape[1:]
        )

    return jax.tree.map(to_global, local_batch)
