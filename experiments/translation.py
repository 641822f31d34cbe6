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

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags, logging

from experiments import common
from seqmodels import models, training
from seqmodels.data import DataError
from seqmodels.data import translation as translation_data
from seqmodels.data.tokenizers import SentencePieceTokenizer
from seqmodels.inference import Translator
from seqmodels.losses import label_smoothed_cross_entropy
from seqmodels.models import scheduled_sampling

_SPLIT = flags.DEFINE_string('split', 'test', 'evaluate: the split (train, val, test or '
                             'a split stem such as test_2016_flickr).')
_BEAM_SIZE = flags.DEFINE_integer('beam_size', None, 'evaluate/translate: beams (1 = greedy; '
                                  "default: the config's beam_size).")
_INPUT = flags.DEFINE_string('input', None, 'translate: source file, one sentence a line '
                             '(default stdin).')
_OUTPUT = flags.DEFINE_string('output', None, 'translate: output file (default stdout).')

MODEL_NAMES = ('transformer', 'seq2seq')


# --------------------------------------------------------------------------- #
# Config checks that belong to this experiment (the engine checks its own keys).

def validate(config: ml_collections.ConfigDict) -> None:
    training.validate_config(config, num_devices=jax.device_count())
    models.check_config(config.model)
    require = training.require
    m = config.model
    require(m.name in MODEL_NAMES, 'model.name', f'must be one of {", ".join(MODEL_NAMES)}',
            m.name)
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
    scheduled_sampling.from_config(config)


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
        self.epsilon = (scheduled_sampling.from_config(config)
                        if config.scheduled_sampling != 'none' else None)
        self._translator = None
        self._signature_shown = False

    def init_params(self, rng):
        return models.init_params(self.config.model, self.model, rng)

    def logits(self, params, batch, rng, deterministic, step=None):
        src, tgt_in = batch['src'], batch['tgt_in']
        rngs = {} if rng is None else {'dropout': rng}
        if self.is_transformer:
            return self.model.apply({'params': params}, src, tgt_in,
                                    deterministic=deterministic, rngs=rngs)
        # eps(step) of scheduled sampling, while training only.
        kwargs = ({} if self.epsilon is None or step is None
                  else {'sampling_prob': self.epsilon(step)})
        return self.model.apply({'params': params}, src, batch['src_lengths'], tgt_in,
                                deterministic=deterministic, rngs=rngs, **kwargs)

    def loss_fn(self, params, batch, rng, deterministic, step):
        logits = self.logits(params, batch, rng, deterministic, step)
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
        return self.data.train_batch(step, process_index, process_count)

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
        bleu, signature, hypotheses, _ = self._translator.score(
            jax.device_get(params), sources, references, beams)
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
    common.print_run_summary(workdir, 'translation', 'evaluate')
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
        raise common.UsageError(f'--beam_size must be >= 1, got {beam_size}')
    result = {'split': split, 'sentences': len(sources)}
    for beams in dict.fromkeys([beam_size, 1]):  # the requested search first
        bleu, signature, hypotheses, stats = translator.score(params, sources, references,
                                                              beams)
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


def translate(workdir, input_path: str | None = None, output_path: str | None = None,
              beam_size: int | None = None, step: int | None = None) -> list[str]:
    """Translates one sentence a line; the output is line-aligned with the input."""
    config = common.load_run_config(workdir, 'translation')
    source_tokenizer, target_tokenizer = load_tokenizers(config, workdir)
    model = models.build_model(config.model)
    params = training.restore_params(workdir, step)
    sentences = common.read_lines(input_path)
    translator = Translator.from_config(config, model, source_tokenizer, target_tokenizer)
    beam_size = config.beam_size if beam_size is None else beam_size
    if beam_size < 1:
        raise common.UsageError(f'--beam_size must be >= 1, got {beam_size}')
    hypotheses, stats = translator.translate(params, sentences, beam_size)
    common.write_lines(hypotheses, output_path)
    logging.info('translated %d lines: %.1f sentences/s decoding, %.1f s compiling',
                 len(sentences), stats.sentences_per_sec, stats.compile_sec)
    return hypotheses


if __name__ == '__main__':
    common.run_driver(train, {
        'evaluate': lambda workdir: evaluate(workdir, _SPLIT.value, _BEAM_SIZE.value,
                                             common.STEP.value),
        'translate': lambda workdir: translate(workdir, _INPUT.value, _OUTPUT.value,
                                               _BEAM_SIZE.value, common.STEP.value),
    }, 'configs/translation.py:small')
