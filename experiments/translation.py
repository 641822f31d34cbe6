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
    # Cross-attention heatmaps of the greedy translation of each line (DIR/attention/):
    python -m experiments.translation --mode=attention --workdir=DIR --input=FILE \
        [--attention_layer=L] [--attention_head=H]

The evaluate, translate and attention modes read the run's DIR/config.json and tokenizer,
so they need no --config. `--beam_size=1` is greedy decoding. BLEU is sacreBLEU's corpus
BLEU of detokenised output, printed with its signature (seqmodels.evaluation).
"""

from __future__ import annotations

import json
import os

import ml_collections
from absl import flags, logging

from experiments import common
from seqmodels import analysis, models, plots, runs, training
from seqmodels.data import DataError, translation as translation_data
from seqmodels.inference import Translator
from seqmodels.tasks.translation import TranslationTask
from seqmodels.models import scheduled_sampling

_SPLIT = flags.DEFINE_string(
    'split',
    'test',
    'evaluate: the split (train, val, test or a split stem such as test_2016_flickr).',
)
_BEAM_SIZE = flags.DEFINE_integer(
    'beam_size', None, "evaluate/translate: beams (1 = greedy; default: the config's beam_size)."
)
_LAYER = flags.DEFINE_integer('attention_layer', None, 'attention: decoder layer (default last).')
_HEAD = flags.DEFINE_integer('attention_head', None, 'attention: one head (default: their mean).')

MODEL_NAMES = ('transformer', 'seq2seq')


def validate(config: ml_collections.ConfigDict) -> None:
    """Every key of a translation config, checked before anything is read or compiled."""
    common.validate(config, MODEL_NAMES)
    require = training.require
    m = config.model
    translation_data.check_config(config)
    Translator.check_config(config)
    require(
        config.num_eval_examples >= 0,
        'num_eval_examples',
        'must be >= 0 (0 = no BLEU while training)',
        config.num_eval_examples,
    )
    require(
        config.eval_decoding in ('greedy', 'beam'),
        'eval_decoding',
        "must be 'greedy' or 'beam'",
        config.eval_decoding,
    )
    if m.name == 'transformer':
        longest = max(config.max_source_length, config.max_target_length)
        require(
            longest <= m.max_len,
            'model.max_len',
            f'must be >= max_source_length and max_target_length ({longest}): the '
            'position table covers every padded training sequence',
            m.max_len,
        )
        require(
            not m.share_embeddings or config.joint_vocab,
            'model.share_embeddings',
            'needs one vocabulary for both languages: set joint_vocab=True',
            m.share_embeddings,
        )
        require(
            config.scheduled_sampling == 'none',
            'scheduled_sampling',
            "applies to the RNN (model.name='seq2seq') only; use 'none'",
            config.scheduled_sampling,
        )
    scheduled_sampling.from_config(config)


# --------------------------------------------------------------------------- #
# Modes.


def build(config, workdir):
    """Data, model and task for `config`; fills in the model's vocab sizes from the
    tokenizers (SentencePiece may give fewer pieces than `vocab_size` asks)."""
    data = translation_data.load(config, workdir)
    with config.unlocked():
        config.model.src_vocab_size = data.source_tokenizer.vocab_size
        config.model.tgt_vocab_size = data.target_tokenizer.vocab_size
    model = models.from_config(config)
    return data, model, TranslationTask(config, model, data)


def train(config, workdir):
    validate(config)
    data, model, task = build(config, workdir)
    logging.info('data: %s', data.report())
    state = training.train_and_evaluate(config, workdir, task)
    common.print_run_summary(workdir, 'translation', 'evaluate')
    return state


def _beam_size(config, beam_size: int | None) -> int:
    beam_size = config.beam_size if beam_size is None else beam_size
    if beam_size < 1:
        raise common.UsageError(f'--beam_size must be >= 1, got {beam_size}')
    return beam_size


def evaluate(
    workdir, split: str = 'test', beam_size: int | None = None, step: int | None = None
) -> dict:
    """sacreBLEU of the latest (or `step`) checkpoint on a whole split, with the requested
    beam and, when that is not greedy, greedy too; writes WORKDIR/<split>.hyp.<target_lang>."""
    config = common.load_run_config(workdir, 'translation')
    data, _, _ = build(config, workdir)
    try:
        sources, references = data.sources(split), data.references(split)
    except ValueError as e:
        raise DataError(str(e)) from None
    run = runs.restore(workdir, step, config)
    result, hypotheses = runs.score_translation(
        run, sources, references, _beam_size(config, beam_size), split
    )
    path = os.path.join(workdir, f'{split}.hyp.{config.target_lang}')
    common.write_lines(hypotheses, path)
    result.update(split=split, sentences=len(sources), hypotheses=path)
    print(json.dumps(result, sort_keys=True))
    return result


def translate(
    workdir,
    input_path: str | None = None,
    output_path: str | None = None,
    beam_size: int | None = None,
    step: int | None = None,
) -> list[str]:
    """Translates one sentence a line; the output is line-aligned with the input."""
    run = runs.restore(workdir, step, common.load_run_config(workdir, 'translation'))
    sentences = common.read_lines(input_path)
    hypotheses, stats = runs.translator(run).translate(
        run.params, sentences, _beam_size(run.config, beam_size)
    )
    common.write_lines(hypotheses, output_path)
    logging.info(
        'translated %d lines: %.1f sentences/s decoding, %.1f s compiling',
        len(sentences),
        stats.sentences_per_sec,
        stats.compile_sec,
    )
    return hypotheses


def attention(workdir, input_path=None, layer=None, head=None, step=None) -> list[str]:
    """WORKDIR/attention/<i>.png: the cross-attention of line i's greedy translation."""
    config = common.load_run_config(workdir, 'translation')
    try:
        analysis.check_layer_and_head(models.from_config(config), layer, head)
    except analysis.ChoiceError as e:
        raise common.UsageError(f'--attention_{e}') from None
    maps = analysis.translation_attention(
        runs.restore(workdir, step, config), common.read_lines(input_path), layer, head
    )
    return plots.plot_attention_maps(maps, os.path.join(workdir, 'attention'))


if __name__ == '__main__':
    common.run_driver(
        train,
        {
            'evaluate': lambda w: evaluate(w, _SPLIT.value, _BEAM_SIZE.value, common.STEP.value),
            'translate': lambda w: translate(
                w, common.INPUT.value, common.OUTPUT.value, _BEAM_SIZE.value, common.STEP.value
            ),
            'attention': lambda w: print(
                *attention(w, common.INPUT.value, _LAYER.value, _HEAD.value, common.STEP.value),
                sep='\n',
            ),
        },
        'configs/translation.py:small',
    )
