r"""BERT pre-training (masked LM + next-sentence prediction).

Source: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" §3 and Appendix A.2: BERT-BASE (L=12, H=768, A=12, 110M
parameters) and BERT-LARGE (L=24, H=1024, A=16, 340M); WordPiece vocabulary of
30,522 tokens, 512 positions, 2 segments; batch 256 sequences of 512 tokens for 1M
steps, Adam lr 1e-4 with 10,000 warmup steps and linear decay, dropout 0.1, GELU;
4 days on 4 (base) or 16 (large) Cloud TPUs (Appendix A.2).

  python -m experiments.bert --config=configs/bert.py:base --workdir=DIR
"""

import ml_collections

from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'base'


def base_config() -> ml_collections.ConfigDict:
    """BERT-BASE; `large` overrides it."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 256
    config.num_train_steps = 1_000_000
    config.learning_rate = 1e-4
    config.warmup_steps = 10_000
    config.grad_clip_norm = 1.0  # the released code clips at global norm 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 10_000
    config.checkpoint_every_steps = 10_000
    # Placeholder until the BERT data pipeline lands.
    config.dataset = 'tfds:wikipedia/20230601.en'

    config.model = ml_collections.ConfigDict()
    config.model.name = 'bert'
    config.model.vocab_size = 30_522
    config.model.max_len = 512
    config.model.type_vocab_size = 2
    config.model.dropout = 0.1
    config.model.attention_dropout = 0.1
    config.model.layer_norm_epsilon = 1e-12
    config.model.scan_layers = False
    config.model.d_model = 768
    config.model.num_heads = 12
    config.model.d_ff = 3072
    config.model.num_layers = 12
    return config


VARIANTS = {
    'base': {},
    'large': {'model.d_model': 1024, 'model.num_heads': 16, 'model.d_ff': 4096,
              'model.num_layers': 24},
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
