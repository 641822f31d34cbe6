r"""Transformer encoder-decoder for machine translation.

Source: Vaswani et al. 2017, "Attention Is All You Need", Table 3 rows "base" and
"big" (WMT 2014 En-De: 27.3 and 28.4 BLEU on newstest2014; 65M and 213M
parameters; a shared source-target BPE vocabulary of about 37,000 tokens, §5.1).
The optimizer of §5.3 is Adam (β1 0.9, β2 0.98, ε 1e-9) with
lrate = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5), warmup 4000 steps;
label smoothing 0.1 (§5.4). Base trains 100k steps (12 hours), big 300k (3.5 days),
on 8 P100 GPUs with batches of about 25,000 source + 25,000 target tokens (§5.2).

Variants:
  base   Table 3 "base": 6 layers, d_model 512, 8 heads, d_ff 2048, P_drop 0.1
  big    Table 3 "big": 6 layers, d_model 1024, 16 heads, d_ff 4096, P_drop 0.3
  small  3 layers, d_model 256, 8 heads, d_ff 512, separate vocabularies: sized for
         Multi30k (or the embedded CLDR corpus) on a CPU

  python -m experiments.translation --config=configs/translation.py:base --workdir=DIR
"""

import ml_collections

VARIANTS = {
    'base': {'d_model': 512, 'num_heads': 8, 'd_ff': 2048, 'num_encoder_layers': 6,
             'num_decoder_layers': 6, 'dropout': 0.1},
    'big': {'d_model': 1024, 'num_heads': 16, 'd_ff': 4096, 'num_encoder_layers': 6,
            'num_decoder_layers': 6, 'dropout': 0.3},
    'small': {'d_model': 256, 'num_heads': 8, 'd_ff': 512, 'num_encoder_layers': 3,
              'num_decoder_layers': 3, 'dropout': 0.1},
}


def get_config(variant: str = 'base') -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r}; choose one of {sorted(VARIANTS)}')
    wmt = variant in ('base', 'big')
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Sentence pairs per step (global); the paper batches by tokens, ~25k per side.
    config.batch_size = 256 if wmt else 128
    config.num_train_steps = {'base': 100_000, 'big': 300_000, 'small': 10_000}[variant]
    # Peak of the §5.3 schedule: d_model^-0.5 · warmup_steps^-0.5.
    config.warmup_steps = 4000 if wmt else 1000
    config.learning_rate = VARIANTS[variant]['d_model'] ** -0.5 * config.warmup_steps ** -0.5
    config.grad_clip_norm = 0.0  # the paper does not clip
    config.log_every_steps = 100
    config.eval_every_steps = 5000 if wmt else 500
    config.checkpoint_every_steps = 5000 if wmt else 1000
    # WMT needs a download; `small` runs on the embedded corpus, or on Multi30k files
    # given as parallel:DIR.
    config.dataset = 'tfds:wmt14_translate/de-en' if wmt else 'cldr_en_de'

    config.model = ml_collections.ConfigDict()
    config.model.name = 'transformer'
    # One shared BPE vocabulary for WMT (§5.1); Multi30k vocabularies are per language.
    vocab = 37_000 if wmt else 8_000
    config.model.src_vocab_size = vocab
    config.model.tgt_vocab_size = vocab
    config.model.attention_dropout = 0.0
    config.model.max_len = 256
    config.model.scan_layers = False
    config.model.share_embeddings = wmt
    config.model.update(VARIANTS[variant])
    return config
