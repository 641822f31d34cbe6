r"""The claims that `python -m experiments.reproduce` checks: one entry per claim.

    python -m experiments.reproduce --list
    python -m experiments.reproduce --claim=NAME --scale=ci|full

Adding a claim is one `Claim(...)` in CLAIMS below: the citation and what the paper
reports; the runs (a config of configs/, `trials` for several runs, `overrides` for
every scale, `ci` / `full` on top); `extract`, the numbers read from the finished
runs (`finals(name=(run, metric[, where]))` for final metrics, or a function of the
`Results`); and numeric checks on those numbers: `Band` (an absolute number with a
tolerance), `Above` / `Below` (a threshold), `Lower(a, b, margin)` (a direction with a
margin), `Within(a, b, tolerance)` (about the same). `ci_checks` replace the checks at
the ci scale, whose runs are too short for the paper's numbers.

Full-scale budgets are for 2 CPU cores; each claim's `note` says what it costs and how
our setting differs from the paper's.
"""

import dataclasses
import json
import math
import os

from seqmodels.reproduce import (
    Above,
    Band,
    Below,
    Claim,
    Lower,
    Run,
    RunDir,
    Within,
    finals,
    steps_to_reach,
)

SHAKESPEARE = 'text:../shared/data/tinyshakespeare/input.txt'
WAR_AND_PEACE = 'text:../shared/data/warpeace/war_and_peace.txt'
# ci: 20 steps of 32 pairs, one evaluation (BLEU on 100 validation lines), and decoding
# stops 2 pieces past the source length (an untrained model never emits the end token:
# 50 extra pieces make the test set crawl).
MULTI30K_CI = {
    'num_train_steps': 20,
    'batch_size': 32,
    'eval_every_steps': 20,
    'checkpoint_every_steps': 20,
    'num_eval_examples': 100,
    'max_decode_extra': 2,
}
# The Transformer at ci: one encoder and one decoder layer (with the 32 pairs, a run
# took 31 s instead of 82 here, its evaluation 29 s instead of 51), and the warmup over
# the 20 steps (the full warmup's 1,000 steps keep the learning rate near 0 and the loss
# near a uniform guess).
MULTI30K_TRANSFORMER_CI = {
    **MULTI30K_CI,
    'model.num_encoder_layers': 1,
    'model.num_decoder_layers': 1,
    'warmup_steps': 20,
}
# ci for the pre-training claims: 20 steps of a 1-layer model (the fine-tunings keep the
# pre-trained run's architecture: fine-tuning refuses another).
ONE_LAYER_CI = {
    'num_train_steps': 20,
    'eval_every_steps': 20,
    'warmup_steps': 2,
    'model.num_layers': 1,
}
SST2 = {
    'dataset': 'labeled:../shared/data/sst2',
    'task_type': 'classification',
    'train_split': 'stsa.binary.train',
    'validation_split': 'stsa.binary.dev',
    'test_split': 'stsa.binary.test',
    'normalize': 'lower',
}


def char_ci(steps: int, *overrides: dict, **more) -> dict:
    """A char-LM run at ci scale: `steps` steps, one evaluation at the end on 4 batches,
    no warmup, no text samples; then `overrides` and `more`."""
    base = {
        'sample_chars': 0,
        'num_eval_batches': 4,
        'warmup_steps': 0,
        'log_every_steps': 10,
        'num_train_steps': steps,
        'eval_every_steps': steps,
    }
    for extra in overrides:
        base.update(extra)
    return {**base, **more}


SMALL_RNN = {'model.hidden_size': 64}


def _loss_or_inf(res, run, where):
    """A diverged run's loss counts as infinitely bad."""
    value = res.final(run, 'eval/loss', where)
    return math.inf if math.isnan(value) else value


def _post_norm(res):
    return {
        f'{prefix}{norm}_norm_loss': _loss_or_inf(res, run, {'model.norm': norm})
        for run, prefix in (('norm', ''), ('unclipped', 'unclipped_'))
        for norm in ('pre', 'post')
    }


def _adding(res):
    lstm, rnn = {'model.cell': 'lstm'}, {'model.cell': 'rnn'}
    return {
        'lstm_abs_error': res.final('adding', 'eval/abs_error', lstm),
        'lstm_solved_fraction': res.final('adding', 'eval/solved_fraction', lstm),
        'rnn_mse': res.final('adding', 'eval/mse', rnn),
        'lstm_mse': res.final('adding', 'eval/mse', lstm),
        'mean_predictor_mse': res.final('adding', 'eval/mean_predictor_mse', rnn),
    }


def _gradient_flow(res):
    """The fitted per-step decay of ||dL/dh_t|| after training (the trained models: at
    initialisation, with forget bias 1, the LSTM's decays almost as fast)."""
    out = {}
    for cell in ('lstm', 'rnn'):
        trial = res.trial('adding', {'model.cell': cell})
        with open(os.path.join(trial.directory, 'gradient_flow.json')) as f:
            flow = json.load(f)
        out[f'{cell}_decay_rate'] = flow['trained']['decay_rate']
        out[f'{cell}_init_decay_rate'] = flow['initialisation']['decay_rate']
        out[f'{cell}_first_to_last_ratio'] = flow['trained']['first_to_last_ratio']
    return out


def _clipping(res):
    return {
        'clipped_loss': _loss_or_inf(res, 'clip', {'grad_clip_norm': 0.25}),
        'unclipped_loss': _loss_or_inf(res, 'clip', {'grad_clip_norm': 0.0}),
    }


def _layer_norm_lstm(res):
    """Steps each cell needs to reach the plain LSTM's final validation loss."""
    target = res.final('cells', 'eval/loss', {'model.cell': 'lstm'})
    out = {
        'lstm_loss': target,
        'lnlstm_loss': res.final('cells', 'eval/loss', {'model.cell': 'lnlstm'}),
    }
    for cell in ('lstm', 'lnlstm'):
        steps, values = res.curve('cells', 'eval/loss', {'model.cell': cell})
        out[f'{cell}_steps'] = steps_to_reach(steps, values, target)
    return out


def _dropout(res):
    kinds = {
        'none_loss': {'model.dropout': 0.0},
        'standard_loss': {'model.dropout': 0.25, 'model.dropout_kind': 'standard'},
        'variational_loss': {'model.dropout': 0.25, 'model.dropout_kind': 'variational'},
    }
    return {name: res.final('dropout', 'eval/loss', where) for name, where in kinds.items()}


def _cells(res):
    found = res.evaluation('lstm')  # what --mode=cells printed
    return {
        'best_r_quotes': found['cells/best_abs_r/quotes'],
        'best_r_line_position': found['cells/best_abs_r/line_position'],
        'best_r_indent': found['cells/best_abs_r/indent'],
        'forget_right_saturated': found['cells/f_right_saturated'],
        'forget_left_saturated': found['cells/f_left_saturated'],
    }


# Table 3's rows besides the base model (the `multi30k_small` config: 8 heads, dropout
# 0.1, sinusoidal positions), each one change from it.
TABLE3_ROWS = {
    'one_head': {'model.num_heads': 1},
    'no_dropout': {'model.dropout': 0.0},
    'learned_positions': {'model.position_embedding': 'learned'},
}
# The small Transformer on Multi30k de-en with its test BLEU: multi30k_bleu's number and
# Table 3's base row, trained once for both.
MULTI30K_TRANSFORMER = Run(
    'transformer',
    'configs/translation.py:multi30k_small',
    ci=MULTI30K_TRANSFORMER_CI,
    evaluate=('--split=test_2016_flickr', '--beam_size=4'),
    shared='multi30k_transformer',
)


# The adding problem at T = 100 (an LSTM and a tanh RNN of 128 units), with the
# gradient-flow measurement of each trained model: adding_problem reads the errors,
# gradient_flow the gradients; trained once for both.
ADDING_T100 = Run(
    'adding',
    'configs/synthetic.py:adding_lstm',
    trials=({'model.cell': 'lstm'}, {'model.cell': 'rnn'}),
    ci={
        'seq_len': 10,
        'num_train_steps': 300,
        'eval_every_steps': 300,
        'checkpoint_every_steps': 300,
        'num_eval_examples': 200,
        'learning_rate': 1e-2,
    },
    evaluate=('--num_examples=100',),
    evaluate_mode='gradient_flow',
    shared='adding_t100',
)


def _multi30k(res):
    """Test BLEU (beam 4, and greedy) and decoding speed of each model."""
    out = {'transformer_val_loss': res.final('transformer', 'eval/loss')}
    for model in ('transformer', 'rnn'):
        found = res.evaluation(model)
        out[f'{model}_bleu'] = found['bleu']
        out[f'{model}_greedy_bleu'] = found['greedy/bleu']
        for search in ('beam4', 'greedy'):
            out[f'{model}_{search}_sentences_per_sec'] = found[f'{search}/sentences_per_sec']
    return out


# Teacher forcing against inverse-sigmoid scheduled sampling (k = 170), one run each.
SS_TRANSLATION = {
    'teacher_forcing': {'scheduled_sampling': 'none'},
    'scheduled_sampling': {'scheduled_sampling': 'inverse_sigmoid', 'ss_k': 170.0},
}


def _ss_translation(res):
    """Test BLEU of each final checkpoint, and the validation BLEU logged at each
    evaluation: where the two runs part as the sampling rate rises."""
    out = {
        'scheduled_sampling_val_loss': res.final(
            'ss', 'eval/loss', SS_TRANSLATION['scheduled_sampling']
        )
    }
    for name, where in SS_TRANSLATION.items():
        out[f'{name}_bleu'] = res.evaluation('ss', where)['bleu']
        for step, bleu in zip(*res.curve('ss', 'eval/bleu', where)):
            out[f'{name}_val_bleu_{step}'] = bleu
    return out


def _vit_trial(pool, position_embedding, use_position_embeddings=True):
    return {
        'model.pool': pool,
        'model.position_embedding': position_embedding,
        'model.use_position_embeddings': use_position_embeddings,
    }


VIT_TRIALS = {
    'cls': _vit_trial('cls', 'learned'),
    'gap': _vit_trial('gap', 'learned'),  # also the 1-D learned embedding of the pair
    'sincos_2d': _vit_trial('gap', 'sincos2d'),
    'none': _vit_trial('gap', 'learned', False),
}


def _vit(res):
    """Test top-1 (%) of each ViT variant."""
    out = {
        f'{name}_accuracy': 100 * res.final('vit', 'eval/accuracy', where)
        for name, where in VIT_TRIALS.items()
    }
    out['learned_1d_accuracy'] = out['gap_accuracy']
    return out


# The SST-2 fine-tunings of a pre-training claim, by name (the trials of its run
# 'finetune').
GPT_FINETUNES = {
    'pretrained': {'lm_coef': 0.5, 'load_weights': True},
    'random_init': {'lm_coef': 0.5, 'load_weights': False},
    'no_aux_lm': {'lm_coef': 0.0, 'load_weights': True},
}
BERT_FINETUNES = {
    'pretrained': {'load_weights': True},
    'random_init': {'load_weights': False},
}


def _sst2(finetunes: dict, **pretrain_metrics: str):
    """Test accuracy (%) of each fine-tuning (the driver's --mode=evaluate) and the
    pre-training's final validation metrics (name=metric; an accuracy in %)."""

    def extract(res):
        out = {
            name: res.final('pretrain', metric) * (100 if name.endswith('_accuracy') else 1)
            for name, metric in pretrain_metrics.items()
        }
        for name, where in finetunes.items():
            out[f'{name}_accuracy'] = 100 * res.evaluation('finetune', where)['accuracy']
        return out

    return extract


CLAIMS = [
    Claim(
        name='adding_problem',
        title='The LSTM solves the adding problem at T = 100; a tanh RNN does not',
        citation='Hochreiter & Schmidhuber 1997, "Long Short-Term Memory" §5.4, Experiment 4',
        paper='LSTM solves the adding problem with minimal time lags of 100 steps (their '
        'criterion: absolute error below 0.04 on held-out sequences); earlier recurrent '
        'nets fail at such lags',
        runs=(ADDING_T100,),
        extract=_adding,
        checks=(
            Below('lstm_abs_error', 0.04),
            Above('lstm_solved_fraction', 0.9),
            Band('rnn_mse', 0.9 * 1 / 6, 1.1 * 1 / 6),
        ),
        ci_checks=(Lower('lstm_mse', 'mean_predictor_mse', 0.1),),
        note='one marker in each half (Arjovsky et al. 2016), targets in [0, 2], 1,000 '
        'held-out sequences; 128-unit LSTM and tanh RNN, Adam 1e-3, batch 32, 3,000 '
        'steps. "Predict the mean" scores an MSE of 1/6; the RNN must stay within 10% of '
        'it. Full: 2 runs of ~1-4 minutes (shared with gradient_flow).',
    ),
    Claim(
        name='gradient_flow',
        title='Gradients vanish exponentially through time in a tanh RNN, far more slowly '
        'in an LSTM',
        citation='Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013 §2-3',
        paper='the norm of the gradient of a late loss with respect to h_t shrinks '
        "exponentially with the distance from t in a tanh RNN; the LSTM's memory cell "
        'carries it far back (Hochreiter & Schmidhuber 1997 §4)',
        runs=(ADDING_T100,),
        extract=_gradient_flow,
        checks=(Below('rnn_decay_rate', -0.2), Above('lstm_decay_rate', -0.05)),
        ci_checks=(Below('rnn_init_decay_rate', -0.05),),
        note="||dL/dh_t|| of the last step's loss for the adding problem's models (T = 100, "
        '128 units, after 3,000 steps), averaged over 100 held-out sequences; the decay '
        'rate is the least-squares slope of ln ||dL/dh_t|| against T - t (exp(rate) is the '
        'factor per step). At initialisation both decay at similar rates (forget bias '
        '1). The plots: gradient_flow.png in each run folder. Full: the 2 runs of '
        'adding_problem (shared), each measured in seconds.',
    ),
    Claim(
        name='gradient_clipping',
        title='Gradient-norm clipping trains where unclipped SGD does not',
        citation='Pascanu, Mikolov & Bengio 2013, "On the difficulty of training RNNs" §3.2',
        paper='rescaling the gradient when its norm exceeds a threshold stops exploding '
        'gradients from derailing SGD on RNNs (their Figure 6 and §4)',
        runs=(
            Run(
                'clip',
                'configs/char_lm.py:rnn',
                trials=({'grad_clip_norm': 0.0}, {'grad_clip_norm': 0.25}),
                overrides={
                    'dataset': SHAKESPEARE,
                    'optimizer': 'sgd',
                    'learning_rate': 3.0,
                    'schedule': 'constant',
                    'warmup_steps': 0,
                },
                ci=char_ci(60, SMALL_RNN),
                full={'sample_chars': 0, 'num_train_steps': 800},
            ),
        ),
        extract=_clipping,
        checks=(Lower('clipped_loss', 'unclipped_loss', 0.1),),
        note='a 2-layer Elman RNN (512 wide; 64 at ci) on Tiny Shakespeare with plain SGD at '
        'a learning rate of 3 and no schedule, with and without clipping at global norm '
        '0.25; a diverged run counts as an infinite loss. Calibrated on 200 steps: final '
        'validation loss 31.9 unclipped, 2.29 clipped. Full: 2 runs of ~4 minutes.',
    ),
    Claim(
        name='layer_norm_lstm',
        title='The layer-normalised LSTM learns faster than the LSTM',
        citation='Ba, Kiros & Hinton 2016, "Layer Normalization" §6.4-6.6',
        paper='layer normalisation speeds up the convergence of recurrent networks '
        "(e.g. their Figure 3/5: the LN model reaches the baseline's numbers in "
        'fewer updates)',
        runs=(
            Run(
                'cells',
                'configs/char_lm.py:lstm',
                trials=({'model.cell': 'lstm'}, {'model.cell': 'lnlstm'}),
                overrides={'dataset': SHAKESPEARE, 'sample_chars': 0},
                ci=char_ci(60, SMALL_RNN, eval_every_steps=20),
                full={'eval_every_steps': 50, 'num_eval_batches': 32},
            ),
        ),
        extract=_layer_norm_lstm,
        checks=(Below('lnlstm_steps', 0.75 * 800), Lower('lnlstm_loss', 'lstm_loss', 0.02)),
        ci_checks=(Lower('lnlstm_loss', 'lstm_loss', 0.0),),
        note='2-layer char-level LMs (256 wide) on Tiny Shakespeare, 800 steps of Adam: the '
        "step at which the LN-LSTM first reaches the LSTM's final validation loss must "
        'be within 75% of the steps. Full: 2 runs of ~5 minutes.',
    ),
    Claim(
        name='variational_dropout',
        title='Variational dropout beats standard dropout, which beats none, when overfitting',
        citation='Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout '
        'in Recurrent Neural Networks" §5.2, Table 1',
        paper='on the Penn Treebank LSTM LM (medium, 650 units) test perplexity 81.9 with '
        'standard dropout (Zaremba et al.) vs 79.7 variational (untied); without dropout '
        'the large model overfits badly',
        runs=(
            Run(
                'dropout',
                'configs/char_lm.py:lstm',
                trials=(
                    {'model.dropout': 0.0, 'model.dropout_kind': 'standard'},
                    {'model.dropout': 0.25, 'model.dropout_kind': 'standard'},
                    {'model.dropout': 0.25, 'model.dropout_kind': 'variational'},
                ),
                # Too big a model for too little text: 100k characters for ~2M parameters.
                overrides={
                    'dataset': SHAKESPEARE,
                    'max_chars': 100_000,
                    'model.hidden_size': 512,
                    'sample_chars': 0,
                },
                ci=char_ci(40, SMALL_RNN),
                full={'num_train_steps': 1500, 'eval_every_steps': 250},
            ),
        ),
        extract=_dropout,
        checks=(
            Lower('variational_loss', 'standard_loss', 0.0),
            Lower('standard_loss', 'none_loss', 0.05),
        ),
        ci_checks=(Below('variational_loss', 4.0),),
        note='a 2-layer, 512-wide char-level LSTM on the first 100,000 characters of Tiny '
        'Shakespeare (90% train), 1,500 steps: final validation loss with dropout 0 / '
        'standard 0.25 / variational 0.25. Full: 3 runs of ~21 minutes.',
    ),
    Claim(
        name='scheduled_sampling',
        title='Scheduled sampling against teacher forcing',
        citation='Bengio, Vinyals, Jaitly & Shazeer 2015, "Scheduled Sampling for Sequence '
        'Prediction with Recurrent Neural Networks" §4',
        paper='training with an inverse-sigmoid decay from teacher forcing to sampling '
        'improves the sequence models of their three tasks (e.g. image captioning '
        'BLEU-4 28.8 -> 30.6)',
        runs=(
            Run(
                'ss',
                'configs/char_lm.py:lstm',
                trials=(
                    {'scheduled_sampling': 'none'},
                    {'scheduled_sampling': 'inverse_sigmoid', 'ss_k': 100.0},
                ),
                overrides={'dataset': SHAKESPEARE, 'sample_chars': 0},
                ci=char_ci(40, SMALL_RNN),
                full={},
            ),
        ),
        extract=finals(
            teacher_forcing_loss=('ss', 'eval/loss', {'scheduled_sampling': 'none'}),
            scheduled_sampling_loss=('ss', 'eval/loss', {'scheduled_sampling': 'inverse_sigmoid'}),
        ),
        checks=(Lower('scheduled_sampling_loss', 'teacher_forcing_loss', 0.0),),
        ci_checks=(Below('scheduled_sampling_loss', 4.0),),
        note='a char-level LSTM LM on Tiny Shakespeare (800 steps) with inverse-sigmoid '
        'decay k = 100 (the model feeds itself half the time by step ~460); measured by '
        'the teacher-forced validation loss, the metric the paper does not use: this '
        'reports whether the gain reproduces here, and it may not. Full: 2 runs of ~5 '
        'minutes.',
    ),
    Claim(
        name='scheduled_sampling_translation',
        title='Scheduled sampling against teacher forcing, measured on generated translations',
        citation='Bengio, Vinyals, Jaitly & Shazeer 2015, "Scheduled Sampling for Sequence '
        'Prediction with Recurrent Neural Networks" §4',
        paper='measured on what the model generates, scheduled sampling (inverse-sigmoid '
        'decay) beats teacher forcing on each of their tasks: image captioning BLEU-4 '
        '28.8 -> 30.6, constituency parsing F1 86.54 -> 88.08, speech recognition',
        runs=(
            Run(
                'ss',
                'configs/translation.py:multi30k_rnn_attention',
                trials=tuple(SS_TRANSLATION.values()),
                ci=MULTI30K_CI,
                full={
                    'num_train_steps': 1800,
                    'eval_every_steps': 600,
                    'checkpoint_every_steps': 600,
                },
                evaluate=('--split=test_2016_flickr', '--beam_size=4'),
            ),
        ),
        extract=_ss_translation,
        checks=(Lower('teacher_forcing_bleu', 'scheduled_sampling_bleu', 0.5),),
        # ci: 20 steps must take the loss below a uniform guess over the ~8k pieces.
        ci_checks=(Below('scheduled_sampling_val_loss', math.log(8000)),),
        note='the RNN encoder-decoder with additive attention on Multi30k de-en, 1,800 '
        'steps of batch 80 (~5 epochs, before it overfits), with inverse-sigmoid decay k = '
        '170: the decoder is fed the truth with probability 0.83 at step 600, 0.50 at ~870, '
        '0.13 at 1,200 and 0.004 at 1,800, else its own sample; test_2016_flickr sacreBLEU '
        'with beam 4 of the final checkpoints, which decode from their own output as in the '
        'paper, and the validation BLEU (greedy, first 500 sentences) logged every 600 '
        'steps. A gain must exceed 0.5 BLEU. Full: 2 runs of ~20 minutes.',
    ),
    Claim(
        name='post_norm_depth',
        title='At 12 layers without warmup, post-norm fails to train where pre-norm trains',
        citation='Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" '
        '§3-4; GPT-2 (Radford et al. 2019) §2.3',
        paper='the Post-LN Transformer needs learning-rate warmup (without it, it reaches a '
        'far worse loss); Pre-LN trains without warmup',
        runs=tuple(
            Run(
                name,
                'configs/char_lm.py:shakespeare_gpt',
                trials=({'model.norm': 'pre'}, {'model.norm': 'post'}),
                overrides={
                    'model.num_layers': 12,
                    'warmup_steps': 0,
                    'learning_rate': 1e-3,
                    'sample_chars': 0,
                    **clip,
                },
                ci=char_ci(60, {'model.d_model': 32, 'model.num_heads': 2}),
                full={'num_train_steps': 1000, 'eval_every_steps': 250, 'num_eval_batches': 100},
            )
            # The recipe clips gradient norms at 1; 'unclipped' removes that, the other
            # guard against the early large updates that warmup exists to prevent.
            for name, clip in (('norm', {}), ('unclipped', {'grad_clip_norm': 0.0}))
        ),
        extract=_post_norm,
        checks=(
            Lower('pre_norm_loss', 'post_norm_loss', 0.1),
            Lower('unclipped_pre_norm_loss', 'unclipped_post_norm_loss', 0.1),
        ),
        # ci: 60 steps must take both below a uniform guess over Shakespeare's 65 chars.
        ci_checks=(Below('pre_norm_loss', math.log(65)), Below('post_norm_loss', math.log(65))),
        note="nanoGPT's Tiny Shakespeare recipe with 12 layers (128 wide), Adam at 1e-3 "
        "from step 0 (cosine decay), 1,000 steps, with the recipe's gradient clipping "
        '(norm 1) and without it; a diverged run counts as an infinite loss. Full: 4 runs '
        'of ~4 minutes.',
    ),
    Claim(
        name='nanogpt_shakespeare',
        title="nanoGPT's CPU recipe on Tiny Shakespeare",
        citation='Karpathy, nanoGPT README ("I only have a macbook")',
        paper='validation loss ~1.88 after 2,000 iterations of a 4-layer, 128-wide GPT '
        '(context 64, batch 12)',
        runs=(
            Run(
                'gpt',
                'configs/char_lm.py:shakespeare_gpt',
                ci=char_ci(100),
            ),
        ),
        extract=finals(val_loss=('gpt', 'eval/loss')),
        checks=(Band('val_loss', 1.85, 1.91),),
        ci_checks=(Below('val_loss', 3.0),),
        note='the same recipe (configs/char_lm.py:shakespeare_gpt). Full: 1 run of ~3 minutes.',
    ),
    Claim(
        name='interpretable_cells',
        title='Interpretable LSTM cells exist; forget gates saturate',
        citation='Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding '
        'Recurrent Networks" §4.2-4.3, Figures 2-3',
        paper='in char-level LSTMs some cells track quotes, line length or indentation '
        '(Figure 2); many forget gates are right-saturated (> 0.9) a large fraction of the '
        'time (Figure 3)',
        runs=(
            Run(
                'lstm',
                'configs/char_lm.py:lstm',
                overrides={'sample_chars': 0},
                ci=char_ci(300, SMALL_RNN, batch_size=16),
                evaluate=(),
                evaluate_mode='cells',
            ),
        ),
        extract=_cells,
        checks=(
            Above('best_r_quotes', 0.5),
            Above('best_r_line_position', 0.5),
            Above('forget_right_saturated', 0.1),
        ),
        ci_checks=(Above('best_r_line_position', 0.3),),
        note='the default char-LM (2-layer LSTM, 256 wide) on the Python standard library '
        'source, 800 steps; correlations of tanh(c) of the best unit with each indicator '
        'over 20,000 validation characters. Full: 1 run of ~5 minutes.',
    ),
    Claim(
        name='multi30k_bleu',
        title='Multi30k de-en: the small Transformer reaches 36 BLEU, the RNN with attention less',
        citation='bentrevett/pytorch-seq2seq, tutorial 6 ("Attention is All You Need")',
        paper='test BLEU 36.5 for a 3-layer, 256-wide Transformer on Multi30k de-en',
        runs=(
            MULTI30K_TRANSFORMER,
            Run(
                'rnn',
                'configs/translation.py:multi30k_rnn_attention',
                ci=MULTI30K_CI,
                evaluate=('--split=test_2016_flickr', '--beam_size=4'),
            ),
        ),
        extract=_multi30k,
        checks=(Above('transformer_bleu', 36.0), Lower('rnn_bleu', 'transformer_bleu', 0.0)),
        # ci: 20 steps must take the loss below a uniform guess over the ~8k pieces.
        ci_checks=(Below('transformer_val_loss', math.log(8000)),),
        note='final checkpoints, sacreBLEU on test_2016_flickr with beam 4. Full: 2 runs of '
        '~50 minutes, the Transformer shared with transformer_table3.',
    ),
    Claim(
        name='transformer_table3',
        title='Transformer Table 3 trends at Multi30k scale: heads, dropout, learned positions',
        citation='Vaswani et al. 2017, "Attention Is All You Need" Table 3, rows (A), (D), (E)',
        paper='newstest2013 BLEU of the base model 25.8; one head 24.9 (A); no dropout 24.6 '
        '(D); learned instead of sinusoidal positions 25.7 (E)',
        runs=(
            dataclasses.replace(MULTI30K_TRANSFORMER, name='base'),
            dataclasses.replace(
                MULTI30K_TRANSFORMER, name='rows', trials=tuple(TABLE3_ROWS.values()), shared=None
            ),
        ),
        extract=lambda res: {
            'base_bleu': res.evaluation('base')['bleu'],
            **{
                f'{row}_bleu': res.evaluation('rows', where)['bleu']
                for row, where in TABLE3_ROWS.items()
            },
            'base_val_loss': res.final('base', 'eval/loss'),
        },
        checks=(
            Lower('one_head_bleu', 'base_bleu', 0.3),
            Lower('no_dropout_bleu', 'base_bleu', 0.3),
            Within('learned_positions_bleu', 'base_bleu', 1.0),
        ),
        ci_checks=(Below('base_val_loss', math.log(8000)),),
        note='the small Transformer (3+3 layers, d_model 256, 8 heads) on Multi30k de-en, '
        'test_2016_flickr BLEU with beam 4 of the final checkpoints; directions with a '
        'margin of 0.3 BLEU for (A) and (D), within 1 BLEU for (E). Full: 4 runs of ~50 '
        'minutes, the base one shared with multi30k_bleu.',
    ),
    Claim(
        name='vit_pooling_positions',
        title='ViT: [class] token vs average pooling; 1-D vs 2-D vs no position embeddings',
        citation='Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" Appendix D.3 '
        '(Figure 9) and D.4 (Table 8)',
        paper='the [class] token and global average pooling work equally well (with their '
        'own learning rates); 1-D and 2-D position embeddings perform about the same '
        '(ImageNet 5-shot 64.2 vs 64.0) while no position embedding is worse (61.4)',
        runs=(
            Run(
                'vit',
                'configs/vit.py:small',
                trials=tuple(VIT_TRIALS.values()),
                ci={
                    'num_train_steps': 30,
                    'eval_every_steps': 30,
                    'warmup_steps': 5,
                    'num_eval_batches': 4,
                },
                full={'num_train_steps': 3600, 'eval_every_steps': 600},
            ),
        ),
        extract=_vit,
        checks=(
            Within('cls_accuracy', 'gap_accuracy', 1.0),
            Within('learned_1d_accuracy', 'sincos_2d_accuracy', 1.0),
            Lower('none_accuracy', 'learned_1d_accuracy', 0.5),
        ),
        ci_checks=(Above('gap_accuracy', 30.0),),
        note="a 4-layer, 64-wide ViT with 4x4 patches on Fashion-MNIST (Debian's "
        'dataset-fashion-mnist), 3,600 steps of batch 128 (7.7 epochs; configs/vit.py:small '
        'with half its steps); test top-1 (%) of the final checkpoint. Our 2-D embedding is '
        "the fixed sin-cos one (Beyer et al. 2022), the paper's is learned. Full: 4 runs "
        'of ~11 minutes.',
    ),
    Claim(
        name='gpt_sst2_pretraining',
        title='Generative pre-training helps SST-2; the auxiliary LM loss',
        citation='Radford et al. 2018, "Improving Language Understanding by Generative '
        'Pre-Training" Table 5',
        paper='SST-2 accuracy 91.3 with pre-training vs 84.0 without (117M parameters, '
        'BooksCorpus); without the auxiliary LM objective 90.9 (Table 5, "w/o aux LM")',
        runs=(
            Run(
                'pretrain',
                'configs/gpt.py:cpu',
                overrides={'dataset': WAR_AND_PEACE, 'normalize': 'lower'},
                ci=ONE_LAYER_CI,
            ),
            Run(
                'finetune',
                'configs/gpt.py:cpu_finetune',
                trials=tuple(GPT_FINETUNES.values()),
                overrides={**SST2, 'init_from': RunDir('pretrain')},
                # ci: the pre-trained run's architecture (fine-tuning refuses another).
                ci={
                    'num_epochs': 0.0,
                    'num_train_steps': 20,
                    'eval_every_steps': 20,
                    'model.num_layers': 1,
                },
                evaluate=(),
            ),
        ),
        extract=_sst2(GPT_FINETUNES, pretrain_val_loss='eval/loss'),
        checks=(
            Lower('random_init_accuracy', 'pretrained_accuracy', 3.0),
            Within('no_aux_lm_accuracy', 'pretrained_accuracy', 1.0),
        ),
        # ci: 20 steps must take the LM below a uniform guess over its 8,000 pieces.
        ci_checks=(Below('pretrain_val_loss', math.log(8000)),),
        note='a 4-layer GPT (5.2M parameters) pre-trained on War and Peace (lower-cased, '
        '2,000 steps, ~50 minutes), then fine-tuned on SST-2 for 3 epochs (~10 minutes '
        'each) from the pre-trained weights, from random weights, and with lambda = 0; '
        'test accuracy (1,821 sentences). Pre-training must add at least 3 points (the '
        'paper: 7.3); without the auxiliary LM loss SST-2 accuracy stays within 1 point '
        '(the paper: -0.4; it reports the auxiliary loss helping the larger datasets only).',
    ),
    Claim(
        name='bert_sst2_pretraining',
        title='Masked-LM pre-training helps SST-2',
        citation='Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional '
        'Transformers for Language Understanding" Tables 1 and 5',
        paper='SST-2 accuracy 93.5 (test) for BERT-BASE pre-trained on BooksCorpus and '
        'Wikipedia (Table 1); 92.7 (dev) with its pre-training tasks, 92.6 without '
        'next-sentence prediction (Table 5); no run without pre-training is reported',
        runs=(
            Run(
                'pretrain',
                'configs/bert.py:warpeace',
                ci={**ONE_LAYER_CI, 'num_eval_batches': 2},
            ),
            Run(
                'finetune',
                'configs/bert.py:sst2',
                trials=tuple(BERT_FINETUNES.values()),
                overrides={'init_from': RunDir('pretrain')},
                ci=ONE_LAYER_CI,
                evaluate=(),
            ),
        ),
        extract=_sst2(
            BERT_FINETUNES,
            pretrain_mlm_loss='eval/mlm_loss',
            pretrain_mlm_accuracy='eval/mlm_accuracy',
            pretrain_nsp_accuracy='eval/nsp_accuracy',
        ),
        checks=(Lower('random_init_accuracy', 'pretrained_accuracy', 3.0),),
        # ci: 20 steps must take the masked LM below a uniform guess over 8,000 pieces.
        ci_checks=(Below('pretrain_mlm_loss', math.log(8000)),),
        note='a BERT-Mini-sized model (L=4, H=256, A=4; 5.4M parameters) pre-trained on '
        'War and Peace (lower-cased, masked LM + next-sentence prediction, 1,600 steps, '
        '~35 minutes), then fine-tuned on SST-2 for 4 epochs (~7 minutes each) from the '
        'pre-trained and from random weights; test accuracy (1,821 sentences). The check '
        "is the GPT claim's: pre-training must add at least 3 points.",
    ),
]
