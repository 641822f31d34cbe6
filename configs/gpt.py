r"""GPT: generative pre-training of a subword language model, then fine-tuning on a
labelled task (Radford et al. 2018); the published sizes and optimisation.

    # Pre-train a small GPT on the embedded python_docs corpus (the default variant):
    python -m experiments.gpt --config=configs/gpt.py --workdir=/tmp/gpt_pre
    # Fine-tune it on the embedded python_docs_cloze task (4-way multiple choice):
    python -m experiments.gpt --config=configs/gpt.py:cpu_finetune --workdir=/tmp/gpt_ft \
        --config.init_from=/tmp/gpt_pre

Train mode pre-trains or fine-tunes according to `dataset`: 'python_docs' (embedded),
'text:PATH' (a UTF-8 file or a folder of .txt files) or 'tfds:NAME' pre-train;
'labeled:DIR' (with `task_type` and the split stems) or 'python_docs_cloze' (embedded)
fine-tune. See seqmodels/data/text_corpus.py and labeled.py for the formats.

Variants (the part after the colon; `cpu` when none is given):
  cpu           A 4-layer GPT-2-style (pre-norm) model, d_model 256, 4 heads, d_ff 1024,
                context 128, BPE vocabulary of 8,000 with <start>/<delim>/<extract>
                reserved: 5.2M parameters. 2,000 steps of 32 x 128 tokens, AdamW, lr 6e-4
                after 200 warmup steps, cosine to 6e-5: sized for one hour on 2 idle CPU
                cores (timed at 2.75 CPU-seconds a step, about 1.4-1.6 s of wall time
                on 2 cores).
  cpu_finetune  That architecture fine-tuned from `init_from` with GPT-1's L3 = L2 +
                0.5 L1 (§3.2): 3 epochs (`num_epochs`) of batch 32, sequences of at most
                80 tokens, AdamW lr 2e-4, 30 warmup steps, linear decay to 0. On SST-2
                (6,920 sentences: 649 steps, 1.65 CPU-seconds a step) about 10 minutes on
                2 idle cores. --config.load_weights=False: the pre-trained run's
                tokenizer and architecture with random weights; --config.lm_coef=0:
                without the auxiliary LM loss.
  gpt1          Radford et al. 2018, "Improving Language Understanding by Generative
                Pre-Training" §4.1: 12 layers, d_model 768, 12 heads, d_ff 3072, context
                512, BPE vocabulary of 40,000 merges (40,478 tokens in the release),
                GELU, dropout 0.1, post-norm; about 117M parameters. Adam with a max lr
                of 2.5e-4, increased linearly over the first 2000 updates and annealed to
                0 with a cosine (`warmup_cosine`, min_lr_ratio 0); their "modified L2"
                weight decay of 0.01 on all non-bias, non-gain weights is decoupled
                weight decay (adamw, weight_decay 0.01); minibatches of 64 sequences.
  gpt1_finetune GPT-1's fine-tuning recipe (§4.1): lr 6.25e-5, batch 32, 3 epochs,
                linear decay after a short warmup (the paper: 0.2% of training; here 10
                steps), classifier dropout 0.1, λ = 0.5; the gpt1 architecture, from
                `init_from`.
  gpt2_small    Radford et al. 2019, "Language Models are Unsupervised Multitask
                Learners" Table 2 (smallest model): 12 layers, d_model 768, context
                1,024, vocabulary 50,257, batch 512, pre-norm; 124M parameters with the
                tied head (the paper's table says 117M). The paper gives no optimiser
                settings; these are nanoGPT's GPT-2 reproduction (its train.py
                defaults): AdamW β2 0.95, weight decay 0.1, lr 6e-4 after 2000 warmup
                steps, cosine decay to 6e-5 (min_lr_ratio 0.1), gradients clipped at
                global norm 1.
BooksCorpus (GPT-1) and WebText (GPT-2) are not redistributable: the paper-sized
variants read 'tfds:lm1b' (online) unless given --config.dataset.

Every key can be overridden: --config.schedule=warmup_linear --config.learning_rate=3e-4
--config.model.num_layers=6. Inspect a variant with
    python -m seqmodels.summary --config=configs/gpt.py:gpt1
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'cpu'


def base_config() -> ml_collections.ConfigDict:
    """GPT-2 small pre-training; the variants override it."""
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

    # Data: pre-training text, or a labelled task (which makes the run a fine-tuning).
    config.dataset = 'tfds:lm1b'
    config.normalize = 'none'  # or 'lower'; a fine-tuning run must use its pre-training's
    config.val_fraction = 0.05  # text:PATH / tfds without a held-out split
    config.data_dir = '~/.cache/seqmodels/tfds'
    config.seq_len = 1024  # tokens per training window; fine-tuning: the longest sequence
    config.tokenizer_vocab_size = 50_257
    config.tokenizer_model_type = 'bpe'
    config.num_eval_batches = 0  # 0 = the whole validation split
    config.sample_prompt = ''  # pre-training: a sample at every evaluation
    config.sample_tokens = 0
    config.sample_temperature = 0.8

    # Fine-tuning.
    config.init_from = ''  # the workdir of a pre-training run; '' = random init
    config.load_weights = True  # False: its tokenizer and architecture, random weights
    config.task_type = 'classification'  # entailment | similarity | multiple_choice
    config.train_split = 'train'  # file stems in labeled:DIR ('' = no such split)
    config.validation_split = 'dev'
    config.test_split = 'test'
    config.lm_coef = 0.5  # λ of L3 = L2 + λ·L1
    config.num_epochs = 0.0  # > 0: num_train_steps = epochs of the training split

    config.model = ml_collections.ConfigDict()
    config.model.name = 'gpt'
    config.model.vocab_size = 50_257  # 0 = the tokenizer's size
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
    config.model.remat = 'none'  # or 'block' / 'dots': recompute in the backward pass
    config.model.num_classes = 0  # fine-tuning: 0 = from the data
    return config


CPU_MODEL = {
    'model.vocab_size': 0,
    'model.max_len': 128,
    'model.d_model': 256,
    'model.num_heads': 4,
    'model.d_ff': 1024,
    'model.num_layers': 4,
}
CPU_PRETRAINING = {
    **CPU_MODEL,
    'dataset': 'python_docs',
    'seq_len': 128,
    'tokenizer_vocab_size': 8000,
    'batch_size': 32,
    'num_train_steps': 2000,
    'learning_rate': 6e-4,
    'warmup_steps': 200,
    'log_every_steps': 50,
    'eval_every_steps': 500,
    'checkpoint_every_steps': 500,
    'num_eval_batches': 20,
    'sample_prompt': 'The',
    'sample_tokens': 60,
}
CPU_FINETUNING = {
    **CPU_MODEL,
    'dataset': 'python_docs_cloze',
    'task_type': 'multiple_choice',
    'seq_len': 80,
    'batch_size': 32,
    'num_epochs': 3.0,
    'schedule': 'warmup_linear',
    'learning_rate': 2e-4,
    'warmup_steps': 30,
    'min_lr_ratio': 0.0,
    'weight_decay': 0.01,
    'adam_b2': 0.999,
    'log_every_steps': 25,
    'eval_every_steps': 100,
    'checkpoint_every_steps': 100,
}
GPT1 = {
    'model.vocab_size': 40_478,
    'model.max_len': 512,
    'model.norm': 'post',
    'tokenizer_vocab_size': 40_478,
    'seq_len': 512,
    'batch_size': 64,
    'learning_rate': 2.5e-4,
    'warmup_steps': 2000,
    'min_lr_ratio': 0.0,
    'weight_decay': 0.01,
    'adam_b2': 0.999,
}

VARIANTS = {
    'cpu': CPU_PRETRAINING,
    'cpu_finetune': CPU_FINETUNING,
    'gpt1': GPT1,
    'gpt1_finetune': {
        **GPT1,
        'dataset': 'python_docs_cloze',
        'task_type': 'multiple_choice',
        'batch_size': 32,
        'num_epochs': 3.0,
        'schedule': 'warmup_linear',
        'learning_rate': 6.25e-5,
        'warmup_steps': 10,
        'eval_every_steps': 100,
        'checkpoint_every_steps': 100,
        'log_every_steps': 10,
    },
    'gpt2_small': {},
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
