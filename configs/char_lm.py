r"""Character-level language modelling (Karpathy, Johnson & Fei-Fei 2015; nanoGPT).

    python -m experiments.char_lm --config=configs/char_lm.py[:VARIANT] --workdir=DIR

Variants (the part after the colon; `lstm` when none is given):
  lstm      the default: 2-layer LSTM, 256 wide, on the embedded corpus (the Python
            standard library's own source). Trains in a few minutes on 2 CPU cores.
  rnn, elman, gru, lnlstm
            the same size with an Elman (`rnn` and `elman` are one cell), GRU or
            layer-normalised LSTM cell: one variant per cell in
            seqmodels.nn.recurrent.CELLS.
  gpt       nanoGPT's CPU configuration: 4 layers, 4 heads, 128 wide, context 64.
  shakespeare_gpt
            nanoGPT's CPU recipe on Tiny Shakespeare (batch 12, 2,000 iterations,
            lr 1e-3 with cosine decay to 1e-4, no dropout). nanoGPT reports a
            validation loss of about 1.88 nats; ours is the claim
            nanogpt_shakespeare of RESULTS.md.
  bench_lstm, bench_gpt
            the benchmark shapes (benchmarks/README.md), on a `text:` file.

Any key can be overridden: --config.model.hidden_size=512 --config.dataset=text:FILE
"""

import ml_collections

from seqmodels import training
from seqmodels.nn.recurrent import CELLS
from seqmodels.training.config import apply_overrides, select_variant

_TINY_SHAKESPEARE = '../shared/data/tinyshakespeare/input.txt'
DEFAULT_VARIANT = 'lstm'


def rnn_model(
    cell: str = 'lstm',
    hidden_size: int = 256,
    num_layers: int = 2,
    embed_dim: int = 64,
    dropout: float = 0.0,
) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            name='rnn_lm',
            vocab_size=0,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            dropout=dropout,
            dropout_kind='standard',
            forget_bias=1.0,
            tie_embeddings=False,
        )
    )


def gpt_model(
    num_layers: int = 4,
    d_model: int = 128,
    num_heads: int = 4,
    max_len: int = 64,
    dropout: float = 0.0,
) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            name='gpt',
            vocab_size=0,
            max_len=max_len,
            d_model=d_model,
            num_heads=num_heads,
            d_ff=4 * d_model,
            num_layers=num_layers,
            dropout=dropout,
            attention_dropout=dropout,
            norm='pre',
            layer_norm_epsilon=1e-5,
            scan_layers=True,
            remat='none',
            num_classes=0,
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """The `lstm` variant; the others override it."""
    config = training.default_config()
    config.seed = 0

    # Data. `dataset`: python_stdlib (embedded), text:PATH, or tfds:NAME.
    config.dataset = 'python_stdlib'
    config.data_dir = '~/.cache/seqmodels/tfds'
    config.val_fraction = 0.1  # text:PATH only (the stdlib corpus is split by file)
    config.max_chars = 0  # 0 = the whole corpus
    config.seq_len = 128
    config.num_eval_batches = 16  # 0 = the whole validation split

    # Optimisation (engine keys, see seqmodels.training.config).
    config.batch_size = 32
    config.num_train_steps = 800
    config.optimizer = 'adam'
    config.learning_rate = 2e-3
    config.schedule = 'warmup_cosine'
    config.warmup_steps = 50
    config.min_lr_ratio = 0.1
    config.grad_clip_norm = 1.0
    config.log_every_steps = 25
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200

    # Scheduled sampling (Bengio et al. 2015), RNN models only. 'none' = teacher forcing;
    # 'linear' uses ss_c (slope), ss_k (start) and ss_min; 'exponential' and
    # 'inverse_sigmoid' use ss_k.
    config.scheduled_sampling = 'none'
    config.ss_k = 1.0
    config.ss_c = 0.0
    config.ss_min = 0.0

    # Text generated at every evaluation (and the defaults of --mode=sample).
    config.sample_chars = 300
    config.sample_prompt = '\n'
    config.sample_temperature = 0.8

    config.model = rnn_model()
    return config


# Benchmarks time training steps only: no evaluation, checkpoints or samples.
_BENCH = {
    'eval_every_steps': 0,
    'checkpoint_every_steps': 0,
    'num_eval_batches': 2,
    'sample_chars': 0,
    'dataset': f'text:{_TINY_SHAKESPEARE}',
    'grad_clip_norm': 0.0,
    'schedule': 'constant',
    'warmup_steps': 0,
    'log_every_steps': 10,
}

VARIANTS = {
    **{cell: {'model.cell': cell} for cell in CELLS},
    'gpt': {'model': gpt_model(), 'seq_len': 64, 'learning_rate': 1e-3},
    'shakespeare_gpt': {
        'model': gpt_model(),
        'dataset': f'text:{_TINY_SHAKESPEARE}',
        'seq_len': 64,
        'batch_size': 12,
        'num_train_steps': 2000,
        'optimizer': 'adamw',
        'weight_decay': 0.1,
        'adam_b2': 0.99,
        'learning_rate': 1e-3,
        'warmup_steps': 100,
        'min_lr_ratio': 0.1,
        'eval_every_steps': 500,
        'num_eval_batches': 200,
    },
    'bench_lstm': {
        **_BENCH,
        'model': rnn_model(hidden_size=512, embed_dim=128),
        'batch_size': 64,
        'num_train_steps': 50,
    },
    'bench_gpt': {
        **_BENCH,
        'model': gpt_model(num_layers=6, d_model=384, num_heads=6, max_len=256),
        # Unrolled layers: +11% tokens/s at this shape (benchmarks/README.md, log entry
        # 8); scanning pays for moving each layer's residuals in and out of the stack.
        'model.scan_layers': False,
        'seq_len': 256,
        'batch_size': 16,
        'num_train_steps': 30,
        'optimizer': 'adamw',
        'weight_decay': 0.1,
    },
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)


# --------------------------------------------------------------------------- #
# Sweeps (seqmodels.sweep; the README's "Sweeps" section):
#   python -m experiments.sweep --config=configs/char_lm.py[:VARIANT] --sweep=NAME \
#       --workdir=DIR [--parallel=N] [--config.KEY=VALUE ...]

# One parameter budget for the cells: ~0.89M parameters at the lstm variant's shape
# (2 layers, embeddings 64) for vocabularies of 65-200 characters, within 2% of the
# LSTM's (an Elman layer has 1 gate's weights, a GRU 3, an LSTM 4).
CELL_WIDTHS = {'rnn': 512, 'lstm': 256, 'lnlstm': 256, 'gru': 296}


def get_sweep(name: str) -> list[dict]:
    """The trials (dicts of config overrides) of sweep `name`:

    cells    rnn / lstm / lnlstm / gru at one parameter budget (CELL_WIDTHS) and the
             variant's steps: --config=configs/char_lm.py:lstm (4 runs of ~4 minutes)
    dropout  none, then standard and variational (Gal & Ghahramani 2016) dropout at
             rates 0.1 / 0.25 / 0.4 (7 runs; an RNN variant)
    lr       peak learning rates 1e-4 ... 1e-1, half a decade apart (7 runs), for
             --config=configs/char_lm.py:shakespeare_gpt; the largest may diverge
    lr_seeds the recipe's 1e-3 and 2x, 4x, 8x it, each with seeds 0, 1, 2 (12 runs of
             ~3 minutes; shakespeare_gpt): is the best rate better by more than the
             spread over seeds?
    """
    from seqmodels import sweep as sw

    sweeps = {
        'cells': sw.zipped(
            sw.axis('model.cell', list(CELL_WIDTHS)),
            sw.axis('model.hidden_size', list(CELL_WIDTHS.values())),
        ),
        'dropout': [{'model.dropout': 0.0}]
        + sw.product(
            sw.axis('model.dropout_kind', ['standard', 'variational']),
            sw.axis('model.dropout', [0.1, 0.25, 0.4]),
        ),
        'lr': sw.axis('learning_rate', sw.log_grid(1e-4, 1e-1, 7)),
        'lr_seeds': sw.product(
            sw.axis('learning_rate', [1e-3, 2e-3, 4e-3, 8e-3]), sw.axis('seed', [0, 1, 2])
        ),
    }
    if name not in sweeps:
        raise ValueError(f'unknown char_lm sweep {name!r}; choose one of {", ".join(sweeps)}')
    return sweeps[name]
