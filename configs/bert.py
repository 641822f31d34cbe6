r"""BERT pre-training (masked LM + next-sentence prediction): published sizes and recipe.

There is no BERT driver yet; inspect a variant's parameter table or its config with

    python -m seqmodels.summary --config=configs/bert.py:base
    python -c "from configs import bert; print(bert.get_config('large'))"

Source: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" §3 and Appendix A.2. Variants (`base` when none is given):
  base    BERT-BASE: L=12, H=768, A=12; 110M parameters.
  large   BERT-LARGE: L=24, H=1024, A=16; 340M.
Both: WordPiece vocabulary of 30,522 tokens, 512 positions, 2 segments, dropout 0.1,
GELU; batch 256 sequences of 512 tokens for 1,000,000 steps; Adam with lr 1e-4,
β1 0.9, β2 0.999, L2 weight decay 0.01 (decoupled here: adamw, weight_decay 0.01),
learning-rate warmup over the first 10,000 steps, then linear decay (to 0 at the last
step: `warmup_linear`); 4 days on 4 (base) or 16 (large) Cloud TPUs. From the released
code: Adam epsilon 1e-6 and gradients clipped at global norm 1 (its decay line starts
at step 0, so its lr after warmup is 1% below the peak; here decay starts at the peak).

Every engine key can be overridden: --config.learning_rate=5e-5
--config.num_train_steps=100000 --config.model.num_layers=4
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'base'


def base_config() -> ml_collections.ConfigDict:
    """BERT-BASE; `large` overrides it."""
    config = training.default_config()
    config.seed = 0
    config.batch_size = 256
    config.num_train_steps = 1_000_000
    config.optimizer = 'adamw'
    config.adam_b1 = 0.9
    config.adam_b2 = 0.999
    config.adam_eps = 1e-6
    config.weight_decay = 0.01
    config.schedule = 'warmup_linear'
    config.learning_rate = 1e-4
    config.warmup_steps = 10_000
    config.min_lr_ratio = 0.0
    config.grad_clip_norm = 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 10_000
    config.checkpoint_every_steps = 10_000
    # No driver reads `dataset` yet: a placeholder until the BERT data pipeline lands.
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
