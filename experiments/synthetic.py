r"""Long-time-lag synthetic tasks (adding, copy, temporal order): train, evaluate, and
measure how the gradient flows back in time.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.synthetic --config=configs/synthetic.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # The eval metrics of the latest checkpoint (or --step=N) on the held-out set:
    python -m experiments.synthetic --mode=evaluate --workdir=DIR [--step=N]
    # ||dL/dh_t|| for t = 1..T (L the loss at the last step) at initialisation and at the
    # latest checkpoint (or --step=N; none needed), on the first --num_examples held-out
    # examples: DIR/gradient_flow.json and DIR/gradient_flow.png (seqmodels.gradient_flow):
    python -m experiments.synthetic --mode=gradient_flow --workdir=DIR [--num_examples=100]

The evaluate and gradient_flow modes read the run's own WORKDIR/config.json, so they need
no --config.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import optax
from absl import flags

from experiments import common
from seqmodels import gradient_flow, models, plots, training
from seqmodels.data.synthetic import NUM_FEATURES, NUM_OUTPUTS, READOUT, SyntheticData, check_task
from seqmodels.tasks.synthetic import SyntheticTask

_NUM_EXAMPLES = flags.DEFINE_integer(
    'num_examples', 100, 'gradient_flow: held-out examples the norms are averaged over.'
)

MODEL_NAMES = ('sequence_rnn',)


def validate(config: ml_collections.ConfigDict) -> None:
    """Every key of a synthetic-task config, checked before anything is built or compiled."""
    common.validate(config, MODEL_NAMES)
    require = training.require
    require(config.dataset == 'synthetic', 'dataset', "must be 'synthetic'", config.dataset)
    check_task(config.task, config.seq_len, config.copy_length)
    require(
        isinstance(config.num_eval_examples, int) and config.num_eval_examples > 0,
        'num_eval_examples',
        'must be a positive integer',
        config.num_eval_examples,
    )
    m = config.model
    require(
        m.readout == READOUT[config.task],
        'model.readout',
        f'must be {READOUT[config.task]!r} for task={config.task!r}',
        m.readout,
    )
    for key, sizes in (('num_outputs', NUM_OUTPUTS), ('input_features', NUM_FEATURES)):
        require(
            m[key] in (0, sizes[config.task]),
            f'model.{key}',
            f'must be {sizes[config.task]} for task={config.task!r} (or 0 = from the task)',
            m[key],
        )


def build(config):
    """Data, model and task for `config` (validated); fills model.num_outputs and
    model.input_features from the task."""
    data = SyntheticData(
        config.task,
        config.seq_len,
        config.batch_size,
        config.seed,
        config.num_eval_examples,
        config.copy_length,
    )
    with config.unlocked():
        config.model.num_outputs = NUM_OUTPUTS[config.task]
        config.model.input_features = NUM_FEATURES[config.task]
    model = models.from_config(config)
    return data, model, SyntheticTask(config, model, data)


def train(config, workdir):
    validate(config)
    _, _, task = build(config)
    training.train_and_evaluate(config, workdir, task)
    if jax.process_index() != 0:  # only the main process writes metrics and prints
        return
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        evals = [r for r in map(json.loads, f) if 'eval/loss' in r]
    if evals:
        shown = {k: v for k, v in evals[-1].items() if k.startswith('eval/')}
        print(f'after step {evals[-1]["step"]}: {json.dumps(shown, sort_keys=True)}')
    common.print_run_summary(workdir, 'synthetic', 'evaluate')


def evaluate(workdir, step=None) -> dict[str, float]:
    config = common.load_run_config(workdir, 'synthetic')
    _, _, task = build(config)
    params = training.restore_params(workdir, step)
    mesh = training.make_mesh()
    metrics = training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    return {f'eval/{k}': float(v) for k, v in metrics.items()}


def measure_gradient_flow(workdir, num_examples: int, step=None) -> dict[str, dict]:
    """Norms and their summary at initialisation (the run's own step-0 parameters) and
    at a checkpoint when there is one; writes WORKDIR/gradient_flow.{json,png}."""
    config = common.load_run_config(workdir, 'synthetic')
    data, model, task = build(config)
    batch = {k: v[:num_examples] for k, v in data.eval_set.items()}
    # The engine's own initialisation, so these are the parameters training started from.
    init = training.init_train_state(task.init_params, optax.identity(), config.seed).params
    params = {'initialisation': init}
    try:
        params['trained' if step is None else f'step {step}'] = training.restore_params(
            workdir, step
        )
    except FileNotFoundError:
        if step is not None:
            raise
    norms = {
        name: gradient_flow.hidden_gradient_norms(
            model, p, batch['inputs'], batch['targets'], task.final_step_loss
        )
        for name, p in params.items()
    }
    report = {name: dict(gradient_flow.summary(n), norms=n.tolist()) for name, n in norms.items()}
    with open(os.path.join(workdir, 'gradient_flow.json'), 'w') as f:
        json.dump(report, f, indent=1)
    title = (
        f'{config.model.cell}, {config.model.hidden_size} units, {config.task} T={config.seq_len}'
    )
    plots.plot_gradient_flow(norms, os.path.join(workdir, 'gradient_flow.png'), title)
    return report


def evaluate_mode(workdir):
    print(json.dumps(evaluate(workdir, common.STEP.value), sort_keys=True))


def gradient_flow_mode(workdir):
    if _NUM_EXAMPLES.value <= 0:
        raise common.UsageError(f'--num_examples must be positive, got {_NUM_EXAMPLES.value}')
    report = measure_gradient_flow(workdir, _NUM_EXAMPLES.value, common.STEP.value)
    for name, r in report.items():
        print(
            f'{name}: decay rate {r["decay_rate"]:+.4f} per step (x{r["factor_per_step"]:.4f}), '
            f'||dL/dh_1|| / ||dL/dh_T|| = {r["first_to_last_ratio"]:.3e}, '
            f'{r["underflowed_steps"]} steps underflowed to 0'
        )
    print(os.path.join(workdir, 'gradient_flow.png'))


if __name__ == '__main__':
    common.run_driver(
        train,
        {'evaluate': evaluate_mode, 'gradient_flow': gradient_flow_mode},
        'configs/synthetic.py:adding_lstm',
    )
