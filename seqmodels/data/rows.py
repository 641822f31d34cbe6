"""Which rows of a global batch each process loads.

The training mesh orders devices by process (`seqmodels.training.sharding.make_mesh`),
so process p of P owns the contiguous rows [p*B/P, (p+1)*B/P) of a global batch of B
rows. Every loader asks `process_rows` for its share, so all of them agree with the
mesh, and the P shards of a batch concatenate, in process order, to the batch that a
single process would load.
"""

from __future__ import annotations

from seqmodels.data.errors import DataError


def process_rows(
    global_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    name: str = 'batch_size',
) -> slice:
    """The rows [p*B/P, (p+1)*B/P) of a global batch of B rows that process p of P loads.

    `process_index` and `process_count` default to this JAX process's. `name` is the
    config key that set the batch size, for the error when P does not divide it
    (a `DataError`, which drivers print as one line).
    """
    if process_index is None or process_count is None:
        import jax  # pylint: disable=import-outside-toplevel  # only for the defaults

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f'process_index={process_index} is not in [0, {process_count})')
    if global_batch_size % process_count:
        raise DataError(
            f'{name}={global_batch_size} is not divisible by the {process_count} processes: '
            f'each process loads an equal share of the global batch, so use a multiple '
            f'of {process_count}'
        )
    local = global_batch_size // process_count
    return slice(process_index * local, (process_index + 1) * local)


def process_batch(
    examples,
    index: int,
    global_batch_size: int,
    process_index: int,
    process_count: int,
    name: str = 'batch_size',
):
    """This process's rows of global batch `index` of a `grain.MapDataset` of examples.

    Global batch `index` is examples [index*B, (index+1)*B); the rows come back stacked
    by grain's `batch`, a leading axis of B/P.
    """
    rows = process_rows(global_batch_size, process_index, process_count, name)
    first = index * global_batch_size
    return examples[first + rows.start : first + rows.stop].batch(rows.stop - rows.start)[0]
