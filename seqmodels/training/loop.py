"""The training loop: one engine for every experiment.

An experiment hands `train_and_evaluate(config, workdir, task)` a `Task` (see the
Protocol below for the exact contract) and the engine does the rest: validation
of the common config keys, the mesh (`config.mesh`: data parallel, or parameters
sharded over an fsdp axis), jit-compiled sharded train and eval steps, gradient
clipping and accumulation, batches made ahead on a thread (`config.prefetch`),
checkpoints and exact resume, metrics (MFU and the time spent waiting for data
among them), progress. Calling it again on the same workdir resumes from the latest
checkpoint; `restore_params(workdir)` loads the latest parameters for sampling
or evaluation. A preemption notice (SIGTERM or SIGUSR1) saves the state after
the step in flight and raises `Preempted`; drivers exit with its `exit_code`
(75) and rerunning the same command resumes.

One update, step s (0-based; the metrics record and checkpoint of its result
carry step s + 1):

    batch  = task.train_batch(s, process_index, process_count)  # this process's rows
    key    = fold_in(run_key, s)                                 # dropout etc.
    loss, grads = mean over the k = grad_accum_steps micro-batches j of
                  grad task.loss_fn(params, micro_batch_j, key_j, deterministic=False, step=s)
                  # key_j = key if k == 1, else fold_in(key, j)
    grads  = clip_by_global_norm(grads, grad_clip_norm)
    params = optimizer update(params, grads)

Everything a step depends on is a function of (config, seed, s) or of the saved
state, which is what makes a killed run resume bitwise.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from seqmodels import flops as flops_lib
from seqmodels.errors import require
from seqmodels.precision import compute_dtype
from seqmodels.training import sharding as sharding_lib
from seqmodels.training.checkpoints import Checkpointer
from seqmodels.training.config import validate_config
from seqmodels.training.metrics import MetricWriter, Progress
from seqmodels.training.optimizers import make_optimizer
from seqmodels.training.prefetch import Prefetcher
from seqmodels.training.state import TrainState, init_train_state

Batch = Mapping[str, Any]

# aux entries that count work rather than measure it: summed over micro-batches,
# turned into throughput, not averaged into train/ metrics.
_COUNTS = {'num_tokens': 'perf/tokens_per_sec', 'num_examples': 'perf/examples_per_sec'}


class Task(Protocol):
    """What an experiment gives the engine. Methods marked optional may be absent.

    init_params(rng) -> params
        e.g. `model.init({'params': rng}, *example_inputs)['params']`. Traced
        under jit: no host side effects.
    loss_fn(params, batch, rng, deterministic: bool, step) -> (loss, aux)
        `loss` the scalar mean over the batch; `aux` a dict of scalars, logged
        as train/<name> (mean over the steps since the last record). An aux
        `num_tokens` or `num_examples` (count in this batch) is reported as
        perf/tokens_per_sec or perf/examples_per_sec instead. `rng` is a typed
        key for the 'dropout' stream, e.g. `model.apply(..., rngs={'dropout': rng})`.
        `step` is the 0-based index of the update being computed (the same s
        as train_batch(s, ...)), a traced int32 scalar under jit: step-dependent
        quantities such as a scheduled-sampling probability eps(step) are
        computed from it inside the compiled step. The engine passes it by
        keyword.
        With grad_accum_steps=k the engine averages loss, aux and gradients of
        k equal micro-batches (counts are summed), each seeing the same `step`:
        the same update as one batch for losses that are plain means over rows.
    train_batch(step, process_index, process_count) -> dict of numpy arrays
        This process's rows of global batch `step` (0-based): rows
        [p*B/P, (p+1)*B/P) of the config.batch_size rows (`sharding.process_rows`).
        Random access by step is what makes data order resumable. Every array
        has the batch as leading axis. With config.prefetch > 0 it is called on a
        background thread, one call at a time, in step order, up to `prefetch`
        steps ahead of the step being trained.
    eval_metrics(params, batch) -> dict[name, (sum, weight)]       (optional)
        Jit-compiled by the engine; eval/<name> = total sum / total weight over
        all eval batches. Padding rows get weight 0.
    eval_batches(process_index, process_count) -> iterable of batches  (optional)
        This process's rows of each eval batch; every process must yield the same
        number of batches, each with a row count divisible by its local devices.
    finalize_eval(metrics: dict[str, float]) -> dict[str, float]    (optional)
        Turns the means into what is logged, e.g. adds bits per char.
    on_eval(params, step) -> dict[str, str | float]                  (optional)
        Text samples: appended to WORKDIR/samples.txt, shown on the terminal and
        in TensorBoard. Numbers are logged as eval/<name>: metrics that need the
        host, such as BLEU of decoded text.
    model_flops(batch) -> float | None                                (optional)
        Model FLOPs of one training step on `batch` (the global batch, arrays
        with shapes). Without it the engine counts them with
        `seqmodels.flops.train_step_flops(config.model, batch)`; either gives
        perf/model_flops_per_sec and perf/mfu.
    model                                                             (optional)
        The flax module the task applies. One with a `dtype` must compute in the
        dtype config.precision names (`seqmodels.models.from_config` builds it so),
        else ConfigError before anything compiles.
    """

    def init_params(self, rng: jax.Array) -> Any: ...

    def loss_fn(
        self, params: Any, batch: Batch, rng: jax.Array, deterministic: bool, step: jax.Array
    ) -> tuple[jax.Array, dict]: ...

    def train_batch(self, step: int, process_index: int, process_count: int) -> Batch: ...


# Exit statuses a driver gives these errors (`sys.exit(error.exit_code)`), so that a
# launcher can tell a diverged run from one to requeue (sysexits.h EX_TEMPFAIL).
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss or gradient; nothing after it was saved."""

    exit_code = EXIT_DIVERGED

    def __init__(
        self, step: int, loss: float, grad_norm: float, last_checkpoint: int | None, directory: str
    ):
        self.step = step
        self.last_checkpoint = last_checkpoint
        where = (
            f'the last good checkpoint is step {last_checkpoint} in {directory}'
            if last_checkpoint is not None
            else f'no checkpoint was saved in {directory}'
        )
        super().__init__(
            f'non-finite loss or gradient at step {step} '
            f'(loss={loss}, grad_norm={grad_norm}); {where}'
        )


class Preempted(Exception):
    """A preemption notice arrived; the state after `step` is saved and rerunning resumes."""

    exit_code = EXIT_PREEMPTED

    def __init__(self, step: int, message: str | None = None):
        self.step = step
        super().__init__(message or f'preempted; checkpoint saved at step {step}')


class _PreemptionNotice:
    """Turns a cluster's preemption notice into a flag the loop reads between steps.

    One process, main thread: SIGTERM (what SLURM and Kubernetes send ahead of an
    eviction) and SIGUSR1 (what `sbatch --signal=USR1@SECONDS` asks for) set the
    flag; the previous handlers come back on exit.
    Several processes: the flag is JAX's preemption sync point (its distributed
    runtime catches SIGTERM on any process and picks one step for all of them), so
    every process saves the same step.
    """

    SIGNALS = tuple(
        getattr(signal, name) for name in ('SIGTERM', 'SIGUSR1') if hasattr(signal, name)
    )

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}
        self._shared = jax.process_count() > 1

    def __enter__(self):
        if not self._shared and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._receive)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            # None: the previous handler was not installed from Python.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _receive(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def due(self, step: int) -> bool:
        """Whether to save `step` and stop; called with every step by every process."""
        if self._shared:
            from jax.experimental import multihost_utils

            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    self.signal_name = 'SIGTERM (JAX preemption service)'
            except RuntimeError:  # jax_enable_preemption_service is off
                self._shared = False
        return self.signal_name is not None


def _split_micro_batches(batch: Batch, k: int, mesh) -> Batch:
    """(B, ...) -> (k, B/k, ...) where micro-batch j takes rows j, j+k, j+2k, ...

    Striding keeps each micro-batch's rows on the devices that hold them: every
    device owns whole groups of k consecutive rows, so no data moves.
    """
    spec = NamedSharding(mesh, P(None, sharding_lib.batch_axes(mesh)))

    def split(x):
        x = x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)
        return jax.lax.with_sharding_constraint(x, spec)

    return jax.tree.map(split, batch)


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    schedule,
    mesh,
    grad_accum_steps: int = 1,
    state_sharding=None,
):
    """The jitted update (state, global batch) -> (state, metrics); donates state.

    `state_sharding` (a TrainState of NamedShardings, `sharding.state_shardings`)
    keeps the state laid out as it came in; default: replicated.
    """

    def loss_and_grads(params, batch, rng, step):
        grad_fn = jax.value_and_grad(
            lambda p: task.loss_fn(p, batch, rng, deterministic=False, step=step), has_aux=True
        )
        (loss, aux), grads = grad_fn(params)
        return loss, dict(aux), grads

    def accumulate(params, batch, rng, step):
        micro = _split_micro_batches(batch, grad_accum_steps, mesh)
        first = jax.tree.map(lambda x: x[0], micro)
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype),
            jax.eval_shape(loss_and_grads, params, first, rng, step),
        )

        def add_micro_batch(total, inputs):
            index, batch_j = inputs
            out = loss_and_grads(params, batch_j, jax.random.fold_in(rng, index), step)
            return jax.tree.map(jnp.add, total, out), None

        (loss, aux, grads), _ = jax.lax.scan(
            add_micro_batch, zeros, (jnp.arange(grad_accum_steps), micro)
        )
        mean = lambda x: x / grad_accum_steps
        aux = {k: v if k in _COUNTS else mean(v) for k, v in aux.items()}
        return mean(loss), aux, jax.tree.map(mean, grads)

    def train_step(state: TrainState, batch: Batch):
        rng = state.step_key()
        if grad_accum_steps == 1:
            loss, aux, grads = loss_and_grads(state.params, batch, rng, state.step)
        else:
            loss, aux, grads = accumulate(state.params, batch, rng, state.step)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **aux,
            'loss': loss,
            'grad_norm': grad_norm,
            'learning_rate': schedule(state.step),
        }
        metrics = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = sharding_lib.replicated(mesh)
    state_sharding = replicated if state_sharding is None else state_sharding
    return jax.jit(
        train_step,
        in_shardings=(state_sharding, sharding_lib.batch_sharding(mesh)),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )


def make_eval_step(task: Task, mesh, params_sharding=None):
    """The jitted task.eval_metrics over global batches; params replicated unless
    `params_sharding` says otherwise."""
    replicated = sharding_lib.replicated(mesh)
    params_sharding = replicated if params_sharding is None else params_sharding
    return jax.jit(
        task.eval_metrics,
        in_shardings=(params_sharding, sharding_lib.batch_sharding(mesh)),
        out_shardings=replicated,
    )


def evaluate(task: Task, eval_step, params, mesh) -> dict[str, float]:
    """eval/<name> for every metric of task.eval_metrics, summed in float64."""
    outputs = [
        eval_step(params, sharding_lib.global_batch(local, mesh, 'eval batch'))
        for local in task.eval_batches(jax.process_index(), jax.process_count())
    ]
    sums: dict[str, list[float]] = {}
    for output in jax.device_get(outputs):
        for name, (total, weight) in output.items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(np.sum(total, dtype=np.float64))
            acc[1] += float(np.sum(weight, dtype=np.float64))
    means = {name: (s / w if w else math.nan) for name, (s, w) in sums.items()}
    if hasattr(task, 'finalize_eval'):
        means = dict(task.finalize_eval(means))
    return means


class _Window:
    """Train metrics since the last record; timing excludes evals and saves."""

    def __init__(self, peak_flops: float | None = None):
        self.peak_flops = peak_flops  # of all devices together
        self.reset()

    def reset(self):
        self.sums: dict[str, float] = {}
        self.counts = {name: 0.0 for name in _COUNTS}
        self.steps = 0
        self.flops: float | None = 0.0  # None once a step's count is unknown
        self.data_wait = 0.0  # seconds the loop waited for batches
        self.last: dict[str, float] = {}
        self.start = time.perf_counter()
        self.paused = 0.0

    def add(self, metrics: dict[str, float], flops: float | None = None):
        self.steps += 1
        self.flops = None if self.flops is None or flops is None else self.flops + flops
        self.last = metrics
        for name, value in metrics.items():
            if name in _COUNTS:
                self.counts[name] += value
            else:
                self.sums[name] = self.sums.get(name, 0.0) + value

    def scalars(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.start - self.paused, 1e-9)
        out = {f'train/{k}': v / self.steps for k, v in self.sums.items() if k != 'learning_rate'}
        out['train/learning_rate'] = self.last['learning_rate']
        out['perf/steps_per_sec'] = self.steps / elapsed
        out['perf/data_wait_fraction'] = min(self.data_wait / elapsed, 1.0)
        for name, perf in _COUNTS.items():
            if name in self.last:
                out[perf] = self.counts[name] / elapsed
        if self.flops:
            out['perf/model_flops_per_sec'] = self.flops / elapsed
            if self.peak_flops:
                out['perf/mfu'] = self.flops / elapsed / self.peak_flops
        return out


def _local_rows(task: Task, step: int, batch_size: int):
    local = task.train_batch(step, jax.process_index(), jax.process_count())
    expected = batch_size // jax.process_count()
    rows = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(local)}
    if rows != {expected}:
        raise ValueError(
            f'train_batch({step}) returned row counts {sorted(rows, key=str)}; '
            f'this process must load batch_size / process_count = {expected} '
            f'rows of every array'
        )
    return local


def train_and_evaluate(config, workdir: str, task: Task) -> TrainState:
    """Trains `task` as `config` says, in `workdir`; resumes if a checkpoint is there.

    Returns the final TrainState, laid out on the mesh of config.mesh (parameters
    replicated on all devices unless it has an fsdp axis). Raises
    ConfigError before compiling for impossible config values, NonFiniteError
    when a loss or gradient is nan/inf, CheckpointError when the workdir holds
    checkpoints of which none can be resumed (a damaged newer one is skipped),
    Preempted after saving the state when SIGTERM or SIGUSR1 arrives.
    """
    config = validate_config(config, num_devices=jax.device_count())
    _check_model_precision(config, task)
    mesh = sharding_lib.make_mesh(spec=config.mesh)
    is_main = jax.process_index() == 0
    num_steps = config.num_train_steps
    tx, schedule = make_optimizer(config)
    init_fn = lambda: init_train_state(task.init_params, tx, config.seed)
    shapes = jax.eval_shape(init_fn)
    shardings = sharding_lib.state_shardings(shapes, mesh)
    init = jax.jit(init_fn, out_shardings=shardings)

    checkpointer = Checkpointer(
        workdir, keep=config.keep_checkpoints, async_save=config.async_checkpoints
    )
    try:
        with _PreemptionNotice() as notice:
            # A checkpoint written on any mesh restores onto this one.
            abstract = jax.tree.map(
                lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                shapes,
                shardings,
            )
            restored = checkpointer.restore_latest(abstract)
            start, state = restored if restored is not None else (0, init())
            writer = MetricWriter(workdir, enabled=is_main, resume_step=start)
            try:
                writer.write_config(config)
                if start >= num_steps:
                    logging.info(
                        '%s holds a checkpoint at step %d >= num_train_steps=%d; nothing to train',
                        workdir,
                        start,
                        num_steps,
                    )
                    return state
                state = _train(
                    config,
                    task,
                    tx,
                    schedule,
                    mesh,
                    shardings,
                    state,
                    start,
                    checkpointer,
                    writer,
                    is_main,
                    notice,
                )
            finally:
                writer.close()
            checkpointer.wait()
            return state
    finally:
        checkpointer.close()


def _flops_counter(config, task):
    """batch -> model FLOPs of a training step on it (None if unknown), counted once per
    batch shape: the task's own `model_flops`, else `seqmodels.flops` for config.model."""
    model = config.get('model') or {}
    if hasattr(task, 'model_flops'):
        count = task.model_flops
    else:
        count = lambda batch: flops_lib.train_step_flops(model, batch)
    counted: dict = {}

    def count_flops(batch):
        key = tuple(
            (jax.tree_util.keystr(path), np.shape(x))
            for path, x in jax.tree_util.tree_leaves_with_path(batch)
        )
        if key not in counted:
            counted[key] = count(batch)
        return counted[key]

    return count_flops


def _compute_dtype(config) -> str:
    """The dtype the model's matmuls run in (config.precision), which picks the peak
    rate MFU divides by."""
    return jnp.dtype(compute_dtype(config.precision)).name


def _check_model_precision(config, task) -> None:
    """A task whose model computes in another dtype than config.precision says was
    built without it (`models.from_config` builds it with it): an error, not a run
    whose MFU divides by the wrong peak."""
    dtype = getattr(getattr(task, 'model', None), 'dtype', None)
    require(
        dtype is None or jnp.dtype(dtype).name == _compute_dtype(config),
        'precision',
        f"is not what the task's model computes in ({dtype and jnp.dtype(dtype).name}); "
        'build it with seqmodels.models.from_config(config)',
        config.precision,
    )


def _peak_flops(config, mesh, step_flops) -> float | None:
    """The peak FLOP/s of all devices of the mesh, when there are FLOPs to compare."""
    if not step_flops:
        logging.info('model FLOPs of this task unknown: no perf/mfu')
        return None
    per_device, source = flops_lib.peak_flops_per_sec(
        jax.local_devices()[0], _compute_dtype(config)
    )
    logging.info(
        'MFU: %.4g model FLOPs per step against %d devices x %.4g FLOP/s (%s)',
        step_flops,
        mesh.size,
        per_device,
        source,
    )
    return per_device * mesh.size


def _train(
    config, task, tx, schedule, mesh, shardings, state, start, checkpointer, writer, is_main, notice
) -> TrainState:
    num_steps = config.num_train_steps
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    logging.info(
        '%s at step %d: %d parameters, %d devices in %d processes',
        'resuming' if start else 'starting',
        start,
        num_params,
        mesh.size,
        jax.process_count(),
    )

    # Batches are made (and copied to the devices) ahead, on a thread: the first one
    # while nothing else runs, the next ones while the step compiles and runs.
    make_batch = lambda s: sharding_lib.global_batch(_local_rows(task, s, config.batch_size), mesh)
    with Prefetcher(make_batch, start, num_steps, config.prefetch) as prefetcher:
        return _train_steps(
            config,
            task,
            tx,
            schedule,
            mesh,
            shardings,
            state,
            start,
            checkpointer,
            writer,
            is_main,
            notice,
            prefetcher,
        )


def _train_steps(
    config,
    task,
    tx,
    schedule,
    mesh,
    shardings,
    state,
    start,
    checkpointer,
    writer,
    is_main,
    notice,
    prefetcher,
) -> TrainState:
    num_steps = config.num_train_steps
    batch = prefetcher.get(start)
    compile_start = time.perf_counter()
    jitted_step = make_train_step(task, tx, schedule, mesh, config.grad_accum_steps, shardings)
    compiled_step = jitted_step.lower(state, batch).compile()
    first_shapes = jax.tree.map(np.shape, batch)

    def train_step(state, batch):
        # Batches of another shape (length buckets) compile once each, through jit.
        same = jax.tree.map(np.shape, batch) == first_shapes
        return (compiled_step if same else jitted_step)(state, batch)

    compile_time = time.perf_counter() - compile_start
    logging.info('compiled the train step in %.1f s', compile_time)
    count_flops = _flops_counter(config, task)
    peak_flops = _peak_flops(config, mesh, count_flops(batch))

    has_eval = hasattr(task, 'eval_metrics') and hasattr(task, 'eval_batches')
    eval_step = make_eval_step(task, mesh, shardings.params) if has_eval else None
    every = lambda n, done: done == num_steps or (n > 0 and done % n == 0)
    progress = Progress(num_steps, start, enabled=is_main)
    window = _Window(peak_flops)
    # (step, device metrics, model FLOPs) of steps whose metrics are not yet on the host
    pending: list[tuple[int, dict, float | None]] = []
    first_record = True

    def check_pending():
        values = jax.device_get([m for _, m, _ in pending])
        for (done, _, step_flops), metrics in zip(pending, values):
            metrics = {k: float(v) for k, v in metrics.items()}
            if not (math.isfinite(metrics['loss']) and math.isfinite(metrics['grad_norm'])):
                checkpointer.wait()
                raise NonFiniteError(
                    done,
                    metrics['loss'],
                    metrics['grad_norm'],
                    checkpointer.latest_step(),
                    checkpointer.directory,
                )
            window.add(metrics, step_flops)
        pending.clear()

    def preempt(step):
        # `state` holds `step` updates: the step that was in flight when the notice came.
        check_pending()  # a non-finite state must not be saved
        if checkpointer.latest_step() != step:
            checkpointer.save(state)
        checkpointer.wait()
        message = (
            f'preempted by {notice.signal_name}: saved the state after step {step} '
            f'in {checkpointer.directory}; rerun the same command to resume'
        )
        logging.warning('%s', message)
        raise Preempted(step, message)

    try:
        for step in range(start, num_steps):
            if notice.due(step):
                preempt(step)
            if batch is None:
                waited = prefetcher.wait_seconds
                batch = prefetcher.get(step)
                window.data_wait += prefetcher.wait_seconds - waited
            state, metrics = train_step(state, batch)
            done = step + 1
            pending.append((done, metrics, count_flops(batch)))
            batch = None
            progress.update(done)
            log_now = every(config.log_every_steps, done)
            eval_now = has_eval and every(config.eval_every_steps, done)
            save_now = every(config.checkpoint_every_steps, done)
            if not (log_now or eval_now or save_now):
                continue
            check_pending()  # before any save: a bad state must never be written
            record = {}
            if log_now and window.steps:
                record.update(window.scalars())
                if first_record:
                    record['perf/compile_time_sec'] = compile_time
                    if peak_flops:
                        record['perf/peak_flops_per_sec'] = peak_flops
                    first_record = False
                window.reset()
            paused = time.perf_counter()
            if eval_now:
                record.update(
                    {
                        f'eval/{k}': v
                        for k, v in evaluate(task, eval_step, state.params, mesh).items()
                    }
                )
                if hasattr(task, 'on_eval'):
                    outputs = dict(task.on_eval(state.params, done) or {})
                    texts = {k: v for k, v in outputs.items() if isinstance(v, str)}
                    record.update(
                        {
                            f'eval/{k}': float(v)
                            for k, v in outputs.items()
                            if not isinstance(v, str)
                        }
                    )
                    writer.write_texts(done, texts)
                    for name, text in texts.items():
                        progress.message(f'[step {done}] {name}:\n{text}')
            if record:
                writer.write(done, record)
                progress.report(done, record)
            if save_now:
                checkpointer.save(state)
            window.paused += time.perf_counter() - paused
    finally:
        progress.close()
    return state
