r"""Long-time-lag synthetic tasks (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    python -m experiments.synthetic --config=configs/synthetic.py[:VARIANT] --workdir=DIR

The data is generated from (seed, step) (seqmodels.data.synthetic); the evaluation set is
num_eval_examples examples of a separate stream. A 1-layer RNN reads the sequence and
predicts from its last state (SequenceRNN; per-step outputs for copy).

Variants (the part after the colon; `adding_lstm` when none is given). Speeds are
training steps per second measured on this project's 2-core CPU machine while other
jobs ran (load 5-7), 150-step runs without evaluation, so an idle machine does better:
  adding_lstm  the adding problem at T = 100 (H&S Experiment 4; one marker in each half,
               as in Arjovsky et al.): LSTM, 128 units, Adam 1e-3, batch 32, gradients
               clipped at norm 1, 3,000 steps. Predicting the mean (1.0) scores an MSE
               of 1/6 (eval/mean_predictor_mse, 0.167 on the 1,000 held-out
               sequences); H&S count a sequence solved when |error| < 0.04
               (eval/solved_fraction). 20-27 steps/s. Measured: eval/mse 0.00014 and
               eval/solved_fraction 0.994 after 3,000 steps (0.020 after 500, 0.0014
               and 0.75 after 1,000), 3 min 20 s of wall time in all.
  adding_rnn   the same with a tanh (Elman) RNN of the same width: the vanishing-gradient
               case of Bengio et al. (1994). 75-110 steps/s. Measured: eval/mse 0.166
               after 3,000 steps (the mean predictor's 0.167; solved 0.08), 50 s.
  copy_lstm    the copying memory problem with Arjovsky et al.'s delay T = 100 and 10
               symbols (seq_len 120): LSTM 128, per-step outputs, the 10 recall steps
               scored; eval/memoryless_loss = log 8 is what no memory achieves.
               About 10 steps/s (3,000 steps in about 5 minutes); not trained to the end
               here, so no result is claimed.
  order_lstm   temporal order (H&S Experiment 6a) at T = 100: X/Y at t1 in [10, 20] and
               t2 in [50, 60] among distractors, 4 classes (chance 0.25). About 20-24
               steps/s; not trained to the end here, so no result is claimed.
  tiny         the adding problem at T = 10 with 8 units, 4 steps: for tests.

How the gradient of the last step's loss reaches earlier hidden states, at
initialisation and after training (seqmodels.gradient_flow; DIR/gradient_flow.png):
    python -m experiments.synthetic --mode=gradient_flow --workdir=DIR

Any key can be overridden: --config.seq_len=200 --config.model.cell=gru
"""

import ml_collections

from seqmodels import training
from seqmodels.training.config import apply_overrides, select_variant

DEFAULT_VARIANT = 'adding_lstm'


def sequence_rnn_model(
    cell: str = 'lstm', hidden_size: int = 128, embed_dim: int = 32, readout: str = 'last'
) -> ml_collections.ConfigDict:
    """A `model` sub-config whose keys are exactly SequenceRNN's fields; num_outputs and
    input_features (0 here) are filled from the task."""
    return ml_collections.ConfigDict(
        dict(
            name='sequence_rnn',
            num_outputs=0,
            input_features=0,
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            num_layers=1,
            cell=cell,
            dropout=0.0,
            dropout_kind='standard',
            forget_bias=1.0,
            readout=readout,
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """The `adding_lstm` variant; the others override it."""
    config = training.default_config()
    config.seed = 0

    # Data, generated: `task` one of adding, copy, temporal_order.
    config.dataset = 'synthetic'  # the only one: no files
    config.task = 'adding'
    config.seq_len = 100  # the steps the RNN reads (copy: delay + 2 * copy_length)
    config.copy_length = 10  # copy: the symbols to remember (K)
    config.num_eval_examples = 1000

    # Optimisation (engine keys, see seqmodels.training.config).
    config.batch_size = 32
    config.num_train_steps = 3000
    config.optimizer = 'adam'
    config.learning_rate = 1e-3
    config.schedule = 'constant'
    config.grad_clip_norm = 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500

    config.model = sequence_rnn_model()
    return config


VARIANTS = {
    'adding_lstm': {},
    'adding_rnn': {'model.cell': 'rnn'},
    'copy_lstm': {
        'task': 'copy',
        'seq_len': 120,
        'model.readout': 'every_step',
    },
    'order_lstm': {'task': 'temporal_order'},
    'tiny': {
        'seq_len': 10,
        'batch_size': 8,
        'num_train_steps': 4,
        'num_eval_examples': 20,
        'log_every_steps': 2,
        'eval_every_steps': 2,
        'checkpoint_every_steps': 2,
        'model': sequence_rnn_model(hidden_size=8, embed_dim=4),
    },
}


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = select_variant(VARIANTS, variant or DEFAULT_VARIANT, __file__)
    return apply_overrides(base_config(), overrides)
