r"""Character-level language modelling: train, resume, evaluate and sample.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.char_lm --config=configs/char_lm.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Stream a sample from the latest checkpoint of a run (or --step=N):
    python -m experiments.char_lm --mode=sample --workdir=DIR --prompt='def ' \
        --num_chars=500 --temperature=0.8 [--top_k=K] [--top_p=P] [--seed=S] [--step=N]
    # Validation loss and bits per character of the latest checkpoint (or --step=N):
    python -m experiments.char_lm --mode=evaluate --workdir=DIR [--step=N]
    # Text coloured by RNN units (DIR/cells.html): chosen ones, or those that track an
    # indicator best (seqmodels.cells); the text defaults to the validation split:
    python -m experiments.char_lm --mode=cells --workdir=DIR [--cells=3,1:17] \
        [--find=quotes,indent,line_position] [--cells_text=FILE] [--num_chars=500]

The sample, evaluate and cells modes read the run's own WORKDIR/config.json and
WORKDIR/vocab.json, so they need no --config.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
from absl import flags, logging

from experiments import common
from seqmodels import cells, models, runs, training
from seqmodels.data import UNK_ID, CharVocab, make_char_lm_data
from seqmodels.data.corpora import read_text_file
from seqmodels.inference import Sampler
from seqmodels.tasks.language_model import LanguageModelTask
from seqmodels.models import scheduled_sampling

_NUM_CHARS = flags.DEFINE_integer(
    'num_chars', 500, 'sample: characters to generate; cells: characters shown.'
)
_CELLS = flags.DEFINE_string(
    'cells',
    None,
    'cells: units to colour the text by, UNIT (top '
    'layer) or LAYER:UNIT, comma-separated, e.g. 3,0:17.',
)
_FIND = flags.DEFINE_list(
    'find',
    None,
    'cells: also colour by the unit that tracks each of '
    f'these best: {",".join(cells.INDICATORS)} (default: all of them '
    'when --cells is not given).',
)
_CELLS_TEXT = flags.DEFINE_string(
    'cells_text',
    None,
    'cells: a UTF-8 file for the model to read (default: the validation text of the run).',
)

MODEL_NAMES = ('rnn_lm', 'gpt')


def validate(config: ml_collections.ConfigDict) -> None:
    """Every key of a char-LM config, checked before anything is read or compiled."""
    common.validate(config, MODEL_NAMES)
    require = training.require
    m = config.model
    require(
        isinstance(config.seq_len, int) and config.seq_len > 0,
        'seq_len',
        'must be a positive integer',
        config.seq_len,
    )
    require(config.max_chars >= 0, 'max_chars', 'must be >= 0 (0 = all)', config.max_chars)
    require(0 < config.val_fraction < 1, 'val_fraction', 'must lie in (0, 1)', config.val_fraction)
    require(
        config.num_eval_batches >= 0,
        'num_eval_batches',
        'must be >= 0 (0 = all)',
        config.num_eval_batches,
    )
    require(config.sample_chars >= 0, 'sample_chars', 'must be >= 0', config.sample_chars)
    require(
        config.sample_temperature >= 0,
        'sample_temperature',
        'must be >= 0',
        config.sample_temperature,
    )
    if m.name == 'gpt':
        require(
            config.seq_len <= m.max_len,
            'seq_len',
            f'must be <= model.max_len={m.max_len} (the learned positions)',
            config.seq_len,
        )
        require(
            config.scheduled_sampling == 'none',
            'scheduled_sampling',
            "applies to RNN models only; use 'none' with model.name='gpt'",
            config.scheduled_sampling,
        )
    scheduled_sampling.from_config(config)


# --------------------------------------------------------------------------- #
# The task the training engine runs.

# --------------------------------------------------------------------------- #
# Modes.


def load_data(config, workdir):
    return make_char_lm_data(
        config.dataset,
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=os.path.expanduser(config.data_dir),
        vocab_path=os.path.join(workdir, 'vocab.json'),
        val_fraction=config.val_fraction,
        max_chars=config.max_chars or None,
    )


def build(config, workdir):
    """Data, model and task for `config`; fills in model.vocab_size from the data."""
    data = load_data(config, workdir)
    with config.unlocked():
        config.model.vocab_size = data.vocab_size
    model = models.from_config(config)
    return (
        data,
        model,
        LanguageModelTask(
            config, model, data, data.vocab, unit='char', sample_length=config.sample_chars
        ),
    )


def train(config, workdir):
    validate(config)
    data, model, task = build(config, workdir)
    logging.info('data: %s; vocabulary of %d characters', data.description, data.vocab_size)
    state = training.train_and_evaluate(config, workdir, task)
    params = jax.device_get(state.params)
    print(f'\n--- sample after {config.num_train_steps} steps ---')
    Sampler(model, params, data.vocab).generate(
        config.sample_prompt,
        max(config.sample_chars, 200),
        jax.random.key(0),
        config.sample_temperature,
        stream=sys.stdout,
    )
    print('\n---')
    common.print_run_summary(workdir, 'char_lm', 'sample')


def sample(workdir):
    config = common.load_run_config(workdir, 'char_lm')
    temperature, top_k, top_p = common.sampling_options(config, _NUM_CHARS.value, 'num_chars')
    vocab = CharVocab.load(os.path.join(workdir, 'vocab.json'))
    prompt = config.sample_prompt if common.PROMPT.value is None else common.PROMPT.value
    unknown = sorted({c for c, i in zip(prompt, vocab.encode(prompt)) if i == UNK_ID})
    if unknown:
        logging.warning(
            'the prompt has characters this run never saw in training, fed as unknown: %s',
            ' '.join(repr(c) for c in unknown),
        )
    model = models.from_config(config)
    params = training.restore_params(workdir, common.STEP.value)
    sys.stdout.write(prompt)
    Sampler(model, params, vocab).generate(
        prompt,
        _NUM_CHARS.value,
        jax.random.key(common.SEED.value),
        temperature,
        top_k,
        top_p,
        stream=sys.stdout,
    )
    sys.stdout.write('\n')


def evaluate(workdir):
    config = common.load_run_config(workdir, 'char_lm')
    data, model, task = build(config, workdir)
    params = training.restore_params(workdir, common.STEP.value)
    mesh = training.make_mesh()
    metrics = training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    print(json.dumps({f'eval/{k}': float(v) for k, v in metrics.items()}, sort_keys=True))


def cells_mode(workdir):
    """Writes WORKDIR/cells.html (text coloured by units of a recurrent model) and prints
    the units found and, as one JSON line, cells.measures of the analysed text."""
    config = common.load_run_config(workdir, 'char_lm')
    if config.model.name != 'rnn_lm':
        raise common.UsageError(
            f'--mode=cells applies to recurrent models (model.name='
            f"'rnn_lm'); {workdir} holds a {config.model.name} model"
        )
    if _NUM_CHARS.value <= 0:
        raise common.UsageError(f'--num_chars must be > 0, got {_NUM_CHARS.value}')
    try:
        cells.check_request(models.from_config(config), _CELLS.value, _FIND.value)
    except ValueError as e:
        raise common.UsageError(f'--{e}') from None
    run = runs.restore(workdir, common.STEP.value, config)
    text = (
        read_text_file(_CELLS_TEXT.value)
        if _CELLS_TEXT.value
        else runs.validation_text(run, cells.ANALYSED_CHARS)
    )
    page, shown, numbers = cells.report(
        run.model, run.params, run.vocab, text, _CELLS.value, _FIND.value, _NUM_CHARS.value
    )
    for entry in shown:
        print(entry.title, ' '.join(f'{k}={r:+.2f}' for k, r in entry.correlations.items()))
    path = os.path.join(workdir, 'cells.html')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(page)
    print(path)
    print(json.dumps({f'cells/{k}': v for k, v in numbers.items()}, sort_keys=True))


if __name__ == '__main__':
    common.run_driver(
        train,
        {'sample': sample, 'evaluate': evaluate, 'cells': cells_mode},
        'configs/char_lm.py:lstm',
    )
