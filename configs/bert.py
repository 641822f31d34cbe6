r"""BERT: pre-training (masked LM + next-sentence prediction) and fine-tuning.

    python -m experiments.bert --config=configs/bert.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]

A run pre-trains when `dataset` is pre-training text (`python_docs`, `text:PATH`,
`tfds:NAME`) and fine-tunes when it is labelled (`python_docs_cloze`, `labeled:DIR`);
fine-tuning starts from the pre-trained run named by `init_from` (with
--config.load_weights=False: its tokenizer and architecture, random weights; '' = random
weights and a tokenizer trained on the labelled training split).
Source: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding" §3-4 and Appendix A.

Variants (`mini` when none is given):
  mini      the default: a 4-layer, 256-wide BERT (the size of Turc et al. 2019's
            BERT-Mini: L=4, H=256, A=4; 5.4M parameters with the 8,000-token
            vocabulary) pre-trained on the embedded `python_docs` corpus: sequences of
            128 tokens, batch 32, 1,600 steps of AdamW at lr 5e-4 with warmup then
            linear decay, a SentencePiece BPE vocabulary of 8,000 trained on the corpus.
            Sized for under an hour on 2 CPU cores: 1.3 s of wall time a step on 2
            otherwise idle cores (0.76 steps/s measured on War and Peace: 35 minutes
            for the 1,600 steps), 7.6 s on 2 cores shared with 10 other busy
            processes. The progress line shows the ETA; --config.num_train_steps sets
            the length.
  warpeace  `mini` pre-trained on War and Peace (the CPU-scale corpus,
            ../shared/data/warpeace, relative to the repository root), lower-cased for
            SST-2. Same step time.
  cloze     fine-tunes `mini` on the embedded 4-way next-sentence choice derived from
            the same corpus (`python_docs_cloze`, multiple choice): set init_from.
  sst2      fine-tunes `warpeace` on SST-2 (../shared/data/sst2: stsa.binary.{train,
            dev,test}), lower-cased, sequences of 64 tokens: set init_from (and
            load_weights=False for the random-init baseline). 864 steps of batch 32 (4
            epochs): 7 minutes on 2 cores (measured at load average ~2).
  base      BERT-BASE: L=12, H=768, A=12; 110M parameters.
  large     BERT-LARGE: L=24, H=1024, A=16; 340M.
The published sizes: a WordPiece vocabulary of 30,522 tokens (here a SentencePiece
vocabulary of at most that size), 512 positions, 2 segments, dropout 0.1, GELU; batch
256 sequences of 512 tokens for 1,000,000 steps; Adam with lr 1e-4, β1 0.9, β2 0.999,
L2 weight decay 0.01 (decoupled here: adamw, weight_decay 0.01), learning-rate warmup
over the first 10,000 steps, then linear decay (to 0 at the last step:
`warmup_linear`); 4 days on 4 (base) or 16 (large) Cloud TPUs. From the released code:
Adam epsilon 1e-6 and gradients clipped at global norm 1 (its decay line starts at step
0, so its lr after warmup is 1% below the peak; here decay starts at the peak). The
paper pre-trains on BooksCorpus and English Wikipedia with 128-token sequences for 90%
of the steps; `dataset` here is Wikipedia from TFDS (needs internet access once) and
sequences are 512 tokens throughout.

Differences from the paper everywhere: 15% of the tokens are chosen independently
(Bernoulli), not exactly 15% of each sequence, and at most `max_predictions_per_seq`
of them are predicted (see seqmodels/data/bert_pretraining.py).

Inspect a variant's parameter table with
    python -m seqmodels.summary --config=configs/bert.py:base
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'mini'
SPECIAL_TOKENS = ('[CLS]', '[SEP]', '[MASK]')


def bert_model(
    num_layers: int,
    d_model: int,
    num_heads: int,
    d_ff: int,
    vocab_size: int = 0,
    max_len: int = 512,
) -> ml_collections.ConfigDict:
    """A `model` sub-config whose keys are exactly BERT's fields (vocab_size 0: the
    tokenizer's; num_classes 0: from the labelled data, or none for pre-training)."""
    return ml_collections.ConfigDict(
        dict(
            name='bert',
            vocab_size=vocab_size,
            max_len=max_len,
            type_vocab_size=2,
            d_model=d_model,
            num_heads=num_heads,
            d_ff=d_ff,
            num_layers=num_layers,
            dropout=0.1,
            attention_dropout=0.1,
            layer_norm_epsilon=1e-12,
            scan_layers=False,
            remat='none',
            num_classes=0,
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """`mini`: pre-training on the embedded corpus; the other variants override it."""
    config = training.default_config()
    config.seed = 0

    # Data. Pre-training: python_docs (embedded), text:PATH, tfds:NAME[/CONFIG].
    # Fine-tuning: python_docs_cloze (embedded), labeled:DIR (files named by the splits).
    config.dataset = 'python_docs'
    config.data_dir = '~/.cache/seqmodels/tfds'
    config.normalize = 'none'  # or 'lower', for both steps: fine-tuning checks it matches
    config.val_fraction = 0.05  # text:/tfds: documents held out for validation
    config.tokenizer_vocab_size = 8000  # SentencePiece; a soft limit on small corpora
    config.tokenizer_model_type = 'bpe'
    config.seq_len = 128
    config.num_eval_batches = 8  # pre-training: fixed validation batches; fine-tuning: 0 = all

    # Pre-training examples (§3.1, Appendix A.1).
    config.mask_prob = 0.15
    config.max_predictions_per_seq = 32  # mean 15% of ~125 tokens is 19; sd 4
    config.next_sentence_prob = 0.5
    config.short_seq_prob = 0.1

    # Fine-tuning (§4).
    config.init_from = ''  # a pre-trained workdir; '' = random init, own tokenizer
    config.load_weights = True  # False: init_from's tokenizer and architecture, random init
    config.task_type = 'classification'  # labeled:DIR: or entailment, similarity,
    #                                      multiple_choice (python_docs_cloze: its own)
    config.train_split = 'train'
    config.validation_split = 'dev'
    config.test_split = 'test'

    # Optimisation: the paper's (AdamW, warmup then linear decay), at CPU scale.
    config.batch_size = 32
    config.num_train_steps = 1600
    config.optimizer = 'adamw'
    config.adam_b1 = 0.9
    config.adam_b2 = 0.999
    config.adam_eps = 1e-6
    config.weight_decay = 0.01
    config.schedule = 'warmup_linear'
    config.learning_rate = 5e-4
    config.warmup_steps = 160
    config.min_lr_ratio = 0.0
    config.grad_clip_norm = 1.0
    config.log_every_steps = 50
    config.eval_every_steps = 400
    config.checkpoint_every_steps = 400

    config.model = bert_model(num_layers=4, d_model=256, num_heads=4, d_ff=1024, max_len=128)
    return config


WAR_AND_PEACE = 'text:../shared/data/warpeace/war_and_peace.txt'
SST2 = 'labeled:../shared/data/sst2'

# Fine-tuning (Appendix A.3): batch 32, 4 epochs of SST-2's 6,920 sentences (216 steps
# each), warmup over 10% of the steps, lr 1e-4 (the largest of Turc et al.'s grid for
# small BERTs; the paper's 2e-5 to 5e-5 are for BERT-BASE and LARGE).
_FINETUNE = {
    'num_train_steps': 864,
    'warmup_steps': 86,
    'learning_rate': 1e-4,
    'eval_every_steps': 216,
    'checkpoint_every_steps': 216,
    'log_every_steps': 24,
    'num_eval_batches': 0,
}

_PAPER = {
    'dataset': 'tfds:wikipedia/20230601.en',
    'tokenizer_vocab_size': 30_522,
    'seq_len': 512,
    'max_predictions_per_seq': 104,
    'batch_size': 256,
    'num_train_steps': 1_000_000,
    'learning_rate': 1e-4,
    'warmup_steps': 10_000,
    'log_every_steps': 100,
    'eval_every_steps': 10_000,
    'checkpoint_every_steps': 10_000,
}

VARIANTS = {
    'mini': {},
    'warpeace': {'dataset': WAR_AND_PEACE, 'normalize': 'lower'},
    'cloze': {'dataset': 'python_docs_cloze', 'task_type': 'multiple_choice', **_FINETUNE},
    'sst2': {
        'dataset': SST2,
        'normalize': 'lower',
        'task_type': 'classification',
        'train_split': 'stsa.binary.train',
        'validation_split': 'stsa.binary.dev',
        'test_split': 'stsa.binary.test',
        'seq_len': 64,
        **_FINETUNE,
    },
    'base': {**_PAPER, 'model': bert_model(12, 768, 12, 3072, vocab_size=30_522)},
    'large': {**_PAPER, 'model': bert_model(24, 1024, 16, 4096, vocab_size=30_522)},
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
