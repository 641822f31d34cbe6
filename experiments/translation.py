r"""Machine translation: train, resume, evaluate a split with sacreBLEU, translate a file.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.translation --config=configs/translation.py[:VARIANT] \
        --workdir=DIR [--config.KEY=VALUE ...]
    # sacreBLEU of the latest checkpoint (or --step=N) on a whole split (hypotheses are
    # written to DIR/<split>.hyp.<target_lang>); also greedy BLEU and decoding speed:
    python -m experiments.translation --mode=evaluate --workdir=DIR --split=test \
        [--beam_size=K] [--step=N]
    # Translate one sentence a line (stdin/stdout when the files are omitted); the
    # output has as many lines as the input, an empty line for an empty line:
    python -m experiments.translation --mode=translate --workdir=DIR [--input=FILE] \
        [--output=FILE] [--beam_size=K]

The evaluate and translate modes read the run's own DIR/config.json and tokenizer, so
they need no --config. `--beam_size=1` is greedy decoding.

BLEU is sacreBLEU's corpus BLEU of detokenised output against the raw reference
lines (default 13a tokenisation, mixed case); its signature is printed with every
score so that numbers can be compared across papers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import sacrebleu
from absl import app, flags, logging

from experiments import common
from seqmodels import decoding, models, training
from seqmodels.data import DataError
from seqmodels.data import translation as translation_data
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, SentencePieceTokenizer

_SPLIT = flags.DEFINE_string('split', 'test', 'evaluate: the split (train, val, test or '
                             'a split stem such as test_2016_flickr).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'evaluate/translate: beams (1 = greedy; '
                                  "default: the config's beam_size).")
_INPUT = flags.DEFINE_string('input', None, 'translate: source file, one sentence a line '
                             '(default stdin).')
_OUTPUT = flags.DEFINE_string('output', None, 'translate: output file (default stdout).')
_STEP = flags.DEFINE_integer('step', None, 'evaluate/translate: the checkpoint step to use '
                             '(default: the latest; WORKDIR/checkpoints lists the saved ones).')

MODEL_NAMES = ('transformer', 'seq2seq')


# --------------------------------------------------------------------------- #
# Config checks that belong to this experiment (the engine checks its own keys).

def validate(config: ml_collections.ConfigDict) -> None:
    training.validate_config(config, num_devices=jax.device_count())
    require = training.require
    m = config.model
    require(m.name in MODEL_NAMES, 'model.name', f'must be one of {MODEL_NAMES}', m.name)
    dataset = config.dataset
    require(dataset == translation_data.locale_corpus.NAME
            or dataset.startswith(('parallel:', 'tfds:')), 'dataset',
            f"must be '{translation_data.locale_corpus.NAME}', 'parallel:DIR' or "
            "'tfds:NAME[/CONFIG]'", dataset)
    require(config.source_lang != config.target_lang, 'target_lang',
            f'must differ from source_lang={config.source_lang!r}', config.target_lang)
    require(config.train_split != '', 'train_split', 'is required', config.train_split)
    require(config.vocab_size >= 16, 'vocab_size', 'must be >= 16', config.vocab_size)
    for key in ('max_source_length', 'max_target_length'):
        require(isinstance(config[key], int) and config[key] >= 2, key,
                'must be an integer >= 2 (it counts EOS/BOS)', config[key])
    for key in ('beam_size', 'max_decode_extra', 'decode_batch_size'):
        require(isinstance(config[key], int) and config[key] >= 1, key,
                'must be a positive integer', config[key])
    require(config.length_penalty_alpha >= 0, 'length_penalty_alpha', 'must be >= 0',
            config.length_penalty_alpha)
    require(config.num_eval_examples >= 0, 'num_eval_examples', 'must be >= 0 (0 = no BLEU '
            'while training)', config.num_eval_examples)
    require(config.eval_decoding in ('greedy', 'beam'), 'eval_decoding',
            "must be 'greedy' or 'beam'", config.eval_decoding)
    if m.name == 'transformer':
        require(m.d_model % m.num_heads == 0, 'model.d_model',
                f'must be divisible by model.num_heads={m.num_heads}', m.d_model)
        longest = max(config.max_source_length, config.max_target_length)
        require(longest <= m.max_len, 'model.max_len',
                f'must be >= max_source_length and max_target_length ({longest}): the '
                'position table covers every padded training sequence', m.max_len)
        require(not m.share_embeddings or config.joint_vocab, 'model.share_embeddings',
                'needs one vocabulary for both languages: set joint_vocab=True',
                m.share_embeddings)
        require(config.scheduled_sampling == 'none', 'scheduled_sampling',
                "applies to the RNN (model.name='seq2seq') only; use 'none'",
                config.scheduled_sampling)
    else:
        require(m.cell in ('rnn', 'lstm', 'lnlstm', 'gru'), 'model.cell',
                "must be one of 'rnn', 'lstm', 'lnlstm', 'gru'", m.cell)
    common.epsilon_schedule(config)


# --------------------------------------------------------------------------- #
# Loss.

def label_smoothed_cross_entropy(logits, targets, smoothing: float):
    """Per-token cross-entropy against (1 - smoothing) on the target and smoothing
    spread evenly over the other V - 1 tokens (Szegedy et al. 2016; §5.4)."""
    vocab = logits.shape[-1]
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    if not smoothing:
        return nll
    others = -jnp.sum(log_p, axis=-1) - nll  # -sum of log p over the non-targets
    return (1.0 - smoothing) * nll + smoothing / (vocab - 1) * others


# --------------------------------------------------------------------------- #
# The task the training engine runs.

class TranslationTask:
    """Teacher forcing: label-smoothed cross-entropy over the real target tokens.

    The loss of a batch is the mean over its non-pad target tokens (weights from the
    batch). With grad_accum_steps > 1 the engine averages the micro-batches' means,
    which weighs a token of a short micro-batch a little more than one of a long one.
    """

    def __init__(self, config, model, data):
        self.config, self.model, self.data = config, model, data
        self.is_transformer = isinstance(model, models.Transformer)
        self.scheduled = config.scheduled_sampling != 'none'
        self.epsilon = common.epsilon_schedule(config)
        self._translator = None
        self._signature_shown = False

    def init_params(self, rng):
        tokens = jnp.ones((1, 8), jnp.int32)
        if self.is_transformer:
            inputs = (tokens, tokens)
        else:
            inputs = (tokens, jnp.full((1,), 8, jnp.int32), tokens)
        return self.model.init({'params': rng, 'dropout': rng}, *inputs)['params']

    def logits(self, params, batch, rng, deterministic):
        src, tgt_in = batch['src'], batch['tgt_in']
        rngs = {} if rng is None else {'dropout': rng}
        if self.is_transformer:
            return self.model.apply({'params': params}, src, tgt_in,
                                    deterministic=deterministic, rngs=rngs)
        kwargs = {}
        if self.scheduled and not deterministic:
            # Every row carries the same eps (a function of the step).
            kwargs['sampling_prob'] = jnp.mean(batch['sampling_prob'])
        return self.model.apply({'params': params}, src, batch['src_lengths'], tgt_in,
                                deterministic=deterministic, rngs=rngs, **kwargs)

    def loss_fn(self, params, batch, rng, deterministic):
        logits = self.logits(params, batch, rng, deterministic)
        w = batch['weights']
        num_tokens = jnp.maximum(w.sum(), 1.0)
        smoothed = label_smoothed_cross_entropy(logits, batch['tgt_out'],
                                                self.config.label_smoothing)
        nll = label_smoothed_cross_entropy(logits, batch['tgt_out'], 0.0)
        correct = logits.argmax(-1) == batch['tgt_out']
        aux = {'nll': (nll * w).sum() / num_tokens,
               'accuracy': (correct * w).sum() / num_tokens,
               'num_tokens': w.sum()}
        return (smoothed * w).sum() / num_tokens, aux

    def train_batch(self, step, process_index, process_count):
        batch = self.data.train_batch(step, process_index, process_count)
        if self.scheduled:
            eps = float(self.epsilon(step))
            batch['sampling_prob'] = np.full((len(batch['src']),), eps, np.float32)
        return batch

    def eval_metrics(self, params, batch):
        batch = fit_to_model(self.model, batch)
        logits = self.logits(params, batch, None, deterministic=True)
        nll = label_smoothed_cross_entropy(logits, batch['tgt_out'], 0.0)
        correct = logits.argmax(-1) == batch['tgt_out']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        if not self.data.split_stems['validation']:
            return iter(())
        batches = self.data.eval_iterator('validation', process_index, process_count)
        return ({k: v for k, v in b.items() if k != 'example_ids'} for b in batches)

    def finalize_eval(self, metrics):
        if 'loss' in metrics:
            metrics = dict(metrics, perplexity=math.exp(min(metrics['loss'], 100.0)))
        return metrics

    def on_eval(self, params, step):
        n = self.config.num_eval_examples
        if not n or not self.data.split_stems['validation']:
            return {}
        if self._translator is None:
            self._translator = Translator.from_config(
                self.config, self.model, self.data.source_tokenizer,
                self.data.target_tokenizer)
        sources = self.data.sources('validation')[:n]
        references = self.data.references('validation')[:n]
        beams = 1 if self.config.eval_decoding == 'greedy' else self.config.beam_size
        hypotheses, _ = self._translator.translate(jax.device_get(params), sources, beams)
        bleu, signature = corpus_bleu(hypotheses, references)
        if not self._signature_shown:
            logging.info('eval/bleu: sacreBLEU on the first %d validation lines, %s decoding; '
                         'signature %s', len(sources), self.config.eval_decoding, signature)
            self._signature_shown = True
        shown = [f'src: {s}\nref: {r}\nhyp: {h}' for s, r, h in
                 zip(sources, references, hypotheses)][:self.config.num_shown_translations]
        out = {'bleu': bleu}
        if shown:
            out['translations'] = '\n\n'.join(shown)
        return out


def fit_to_model(model, batch):
    """Cuts columns beyond a Transformer's position table (long evaluation lines only:
    training pairs are filtered to fit, evaluation splits are not)."""
    limit = getattr(model, 'max_len', None)
    if limit is None:
        return batch
    out = dict(batch)
    for key in ('src', 'tgt_in', 'tgt_out', 'weights'):
        if key in out and out[key].shape[1] > limit:
            out[key] = out[key][:, :limit]
    return out


# --------------------------------------------------------------------------- #
# Decoding. One adapter per model family turns the model into what
# seqmodels.decoding drives: `start` runs the encoder once per batch, `step` feeds
# one target token; every state leaf is batch-leading (the Transformer's shared
# cache position is 0-d), so beam search can tile and re-index all of it.

class TransformerAdapter:

    @staticmethod
    def start(model, params, src, src_lengths, max_decode_len):
        del src_lengths  # the source mask is src != PAD
        memory = model.apply({'params': params}, src, method=models.Transformer.encode)
        return {'memory': memory, 'src_mask': src != PAD_ID,
                'cache': model.init_cache(src.shape[0], max_decode_len),
                'index': jnp.zeros((), jnp.int32)}

    @staticmethod
    def step(model, params, tokens, state):
        logits, cache = model.apply(
            {'params': params}, state['memory'], state['src_mask'], tokens[:, None],
            state['cache'], state['index'], method=models.Transformer.decode_step)
        return logits[:, 0], dict(state, cache=cache, index=state['index'] + 1)


class RNNAdapter:

    @staticmethod
    def start(model, params, src, src_lengths, max_decode_len):
        del max_decode_len  # a recurrent carry has no length
        memory = model.apply({'params': params}, src, src_lengths,
                             method=models.RNNSeq2Seq.encode)
        carry = memory.pop('decoder_carry')
        return {'memory': memory, 'carry': carry}

    @staticmethod
    def step(model, params, tokens, state):
        logits, carry = model.apply({'params': params}, state['memory'], state['carry'],
                                    tokens, method=models.RNNSeq2Seq.decode_step)
        return logits, dict(state, carry=carry)


def adapter_for(model):
    if isinstance(model, models.Transformer):
        return TransformerAdapter
    if isinstance(model, models.RNNSeq2Seq):
        return RNNAdapter
    raise TypeError(f'no decoding adapter for {type(model).__name__}')


def decode(model, params, src, src_lengths, *, search: str, beam_size: int = 1,
           alpha: float = 0.0, max_decode_extra: int, max_decode_len: int):
    """Target ids [B, max_decode_len] (EOS, then PAD) for src [B, S].

    Example b gets at most src_lengths[b] + max_decode_extra tokens (EOS included), and
    never more than `max_decode_len` (static: the buffer and cache length). `search` is
    'greedy' or 'beam'; beam search returns its best hypothesis.
    """
    adapter = adapter_for(model)
    state = adapter.start(model, params, src, src_lengths, max_decode_len)
    step = functools.partial(adapter.step, model, params)
    bos = jnp.full((src.shape[0],), BOS_ID, jnp.int32)
    limit = jnp.minimum(src_lengths + max_decode_extra, max_decode_len)
    if search == 'greedy':
        tokens, _ = decoding.greedy(step, state, bos, max_decode_len, eos_id=EOS_ID,
                                    pad_id=PAD_ID)
        # Rows are independent, so cutting at the limit equals stopping there.
        return jnp.where(jnp.arange(max_decode_len)[None] < limit[:, None], tokens, PAD_ID)
    if search == 'beam':
        sequences, _ = decoding.beam_search(step, state, bos, beam_size, limit, EOS_ID, alpha,
                                            max_decode_len=max_decode_len, pad_id=PAD_ID)
        return sequences[:, 0]
    raise ValueError(f"search must be 'greedy' or 'beam', got {search!r}")


@dataclasses.dataclass
class DecodeStats:
    sentences: int = 0
    compile_sec: float = 0.0
    decode_sec: float = 0.0  # excluding compilation

    @property
    def sentences_per_sec(self) -> float:
        return self.sentences / self.decode_sec if self.decode_sec else math.nan


# Compiled decoders, shared by every Translator in the process (flax modules compare by
# their fields), so that evaluating and translating with one model compiles once.
_EXECUTABLES: dict = {}


class Translator:
    """Sentences in, sentences out: batched, length-sorted, jit-compiled decoding.

    Sources are sorted by length and cut into batches of `batch_size` rows, each padded
    to a length bucket, so jit compiles once per (bucket, search) and pads little.
    Empty (blank) lines are not decoded: they translate to an empty line.
    """

    def __init__(self, model, source_tokenizer, target_tokenizer, *, batch_size: int,
                 boundaries: Sequence[int], max_decode_extra: int, alpha: float):
        self.model = model
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.batch_size, self.max_decode_extra, self.alpha = batch_size, max_decode_extra, alpha
        self.boundaries = tuple(sorted(boundaries))
        self.max_source_len = getattr(model, 'max_len', None)

    @classmethod
    def from_config(cls, config, model, source_tokenizer, target_tokenizer):
        boundaries = config.get('bucket_boundaries') or translation_data.DEFAULT_BOUNDARIES
        longest = max(config.max_source_length, config.max_target_length)
        return cls(model, source_tokenizer, target_tokenizer,
                   batch_size=config.decode_batch_size,
                   boundaries=[b for b in boundaries if b < longest] + [longest],
                   max_decode_extra=config.max_decode_extra,
                   alpha=config.length_penalty_alpha)

    def bucket(self, length: int) -> int:
        for boundary in self.boundaries:
            if length <= boundary:
                break
        else:
            boundary = -(-length // self.boundaries[-1]) * self.boundaries[-1]
        return boundary if self.max_source_len is None else min(boundary, self.max_source_len)

    def translate(self, params, sentences: Sequence[str], beam_size: int = 1
                  ) -> tuple[list[str], DecodeStats]:
        """Translations of `sentences` in their order; beam_size=1 is greedy decoding."""
        stats = DecodeStats(sentences=len(sentences))
        out = [''] * len(sentences)
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        ids = self.source_tokenizer.encode_batch([sentences[i] for i in todo])
        order = sorted(range(len(todo)), key=lambda j: len(ids[j]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            src, src_lengths = self._source_batch([ids[j] for j in chunk])
            fn = self._executable(params, src, src_lengths, beam_size, stats)
            begin = time.perf_counter()
            tokens = np.asarray(fn(params, src, src_lengths))
            stats.decode_sec += time.perf_counter() - begin
            for row, j in enumerate(chunk):
                out[todo[j]] = self.target_tokenizer.decode(tokens[row]).replace('\n', ' ')
        return out, stats

    def _source_batch(self, rows):
        longest = max(len(r) for r in rows) + 1
        length = self.bucket(longest)
        src = np.full((self.batch_size, length), PAD_ID, np.int32)
        src[:, 0] = EOS_ID  # filler rows: a one-token source, never an all-masked one
        src_lengths = np.ones(self.batch_size, np.int32)
        for i, r in enumerate(rows):
            r = list(r)[:length - 1]  # beyond a Transformer's position table: cut
            src[i, :len(r)] = r
            src[i, len(r)] = EOS_ID
            src_lengths[i] = len(r) + 1
        return src, src_lengths

    def _executable(self, params, src, src_lengths, beam_size, stats):
        max_decode_len = src.shape[1] + self.max_decode_extra
        if self.max_source_len is not None:
            max_decode_len = min(max_decode_len, self.max_source_len)
        leaves, treedef = jax.tree.flatten(params)
        key = (self.model, src.shape, beam_size, self.alpha, self.max_decode_extra,
               max_decode_len, treedef, tuple((np.shape(x), np.result_type(x)) for x in leaves))
        if key not in _EXECUTABLES:
            fn = functools.partial(
                decode, self.model, search='greedy' if beam_size == 1 else 'beam',
                beam_size=beam_size, alpha=self.alpha, max_decode_extra=self.max_decode_extra,
                max_decode_len=max_decode_len)
            begin = time.perf_counter()
            _EXECUTABLES[key] = jax.jit(fn).lower(params, src, src_lengths).compile()
            stats.compile_sec += time.perf_counter() - begin
        return _EXECUTABLES[key]


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU (one reference per line) and its signature."""
    metric = sacrebleu.metrics.BLEU()
    if not hypotheses:  # sacreBLEU needs a score before it can sign it
        metric.corpus_score([''], [['']])
        return 0.0, str(metric.get_signature())
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())


# --------------------------------------------------------------------------- #
# Modes.

def load_data(config, workdir):
    """The pipeline; every data problem becomes a DataError (one line, no traceback)."""
    try:
        data = translation_data.make_translation_data(
            config, workdir, data_dir=os.path.expanduser(config.data_dir) or None)
        # Read the evaluation splits now: a bad file fails before anything compiles.
        for role in ('validation', 'test'):
            if data.split_stems[role]:
                data.sources(role)
        return data
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise DataError(f'translation data {config.dataset!r}: {e}') from None


def build(config, workdir):
    """Data, model and task for `config`; fills in the model's vocab sizes from the
    tokenizers (SentencePiece may give fewer pieces than `vocab_size` asks)."""
    data = load_data(config, workdir)
    with config.unlocked():
        config.model.src_vocab_size = data.source_tokenizer.vocab_size
        config.model.tgt_vocab_size = data.target_tokenizer.vocab_size
    model = models.build_model(config.model)
    return data, model, TranslationTask(config, model, data)


def load_tokenizers(config, workdir):
    folder = os.path.join(workdir, 'tokenizer')
    names = (['joint', 'joint'] if config.joint_vocab
             else [config.source_lang, config.target_lang])
    paths = [os.path.join(folder, f'spm_{name}.model') for name in names]
    for path in paths:
        if not os.path.exists(path):
            raise DataError(f'{path} does not exist: is {workdir} the workdir of a '
                            'translation training run?')
    return tuple(SentencePieceTokenizer.load(p) for p in paths)


def train(config, workdir):
    validate(config)
    data, model, task = build(config, workdir)
    logging.info('data: %s', data.report())
    state = training.train_and_evaluate(config, workdir, task)
    print(f'checkpoints: {os.path.join(workdir, "checkpoints")}')
    print(f'metrics:     {os.path.join(workdir, "metrics.jsonl")} (TensorBoard: '
          f'tensorboard --logdir {workdir})')
    print(f'evaluate:    python -m experiments.translation --mode=evaluate '
          f'--workdir={workdir} --split=test')
    return state


def evaluate(workdir, split: str = 'test', beam_size: int | None = None,
             step: int | None = None) -> dict:
    """sacreBLEU of the latest (or `step`) checkpoint on a whole split, with the requested
    beam and, when that is not greedy, greedy too; writes WORKDIR/<split>.hyp.<target_lang>."""
    config = common.load_run_config(workdir, 'translation')
    data, model, _ = build(config, workdir)
    try:
        sources, references = data.sources(split), data.references(split)
    except ValueError as e:
        raise DataError(str(e)) from None
    params = training.restore_params(workdir, step)
    translator = Translator.from_config(config, model, data.source_tokenizer,
                                        data.target_tokenizer)
    beam_size = config.beam_size if beam_size is None else beam_size
    if beam_size < 1:
        raise app.UsageError(f'--beam_size must be >= 1, got {beam_size}')
    result = {'split': split, 'sentences': len(sources)}
    for beams in dict.fromkeys([beam_size, 1]):  # the requested search first
        hypotheses, stats = translator.translate(params, sources, beams)
        bleu, signature = corpus_bleu(hypotheses, references)
        name = 'greedy' if beams == 1 else f'beam{beams}'
        result.update({f'{name}/bleu': bleu, f'{name}/sentences_per_sec': stats.sentences_per_sec,
                       f'{name}/compile_sec': stats.compile_sec})
        logging.info('%s BLEU %.2f on %s (%d sentences): %.1f sentences/s decoding '
                     '(%.1f s), plus %.1f s compiling', name, bleu, split, len(sources),
                     stats.sentences_per_sec, stats.decode_sec, stats.compile_sec)
        if beams == beam_size:
            path = os.path.join(workdir, f'{split}.hyp.{config.target_lang}')
            with open(path, 'w', encoding='utf-8') as f:
                f.writelines(h + '\n' for h in hypotheses)
            result.update(bleu=bleu, signature=signature, hypotheses=path)
    print(json.dumps(result, sort_keys=True))
    return result


def read_input_lines(path: str | None) -> list[str]:
    if path is None:
        text = sys.stdin.buffer.read().decode('utf-8', errors='replace').removeprefix('\ufeff')
        lines = text.split('\n')
        if lines and lines[-1] == '':
            lines.pop()
        return [line.removesuffix('\r') for line in lines]
    try:
        return translation_data.read_lines(path)
    except (ValueError, FileNotFoundError) as e:
        raise DataError(str(e)) from None


def translate(workdir, input_path: str | None = None, output_path: str | None = None,
              beam_size: int | None = None, step: int | None = None) -> list[str]:
    """Translates one sentence a line; the output is line-aligned with the input."""
    config = common.load_run_config(workdir, 'translation')
    source_tokenizer, target_tokenizer = load_tokenizers(config, workdir)
    model = models.build_model(config.model)
    params = training.restore_params(workdir, step)
    sentences = read_input_lines(input_path)
    translator = Translator.from_config(config, model, source_tokenizer, target_tokenizer)
    beam_size = config.beam_size if beam_size is None else beam_size
    if beam_size < 1:
        raise app.UsageError(f'--beam_size must be >= 1, got {beam_size}')
    hypotheses, stats = translator.translate(params, sentences, beam_size)
    text = ''.join(h + '\n' for h in hypotheses)
    if output_path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(output_path, 'w', encoding='utf-8') as f:
            f.write(text)
    logging.info('translated %d lines: %.1f sentences/s decoding, %.1f s compiling',
                 len(sentences), stats.sentences_per_sec, stats.compile_sec)
    return hypotheses


if __name__ == '__main__':
    common.run_driver({
        'train': lambda workdir: train(common.CONFIG.value, workdir),
        'evaluate': lambda workdir: evaluate(workdir, _SPLIT.value, _BEAM_SIZE.value,
                                             _STEP.value),
        'translate': lambda workdir: translate(workdir, _INPUT.value, _OUTPUT.value,
                                               _BEAM_SIZE.value, _STEP.value),
    }, 'configs/translation.py:small')
