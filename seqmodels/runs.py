"""A finished training run, read back from its workdir, and scored.

    run = runs.restore('runs/char_lm')            # run.config, run.model, run.params, run.vocab
    run = runs.restore('runs/m30k', step=1800)    # ... run.source_tokenizer, target_tokenizer

`restore` reads what every driver's training writes (WORKDIR/config.json, the
checkpoints) plus the vocabulary (vocab.json) or the SentencePiece tokenizers
(tokenizer/) when the run saved them. The drivers' modes and the notebooks share it;
nothing here reads flags.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
from absl import logging

from seqmodels import models, training
from seqmodels.inference import Translator
from seqmodels.data import translation as translation_data
from seqmodels.data.char_vocab import CharVocab

# The model families whose runs keep SentencePiece tokenizers in WORKDIR/tokenizer.
_TRANSLATION_FAMILIES = ('transformer', 'seq2seq')


@dataclasses.dataclass
class Run:
    """A run's resolved config, its model, the parameters of one checkpoint, and the
    vocabulary or tokenizers it saved (None when it saved none)."""

    workdir: str
    config: ml_collections.ConfigDict
    model: Any
    params: Any
    vocab: CharVocab | None = None
    source_tokenizer: Any = None
    target_tokenizer: Any = None


def restore(
    workdir: str, step: int | None = None, config: ml_collections.ConfigDict | None = None
) -> Run:
    """The run in `workdir` with the parameters of checkpoint `step` (default: the
    latest intact one). `config` saves reading WORKDIR/config.json again."""
    workdir = os.path.abspath(os.path.expanduser(workdir))
    config = training.read_run_config(workdir) if config is None else config
    model = models.from_config(config)
    run = Run(workdir, config, model, training.restore_params(workdir, step))
    if os.path.exists(os.path.join(workdir, 'vocab.json')):
        run.vocab = CharVocab.load(os.path.join(workdir, 'vocab.json'))
    if config.model.name in _TRANSLATION_FAMILIES:
        run.source_tokenizer, run.target_tokenizer = translation_data.load_tokenizers(
            config, workdir
        )
    return run


def validation_text(run: Run, max_chars: int | None = None) -> str:
    """The validation text of a character-LM run's dataset (its first `max_chars`
    characters), read through the run's vocabulary: a character the run never saw
    comes back as U+FFFD."""
    # Imported here: the char-LM pipeline brings grain and TFDS, which other runs never need.
    from seqmodels.data.lm_pipeline import make_char_lm_data

    c = run.config
    data = make_char_lm_data(
        c.dataset,
        seq_len=c.seq_len,
        batch_size=c.batch_size,
        seed=c.seed,
        data_dir=os.path.expanduser(c.data_dir),
        vocab_path=os.path.join(run.workdir, 'vocab.json'),
        val_fraction=c.val_fraction,
        max_chars=c.max_chars or None,
    )
    return data.vocab.decode(data.val_ids[:max_chars])


def translator(run: Run) -> Translator:
    """The Translator of a translation run, with the decoding keys of its config."""
    return Translator.from_config(run.config, run.model, run.source_tokenizer, run.target_tokenizer)


def score_translation(
    run: Run, sources, references, beam_size: int, split: str = ''
) -> tuple[dict, list[str]]:
    """sacreBLEU and decoding speed of a translation run with `beam_size` beams and,
    when that is not greedy, greedily too.

    Returns ({'bleu', 'signature', '<search>/bleu', '<search>/sentences_per_sec',
    '<search>/compile_sec' for search = beam<K> and greedy}, the hypotheses of
    `beam_size`); logs one line per search.
    """
    decoder = translator(run)
    result, kept = {}, None
    for beams in dict.fromkeys([beam_size, 1]):  # the requested search first
        bleu, signature, hypotheses, stats = decoder.score(run.params, sources, references, beams)
        name = 'greedy' if beams == 1 else f'beam{beams}'
        result.update(
            {
                f'{name}/bleu': bleu,
                f'{name}/sentences_per_sec': stats.sentences_per_sec,
                f'{name}/compile_sec': stats.compile_sec,
            }
        )
        logging.info(
            '%s BLEU %.2f on %s (%d sentences): %.1f sentences/s decoding '
            '(%.1f s), plus %.1f s compiling',
            name,
            bleu,
            split,
            len(sources),
            stats.sentences_per_sec,
            stats.decode_sec,
            stats.compile_sec,
        )
        if beams == beam_size:
            result.update(bleu=bleu, signature=signature)
            kept = hypotheses
    return result, kept
