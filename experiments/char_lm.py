r"""Character-level language modelling: train, resume, evaluate and sample.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.char_lm --config=configs/char_lm.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Stream a sample from the latest checkpoint of a run:
    python -m experiments.char_lm --mode=sample --workdir=DIR --prompt='def ' \
        --num_chars=500 --temperature=0.8 [--top_k=K] [--top_p=P] [--seed=S]
    # Validation loss and bits per character of the latest checkpoint:
    python -m experiments.char_lm --mode=evaluate --workdir=DIR

The sample and evaluate modes read the run's own WORKDIR/config.json and
WORKDIR/vocab.json, so they need no --config.
"""

from __future__ import annotations

import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import flags, logging

from experiments import common
from seqmodels import decoding, models, training
from seqmodels.data import CharVocab, make_char_lm_data

_PROMPT = flags.DEFINE_string('prompt', None, 'sample: text to continue (default: the '
                              "config's sample_prompt).")
_NUM_CHARS = flags.DEFINE_integer('num_chars', 500, 'sample: characters to generate.')
_TEMPERATURE = flags.DEFINE_float('temperature', None, 'sample: softmax temperature; 0 is '
                                  "greedy (default: the config's sample_temperature).")
_TOP_K = flags.DEFINE_integer('top_k', None, 'sample: keep the k most likely characters.')
_TOP_P = flags.DEFINE_float('top_p', None, 'sample: nucleus sampling, keep the smallest set '
                            'of characters with probability >= p.')
_SEED = flags.DEFINE_integer('seed', 0, 'sample: random seed.')


# --------------------------------------------------------------------------- #
# Config checks that belong to this experiment (the engine checks its own keys).

def validate(config: ml_collections.ConfigDict) -> None:
    training.validate_config(config, num_devices=jax.device_count())
    require = training.require
    m = config.model
    require(m.name in ('rnn_lm', 'gpt'), 'model.name', "must be 'rnn_lm' or 'gpt'", m.name)
    require(isinstance(config.seq_len, int) and config.seq_len > 0, 'seq_len',
            'must be a positive integer', config.seq_len)
    require(config.max_chars >= 0, 'max_chars', 'must be >= 0 (0 = all)', config.max_chars)
    require(0 < config.val_fraction < 1, 'val_fraction', 'must lie in (0, 1)',
            config.val_fraction)
    require(config.num_eval_batches >= 0, 'num_eval_batches', 'must be >= 0 (0 = all)',
            config.num_eval_batches)
    require(config.sample_chars >= 0, 'sample_chars', 'must be >= 0', config.sample_chars)
    require(config.sample_temperature >= 0, 'sample_temperature', 'must be >= 0',
            config.sample_temperature)
    if m.name == 'gpt':
        require(m.d_model % m.num_heads == 0, 'model.d_model',
                f'must be divisible by model.num_heads={m.num_heads}', m.d_model)
        require(config.seq_len <= m.max_len, 'seq_len',
                f'must be <= model.max_len={m.max_len} (the learned positions)',
                config.seq_len)
        require(config.scheduled_sampling == 'none', 'scheduled_sampling',
                "applies to RNN models only; use 'none' with model.name='gpt'",
                config.scheduled_sampling)
    else:
        require(m.cell in ('rnn', 'lstm', 'lnlstm', 'gru'), 'model.cell',
                "must be one of 'rnn', 'lstm', 'lnlstm', 'gru'", m.cell)
        require(m.hidden_size > 0 and m.embed_dim > 0 and m.num_layers > 0,
                'model.hidden_size', 'hidden_size, embed_dim and num_layers must be positive',
                m.hidden_size)
        require(m.dropout_kind in ('standard', 'variational'), 'model.dropout_kind',
                "must be 'standard' or 'variational'", m.dropout_kind)
    common.epsilon_schedule(config)


# --------------------------------------------------------------------------- #
# The task the training engine runs.

class CharLMTask:
    """Next-character prediction: cross-entropy in nats, reported also in bits/char."""

    def __init__(self, config, model, data):
        self.config, self.model, self.data = config, model, data
        self.scheduled = config.scheduled_sampling != 'none'
        self.epsilon = common.epsilon_schedule(config)

    def init_params(self, rng):
        tokens = jnp.zeros((1, self.config.seq_len), jnp.int32)
        return self.model.init({'params': rng, 'dropout': rng}, tokens)['params']

    def logits(self, params, batch, rng, deterministic):
        kwargs = {}
        if self.scheduled and not deterministic:
            # Every row of a batch carries the same eps (it is a function of the step).
            kwargs['sampling_prob'] = jnp.mean(batch['sampling_prob'])
        return self.model.apply({'params': params}, batch['inputs'],
                                deterministic=deterministic, rngs={'dropout': rng}, **kwargs)

    def loss_fn(self, params, batch, rng, deterministic):
        logits = self.logits(params, batch, rng, deterministic)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets']).mean()
        return loss, {'num_tokens': batch['targets'].size}

    def train_batch(self, step, process_index, process_count):
        batch = self.data.train_batch(step, process_index, process_count)
        if self.scheduled:
            eps = float(self.epsilon(step))
            batch['sampling_prob'] = np.full((len(batch['inputs']),), eps, np.float32)
        return batch

    def eval_metrics(self, params, batch):
        logits = self.model.apply({'params': params}, batch['inputs'], deterministic=True)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets'])
        correct = (logits.argmax(-1) == batch['targets'])
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        return self.data.eval_batches(process_index, process_count,
                                      self.config.num_eval_batches or None)

    def finalize_eval(self, metrics):
        return dict(metrics, bits_per_char=metrics['loss'] / math.log(2))

    def on_eval(self, params, step):
        if not self.config.sample_chars:
            return {}
        sampler = Sampler(self.model, params, self.data.vocab)
        text = sampler.generate(self.config.sample_prompt, self.config.sample_chars,
                                jax.random.key(step), self.config.sample_temperature)
        return {'sample': text}


# --------------------------------------------------------------------------- #
# Generation: one character at a time, so text can stream to the terminal.

class Sampler:
    """Autoregressive sampling for both LM families, one jitted step per character.

    The RNN carries its state; GPT uses its key/value cache. When GPT's cache is full
    (`model.max_len` positions), the last 3/4 of the context is re-encoded into a fresh
    cache and decoding goes on: the model only ever sees contexts it was trained on.
    """

    def __init__(self, model, params, vocab: CharVocab):
        self.model, self.params, self.vocab = model, params, vocab
        self.is_gpt = isinstance(model, models.GPT)
        if self.is_gpt:
            self._feed = jax.jit(lambda p, tokens, cache, index: model.apply(
                {'params': p}, tokens, cache, index, method=models.GPT.decode_step))
        else:
            self._feed = jax.jit(lambda p, token, carry: model.apply(
                {'params': p}, carry, token, method=models.RNNLM.step))
        self._sample = jax.jit(decoding.sample_next)

    def generate(self, prompt: str, num_chars: int, rng, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, stream=None) -> str:
        ids = [int(i) for i in self.vocab.encode(prompt or '\n')]
        logits = self._start(ids)
        out = []
        for i in range(num_chars):
            token = self._sample(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
            token_id = int(token[0])
            ids.append(token_id)
            char = self.vocab.decode([token_id])
            out.append(char)
            if stream is not None:
                stream.write(char)
                stream.flush()
            if i + 1 < num_chars:
                logits = self._next(ids)
        return ''.join(out)

    def _start(self, ids):
        if self.is_gpt:
            return self._refill(ids)
        self._carry = self.model.apply({'params': self.params}, 1,
                                       method=models.RNNLM.initial_carry)
        for token in ids:
            logits = self._step_rnn(token)
        return logits

    def _step_rnn(self, token):
        logits, self._carry = self._feed(self.params, jnp.array([token], jnp.int32), self._carry)
        return logits

    def _refill(self, ids):
        keep = self.model.max_len if len(ids) <= self.model.max_len else (
            3 * self.model.max_len) // 4
        context = jnp.array([ids[-keep:]], jnp.int32)
        cache = self.model.init_cache(1)
        logits, self._cache = self._feed(self.params, context, cache, 0)
        self._index = context.shape[1]
        return logits[:, -1]

    def _next(self, ids):
        if not self.is_gpt:
            return self._step_rnn(ids[-1])
        if self._index >= self.model.max_len:
            return self._refill(ids)
        logits, self._cache = self._feed(self.params, jnp.array([[ids[-1]]], jnp.int32),
                                         self._cache, self._index)
        self._index += 1
        return logits[:, -1]


# --------------------------------------------------------------------------- #
# Modes.

def load_data(config, workdir):
    return make_char_lm_data(
        config.dataset, seq_len=config.seq_len, batch_size=config.batch_size,
        seed=config.seed, data_dir=os.path.expanduser(config.data_dir),
        vocab_path=os.path.join(workdir, 'vocab.json'), val_fraction=config.val_fraction,
        max_chars=config.max_chars or None)


def build(config, workdir):
    """Data, model and task for `config`; fills in model.vocab_size from the data."""
    data = load_data(config, workdir)
    with config.unlocked():
        config.model.vocab_size = data.vocab_size
    model = models.build_model(config.model)
    return data, model, CharLMTask(config, model, data)


def train(config, workdir):
    validate(config)
    data, model, task = build(config, workdir)
    logging.info('data: %s; vocabulary of %d characters', data.description, data.vocab_size)
    state = training.train_and_evaluate(config, workdir, task)
    params = jax.device_get(state.params)
    print(f'\n--- sample after {config.num_train_steps} steps ---')
    Sampler(model, params, data.vocab).generate(
        config.sample_prompt, max(config.sample_chars, 200), jax.random.key(0),
        config.sample_temperature, stream=sys.stdout)
    print('\n---')
    print(f'checkpoints: {os.path.join(workdir, "checkpoints")}')
    print(f'metrics:     {os.path.join(workdir, "metrics.jsonl")} (TensorBoard: '
          f'tensorboard --logdir {workdir})')
    print(f'sample more: python -m experiments.char_lm --mode=sample --workdir={workdir}')


def sample(workdir):
    config = common.load_run_config(workdir, 'char_lm')
    vocab = CharVocab.load(os.path.join(workdir, 'vocab.json'))
    model = models.build_model(config.model)
    params = training.restore_params(workdir)
    prompt = config.sample_prompt if _PROMPT.value is None else _PROMPT.value
    temperature = (config.sample_temperature if _TEMPERATURE.value is None
                   else _TEMPERATURE.value)
    sys.stdout.write(prompt)
    Sampler(model, params, vocab).generate(
        prompt, _NUM_CHARS.value, jax.random.key(_SEED.value), temperature,
        _TOP_K.value, _TOP_P.value, stream=sys.stdout)
    sys.stdout.write('\n')


def evaluate(workdir):
    config = common.load_run_config(workdir, 'char_lm')
    data, model, task = build(config, workdir)
    params = training.restore_params(workdir)
    mesh = training.make_mesh()
    metrics = training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    print(json.dumps({f'eval/{k}': float(v) for k, v in metrics.items()}, sort_keys=True))


if __name__ == '__main__':
    common.run_driver({
        'train': lambda workdir: train(common.CONFIG.value, workdir),
        'sample': sample,
        'evaluate': evaluate,
    }, 'configs/char_lm.py:lstm')
