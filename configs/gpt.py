r"""GPT decoder-only language models: the published sizes and optimisation.

There is no GPT driver yet; inspect a variant's parameter table or its config with

    python -m seqmodels.summary --config=configs/gpt.py:gpt2_small
    python -c "from configs import gpt; print(gpt.get_config('gpt1'))"

Variants (the part after the colon; `gpt2_small` when none is given):
  gpt1        Radford et al. 2018, "Improving Language Understanding by Generative
              Pre-Training" §4.1: 12 layers, d_model 768, 12 heads, d_ff 3072, context
              512, BPE vocabulary of 40,000 merges (40,478 tokens in the release),
              GELU, dropout 0.1, post-norm; about 117M parameters. Adam with a max lr
              of 2.5e-4, increased linearly over the first 2000 updates and annealed to
              0 with a cosine (`warmup_cosine`, min_lr_ratio 0); their "modified L2"
              weight decay of 0.01 on all non-bias, non-gain weights is decoupled
              weight decay (adamw, weight_decay 0.01); minibatches of 64 sequences.
  gpt2_small  Radford et al. 2019, "Language Models are Unsupervised Multitask
              Learners" Table 2 (smallest model): 12 layers, d_model 768, context
              1,024, vocabulary 50,257, batch 512, pre-norm; 124M parameters with the
              tied head (the paper's table says 117M). The paper gives no optimiser
              settings; these are nanoGPT's GPT-2 reproduction (its train.py
              defaults): AdamW β2 0.95, weight decay 0.1, lr 6e-4 after 2000 warmup
              steps, cosine decay to 6e-5 (min_lr_ratio 0.1), gradients clipped at
              global norm 1.

Every engine key can be overridden: --config.schedule=warmup_linear
--config.learning_rate=3e-4 --config.model.num_layers=6
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'gpt2_small'


def base_config() -> ml_collections.ConfigDict:
    """GPT-2 small; `gpt1` overrides it."""
    config = training.default_config()
    config.seed = 0
    config.batch_size = 512
    config.num_train_steps = 100_000
    config.optimizer = 'adamw'
    config.adam_b1 = 0.9
    config.adam_b2 = 0.95
    config.weight_decay = 0.1
    config.schedule = 'warmup_cosine'
    config.learning_rate = 6e-4
    config.warmup_steps = 2000
    config.min_lr_ratio = 0.1
    config.grad_clip_norm = 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    # No driver reads `dataset` yet: a placeholder until the LM data pipeline lands
    # (BooksCorpus and WebText are not redistributable).
    config.dataset = 'tfds:lm1b'

    config.model = ml_collections.ConfigDict()
    config.model.name = 'gpt'
    config.model.vocab_size = 50_257
    config.model.max_len = 1024
    config.model.d_model = 768
    config.model.num_heads = 12
    config.model.d_ff = 3072
    config.model.num_layers = 12
    config.model.dropout = 0.1
    config.model.attention_dropout = 0.1
    config.model.norm = 'pre'
    config.model.layer_norm_epsilon = 1e-5
    config.model.scan_layers = False
    config.model.num_classes = 0  # set > 0 for GPT-1 style fine-tuning
    return config


VARIANTS = {
    'gpt1': {'model.vocab_size': 40_478, 'model.max_len': 512, 'model.norm': 'post',
             'batch_size': 64, 'learning_rate': 2.5e-4, 'warmup_steps': 2000,
             'min_lr_ratio': 0.0, 'weight_decay': 0.01, 'adam_b2': 0.999},
    'gpt2_small': {},
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
