r"""GPT decoder-only language models.

Sources:
  gpt1        Radford et al. 2018, "Improving Language Understanding by Generative
              Pre-Training" §4.1: 12 layers, d_model 768, 12 heads, d_ff 3072, context
              512, BPE vocabulary of 40,000 merges (40,478 tokens in the release),
              GELU, dropout 0.1, Adam with peak lr 2.5e-4 (2000 warmup steps then
              cosine), 100 epochs of minibatches of 64 sequences; about 117M
              parameters.
  gpt2_small  Radford et al. 2019, "Language Models are Unsupervised Multitask
              Learners" Table 2 (smallest model): 12 layers, d_model 768, context
              1,024, vocabulary 50,257, batch 512, pre-norm; 124M parameters with the
              tied head (the paper's table says 117M).

  python -m experiments.gpt --config=configs/gpt.py:gpt2_small --workdir=DIR
"""

import ml_collections

from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'gpt2_small'


def base_config() -> ml_collections.ConfigDict:
    """GPT-2 small; `gpt1` overrides it."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 512
    config.num_train_steps = 100_000
    config.learning_rate = 6e-4
    config.warmup_steps = 2000
    config.grad_clip_norm = 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    # Placeholder until the LM data pipeline lands (BooksCorpus and WebText are not
    # redistributable).
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
             'batch_size': 64, 'learning_rate': 2.5e-4, 'warmup_steps': 2000},
    'gpt2_small': {},
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
