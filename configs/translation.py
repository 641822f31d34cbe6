r"""Machine translation: the Transformer (Vaswani et al. 2017) and the RNN encoder-decoder
with additive attention (Bahdanau, Cho & Bengio 2015).

    python -m experiments.translation --config=configs/translation.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    python -m experiments.translation --mode=evaluate --workdir=DIR --split=test [--beam_size=4]
    python -m experiments.translation --mode=translate --workdir=DIR [--input=F] [--output=F]

Variants (the part after the colon; `small` when none is given):
  small          3 layers, d_model 256, 8 heads, d_ff 512, P_drop 0.1, one joint
                 SentencePiece vocabulary of ~8000 shared by embeddings and softmax,
                 label smoothing 0.1, Adam (0.9, 0.98, 1e-9) with the §5.3 schedule.
                 Dataset: the embedded `cldr_en_de` corpus, en->de (works offline).
  multi30k_small `small` on Multi30k (WMT16 multimodal task 1), de->en, tested on
                 test_2016_flickr. Its data keys:
                   --config.dataset=parallel:../shared/data/multi30k
                   --config.source_lang=de --config.target_lang=en
                   --config.test_split=test_2016_flickr
                 2,250 steps (~10 epochs), peak lr 1e-3, ~50 minutes on 2 CPU cores.
                 en->de: add --config.source_lang=en --config.target_lang=de.
                 Its test BLEU and decoding speed: the claim `multi30k_bleu` in
                 RESULTS.md.
  base, big      Vaswani et al. 2017, Table 3: 6+6 layers, d_model 512 / 1024, 8 / 16
                 heads, d_ff 2048 / 4096, P_drop 0.1 / 0.3, a shared vocabulary of
                 37,000 pieces (§5.1). WMT14 En-De from TFDS (needs a download and the
                 `tf` extra the first time). The paper: 27.3 / 28.4 BLEU on newstest2014
                 after 100k / 300k steps on 8 P100 GPUs (12 hours / 3.5 days), beam 4,
                 alpha 0.6, max output length = input length + 50 (§6.1).
  rnn_attention  RNNsearch (Bahdanau et al. 2015): bidirectional GRU encoder, GRU
                 decoder with additive attention and a maxout readout, sized for a CPU
                 (256 wide instead of 1000; embeddings 256 instead of 620); Adam instead
                 of Adadelta; gradient norm clipped at 1 as in the paper.
  multi30k_rnn_attention
                 `rnn_attention` on Multi30k de->en, data keys as in multi30k_small.
                 5,400 steps, ~50 minutes on 2 CPU cores. It has no dropout and
                 overfits Multi30k's 29k pairs within the hour: pick a checkpoint by
                 validation BLEU (eval/bleu; --mode=evaluate --step=N). Test BLEU of the
                 final checkpoint: `multi30k_bleu` in RESULTS.md; of 1,800 steps, with
                 and without scheduled sampling: `scheduled_sampling_translation`.
  tiny, tiny_rnn for tests: a few thousand parameters on a few hundred CLDR pairs.

Two model keys give Table 3's other variations: `key_size` (d_k = d_v, each head's
width; 0 = d_model / num_heads) and `position_embedding` ('sinusoidal' or 'learned', a
trained table of max_len positions for each side).

The §5.3 schedule is lrate = d_model^-0.5 · min(s^-0.5, s · warmup_steps^-1.5)
(`schedule='rsqrt'`, `learning_rate` multiplies it; 1.0 is the paper's). The paper warms
up over 4000 steps of ~25k tokens; `small` takes batches of 128 sentences (~1.7k tokens
on Multi30k) and ~10x fewer steps, so it warms up over 1000 steps, peaking at
256^-0.5 · 1000^-0.5 ≈ 2.0e-3.
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

TRANSFORMER_SIZES = {
    'base': dict(
        d_model=512, num_heads=8, d_ff=2048, num_encoder_layers=6, num_decoder_layers=6, dropout=0.1
    ),
    'big': dict(
        d_model=1024,
        num_heads=16,
        d_ff=4096,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.3,
    ),
    'small': dict(
        d_model=256, num_heads=8, d_ff=512, num_encoder_layers=3, num_decoder_layers=3, dropout=0.1
    ),
    'tiny': dict(
        d_model=32, num_heads=2, d_ff=64, num_encoder_layers=1, num_decoder_layers=1, dropout=0.0
    ),
}
_MULTI30K = '../shared/data/multi30k'
DEFAULT_VARIANT = 'small'
_SMALL_VOCAB, _WMT_VOCAB, _TINY_VOCAB = 8000, 37_000, 120


def transformer_model(size: str, vocab_size: int, max_len: int = 256) -> ml_collections.ConfigDict:
    """The `model` sub-config; vocab sizes are replaced by the tokenizer's when training."""
    model = ml_collections.ConfigDict(
        dict(
            name='transformer',
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            key_size=0,  # d_k = d_v; 0: d_model // num_heads
            attention_dropout=0.0,
            max_len=max_len,
            position_embedding='sinusoidal',  # or 'learned'
            scan_layers=False,
            remat='none',
            share_embeddings=True,
        )
    )
    model.update(TRANSFORMER_SIZES[size])
    return model


def rnn_model(
    vocab_size: int,
    embed_dim: int = 256,
    hidden_size: int = 256,
    cell: str = 'gru',
    dropout: float = 0.0,
) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            name='seq2seq',
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            encoder_layers=1,
            decoder_layers=1,
            cell=cell,
            dropout=dropout,
            forget_bias=1.0,
            attention_dim=hidden_size,
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """The `small` variant; the others override it."""
    config = training.default_config()
    config.seed = 0

    # Data (seqmodels.data.translation). `dataset`: cldr_en_de (embedded), parallel:DIR
    # (files DIR/<split>.<lang>), or tfds:NAME[/CONFIG].
    config.dataset = 'cldr_en_de'
    config.data_dir = '~/.cache/seqmodels/tfds'  # tfds: only
    config.source_lang = 'en'
    config.target_lang = 'de'
    config.train_split = 'train'
    config.validation_split = 'val'
    config.test_split = 'test'
    config.vocab_size = _SMALL_VOCAB  # asked of SentencePiece; a small corpus may give fewer
    config.joint_vocab = True  # one vocabulary for both languages (needed to share)
    config.model_type = 'unigram'
    config.max_source_length = 128  # pieces + EOS; longer training pairs are dropped
    config.max_target_length = 128
    config.eval_batch_size = 0  # 0 = batch_size (teacher-forced validation loss)

    # Optimisation (engine keys, seqmodels.training.config): §5.3 and §5.4.
    config.batch_size = 128  # sentence pairs per step
    config.num_train_steps = 10_000
    config.optimizer = 'adam'
    config.adam_b1 = 0.9
    config.adam_b2 = 0.98
    config.adam_eps = 1e-9
    config.schedule = 'rsqrt'
    config.learning_rate = 1.0  # multiplies the rsqrt schedule
    config.warmup_steps = 1000
    config.grad_clip_norm = 0.0  # the paper does not clip
    config.label_smoothing = 0.1
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000

    # Decoding (§6.1): beam 4, length penalty alpha 0.6 (Wu et al. 2016), at most
    # input length + 50 output pieces.
    config.beam_size = 4
    config.length_penalty_alpha = 0.6
    config.max_decode_extra = 50
    config.decode_batch_size = 64  # sentences per decoding batch
    # BLEU while training: sacreBLEU on the first num_eval_examples validation lines
    # (0 = none), decoded with eval_decoding = 'greedy' or 'beam' (beam_size).
    config.num_eval_examples = 500
    config.eval_decoding = 'greedy'
    config.num_shown_translations = 3

    # Scheduled sampling (Bengio et al. 2015), RNN models only; keys as in char_lm.
    config.scheduled_sampling = 'none'
    config.ss_k = 1.0
    config.ss_c = 0.0
    config.ss_min = 0.0

    config.model = transformer_model('small', _SMALL_VOCAB)
    return config


# Keys only some variants set; the driver reads them with defaults.
_NEW_KEYS = ('bucket_boundaries', 'corpus_sizes')

_MULTI30K_DATA = {
    'dataset': f'parallel:{_MULTI30K}',
    'source_lang': 'de',
    'target_lang': 'en',
    'test_split': 'test_2016_flickr',
    # Captions are short: few length buckets, so few compilations on a CPU.
    'bucket_boundaries': (16, 24, 32, 48),
}


def _wmt14(size: str, num_train_steps: int) -> dict:
    return {
        'dataset': 'tfds:wmt14_translate/de-en',
        'validation_split': 'validation',
        'vocab_size': _WMT_VOCAB,
        'max_source_length': 256,
        'max_target_length': 256,
        # Room for input length + 50 in the position table (sinusoids: no parameters).
        'model': transformer_model(size, _WMT_VOCAB, max_len=512),
        # The paper batches ~25k source + ~25k target tokens; ~800 WMT sentences.
        'batch_size': 768,
        'num_train_steps': num_train_steps,
        'warmup_steps': 4000,
        'eval_every_steps': 5000,
        'checkpoint_every_steps': 5000,
        'num_eval_examples': 1000,
    }


_RNN_ATTENTION = {
    'model': rnn_model(_SMALL_VOCAB),
    'batch_size': 80,  # the paper's minibatch
    'schedule': 'constant',
    'learning_rate': 1e-3,
    'warmup_steps': 0,
    'adam_b2': 0.999,
    'adam_eps': 1e-8,
    'grad_clip_norm': 1.0,
    'label_smoothing': 0.0,
}

_TINY = {
    'corpus_sizes': {'train': 400, 'val': 16, 'test': 16},
    'vocab_size': _TINY_VOCAB,
    'max_source_length': 48,
    'max_target_length': 48,
    'bucket_boundaries': (48,),
    'batch_size': 8,
    'num_train_steps': 4,
    'warmup_steps': 10,
    'learning_rate': 0.1,  # peak 32^-0.5 · 10^-0.5 · 0.1 ≈ 5.6e-3
    'log_every_steps': 2,
    'eval_every_steps': 2,
    'checkpoint_every_steps': 2,
    'num_eval_examples': 8,
    'decode_batch_size': 8,
    'max_decode_extra': 4,
    'beam_size': 2,
}

VARIANTS = {
    'small': {},
    'multi30k_small': {
        **_MULTI30K_DATA,
        # Sized to train in under an hour on 2 CPU cores (0.7-0.8 steps/s): 2,250 steps
        # of 128 pairs is ~10 epochs. Peak lr 1e-3 (half the §5.3 schedule's) at step
        # 1000, then the schedule's rsqrt decay.
        'num_train_steps': 2250,
        'learning_rate': 0.5,
        'eval_every_steps': 750,
        'checkpoint_every_steps': 750,
    },
    'base': _wmt14('base', num_train_steps=100_000),
    'big': _wmt14('big', num_train_steps=300_000),
    'rnn_attention': _RNN_ATTENTION,
    'multi30k_rnn_attention': {
        **_MULTI30K_DATA,
        **_RNN_ATTENTION,
        # Under an hour on 2 CPU cores: 1.6-1.8 steps/s measured (first 300 steps),
        # so 5,400 steps of 80 pairs, ~15 epochs.
        'num_train_steps': 5400,
        'eval_every_steps': 1800,
        'checkpoint_every_steps': 1800,
    },
    'tiny': {**_TINY, 'model': transformer_model('tiny', _TINY_VOCAB, max_len=64)},
    'tiny_rnn': {
        **_TINY,
        'model': rnn_model(_TINY_VOCAB, embed_dim=16, hidden_size=16),
        'schedule': 'constant',
        'learning_rate': 3e-3,
    },
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides, new_keys=_NEW_KEYS)


# --------------------------------------------------------------------------- #
# Sweeps (seqmodels.sweep; the README's "Sweeps" section):
#   python -m experiments.sweep --config=configs/translation.py:multi30k_small \
#       --sweep=table3 --workdir=DIR [--parallel=N]
#
# `table3`: rows of Vaswani et al. 2017, Table 3, at Multi30k scale, each a change
# to the base model (d_model 256, h = 8, d_k = d_v = 32, P_drop 0.1, label smoothing
# 0.1, sinusoidal positions; the paper's base has d_model 512 and d_k 64):
#   (A) h = 1, 4, 16, 32 with d_k = d_model / h: the same computation
#   (B) h = 8 with smaller keys, d_k = 16 and 8 (the paper's 32 and 16, halved)
#   (D) P_drop 0.0 and 0.2; label smoothing 0.0 and 0.2
#   (E) learned positional embeddings instead of sinusoids
# The first row is the base. Rows (B) set `model.key_size`, row (E)
# `model.position_embedding='learned'` (one table for the source, one for the target).
# About 50 minutes a run on 2 CPU cores (12 runs).


def _table3() -> list[dict]:
    rows = [{}]
    rows += [{'model.num_heads': h} for h in (1, 4, 16, 32)]
    rows += [{'model.key_size': d_k} for d_k in (16, 8)]
    rows += [
        {'model.dropout': 0.0},
        {'model.dropout': 0.2},
        {'label_smoothing': 0.0},
        {'label_smoothing': 0.2},
    ]
    rows += [{'model.position_embedding': 'learned'}]
    return rows


def get_sweep(name: str) -> list[dict]:
    """The trials (dicts of config overrides) of sweep `name`: `table3` (above)."""
    if name != 'table3':
        raise ValueError(f'unknown translation sweep {name!r}; choose table3')
    return _table3()
