"""A toy task for the training-engine tests, and a driver to run it in a subprocess.

The task: classify 8-d Gaussian inputs into the argmax class of a fixed random
linear teacher, with an MLP that has dropout (so the 'dropout' rng stream and its
per-step keys matter). Batches are drawn from a generator seeded by the step, so
any process can produce any rows of any step.

As a driver (JAX_PLATFORMS=cpu):
    python tests/scripts/train_toy.py --workdir DIR --out params.npz [--devices 8]
        [--coordinator 127.0.0.1:PORT --num_processes 2 --process_id I]
        [--config KEY=VALUE ...] [--print_steps] [--hold_at_batch N --hold_until FILE]
Writes the final parameters to --out (process 0) and prints DONE. An engine
error with an exit code (Preempted, NonFiniteError, CheckpointError) is printed
as one line on stderr and becomes the exit status, as in the drivers.
--hold_at_batch makes train_batch(N) wait until FILE exists: a test that signals
the run there knows which step is in flight.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

NUM_FEATURES, NUM_CLASSES, HIDDEN = 8, 4, 16


def toy_config(**overrides):
    from seqmodels import training

    config = training.default_config()
    config.seed = 3
    config.batch_size = 16
    config.num_train_steps = 12
    config.optimizer = 'adam'
    config.learning_rate = 0.03
    config.log_every_steps = 1
    config.eval_every_steps = 6
    config.checkpoint_every_steps = 4
    # Batches made on the main thread, between steps: the preemption tests signal while
    # train_batch(N) runs and rely on step N being the one in flight then.
    config.prefetch = 0
    config.model.hidden = HIDDEN
    config.model.dropout_rate = 0.3
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split('.')
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


class ToyTask:
    def __init__(
        self,
        config,
        nan_at_step: int | None = None,
        print_steps: bool = False,
        eval_rows: int = 16,
        hold: tuple[int, str] | None = None,
    ):
        import flax.linen as nn
        import numpy as np

        class MLP(nn.Module):
            hidden: int
            dropout_rate: float

            @nn.compact
            def __call__(self, x, *, deterministic: bool):
                x = nn.relu(nn.Dense(self.hidden)(x))
                x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
                return nn.Dense(NUM_CLASSES)(x)

        self.model = MLP(config.model.hidden, config.model.dropout_rate)
        self.batch_size = config.batch_size
        self.nan_at_step = nan_at_step
        self.print_steps = print_steps
        self.eval_rows = eval_rows
        self.hold = hold
        self.teacher = np.random.default_rng(1234).normal(size=(NUM_FEATURES, NUM_CLASSES))

    def _rows(self, seed, num_rows, process_index, process_count):
        import numpy as np

        x = np.random.default_rng(seed).normal(size=(num_rows, NUM_FEATURES))
        y = np.argmax(x @ self.teacher, axis=-1)
        per_process = num_rows // process_count
        rows = slice(process_index * per_process, (process_index + 1) * per_process)
        return {'x': x[rows].astype(np.float32), 'y': y[rows].astype(np.int32)}

    def init_params(self, rng):
        import jax.numpy as jnp

        x = jnp.zeros((1, NUM_FEATURES), jnp.float32)
        return self.model.init({'params': rng}, x, deterministic=True)['params']

    def _logits(self, params, x, rng=None, deterministic=True):
        rngs = None if deterministic else {'dropout': rng}
        return self.model.apply({'params': params}, x, deterministic=deterministic, rngs=rngs)

    def loss_fn(self, params, batch, rng, deterministic, step):
        del step  # the toy loss does not change with the step
        import jax.numpy as jnp
        import optax

        logits = self._logits(params, batch['x'], rng, deterministic)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y']).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['y'])
        return loss, {'accuracy': accuracy, 'num_examples': batch['y'].shape[0]}

    def train_batch(self, step, process_index, process_count):
        if self.print_steps:
            print(f'batch {step}', flush=True)
        if self.hold is not None and step == self.hold[0]:
            import time

            while not os.path.exists(self.hold[1]):
                time.sleep(0.01)
        batch = self._rows((7, step), self.batch_size, process_index, process_count)
        if self.nan_at_step is not None and step == self.nan_at_step:
            batch['x'] = batch['x'] * float('inf')
        return batch

    def eval_metrics(self, params, batch):
        import jax.numpy as jnp
        import optax

        logits = self._logits(params, batch['x'])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch['y'])
        count = jnp.float32(batch['y'].shape[0])
        return {
            'loss': (losses.sum(), count),
            'accuracy': ((jnp.argmax(logits, -1) == batch['y']).sum(), count),
        }

    def eval_batches(self, process_index, process_count):
        for i in range(2):
            yield self._rows((99, i), self.eval_rows, process_index, process_count)

    def finalize_eval(self, metrics):
        return {**metrics, 'loss_bits': metrics['loss'] / math.log(2)}

    def on_eval(self, params, step):
        import numpy as np

        w = np.asarray(params['Dense_1']['kernel'])
        return {'summary': f'step {step}: |W_out| = {np.linalg.norm(w):.4f}'}


def _parse_value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--out')
    parser.add_argument('--devices', type=int, default=1)
    parser.add_argument('--coordinator')
    parser.add_argument('--num_processes', type=int, default=1)
    parser.add_argument('--process_id', type=int, default=0)
    parser.add_argument('--config', nargs='*', default=[])
    parser.add_argument('--nan_at_step', type=int)
    parser.add_argument('--print_steps', action='store_true')
    parser.add_argument('--hold_at_batch', type=int)
    parser.add_argument('--hold_until')
    args = parser.parse_args()

    # Must precede the first `import jax`: the CPU backend reads it once.
    os.environ['XLA_FLAGS'] = (
        os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={args.devices}'
    )
    import jax
    import numpy as np

    from seqmodels import training

    if args.num_processes > 1:
        training.initialize_distributed(
            args.coordinator, args.num_processes, args.process_id, initialization_timeout=60
        )
    overrides = dict(item.split('=', 1) for item in args.config)
    config = toy_config(**{k: _parse_value(v) for k, v in overrides.items()})
    hold = None if args.hold_at_batch is None else (args.hold_at_batch, args.hold_until)
    task = ToyTask(config, nan_at_step=args.nan_at_step, print_steps=args.print_steps, hold=hold)
    try:
        state = training.train_and_evaluate(config, args.workdir, task)
    except (training.Preempted, training.NonFiniteError, training.CheckpointError) as error:
        print(f'{type(error).__name__}: {error}', file=sys.stderr, flush=True)
        sys.exit(error.exit_code)
    if args.out and jax.process_index() == 0:
        params = jax.tree.map(np.asarray, state.params)
        flat = {
            jax.tree_util.keystr(path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)
        }
        np.savez(args.out, **flat)
    print('DONE', jax.device_count(), jax.process_count(), flush=True)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == '__main__':
    main()
