"""FLOP counts per model family against hand-computed ones, and MFU in the metrics."""

import json
import math
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'scripts'))
from train_toy import HIDDEN, NUM_CLASSES, NUM_FEATURES, ToyTask, toy_config

from seqmodels import flops, models, training
from seqmodels.training import loop

GPT = dict(name='gpt', vocab_size=5, max_len=8, d_model=4, num_heads=2, d_ff=8, num_layers=1)
TRANSFORMER = dict(
    name='transformer',
    src_vocab_size=7,
    tgt_vocab_size=5,
    d_model=4,
    num_heads=2,
    d_ff=8,
    num_encoder_layers=1,
    num_decoder_layers=1,
    max_len=8,
    share_embeddings=False,
)
VIT = dict(
    name='vit',
    image_size=4,
    num_channels=1,
    patch_size=2,
    num_classes=3,
    d_model=4,
    num_layers=1,
    num_heads=2,
    d_ff=8,
)
BERT = dict(name='bert', vocab_size=5, max_len=8, d_model=4, num_heads=2, d_ff=8, num_layers=1)
RNN_LM = dict(name='rnn_lm', vocab_size=5, embed_dim=3, hidden_size=4, num_layers=2)
SEQ2SEQ = dict(
    name='seq2seq', src_vocab_size=5, tgt_vocab_size=6, embed_dim=3, hidden_size=4, attention_dim=5
)


# Forward FLOPs worked out by hand (2 per multiply-add), d = 4, d_ff = 8:
#   a Transformer layer per token: 2 (4 d^2 + 2 d d_ff) = 256, plus 2 * 2 * context * d.
def test_hand_computed_forward_counts():
    # GPT, B=2, T=3: (256 + 4*3*4 = 48) + LM head 2*4*5 = 40 -> 344 per token, 6 tokens.
    assert flops.gpt_forward_flops(GPT, 2, 3) == 6 * 344
    # Transformer, B=2, S=3, T=2: encoder 256 + 48 = 304 per source token (x3); decoder
    # 256 + 4*2*4 = 288, cross-attention 2*4*16 + 4*3*4 = 176, head 2*4*5 = 40 -> 504 (x2).
    assert flops.transformer_forward_flops(TRANSFORMER, 2, 3, 2) == 2 * (3 * 304 + 2 * 504)
    # With key_size d_k = 3 the h = 2 heads are h·d_k = 6 wide: projections 2 * 4*4*6 =
    # 192 (+ FFN 128 = 320), QK^T and AV 2*2 * context * 6. Encoder 320 + 4*3*6 = 392;
    # decoder 320 + 4*2*6 = 368, cross-attention 192 + 4*3*6 = 264, head 40 -> 672.
    keyed = {**TRANSFORMER, 'key_size': 3}
    assert flops.transformer_forward_flops(keyed, 2, 3, 2) == 2 * (3 * 392 + 2 * 672)
    # ViT, 4x4x1 images, 2x2 patches: 4 patches + [class] = 5 tokens. Patch embedding
    # 4 * 2*4*4 = 128; layer 5 * (256 + 4*5*4) = 1680; head 2*4*3 = 24 -> 1832 per image.
    assert flops.vit_forward_flops(VIT, 2, 4, 4, 1) == 2 * 1832
    assert flops.vit_forward_flops(VIT, 2) == 2 * 1832  # sizes from the config
    # BERT, B=2, T=3: encoder 6 * 304 = 1824, pooler 2 * 2*16 = 64, MLM head at 2
    # positions of each row: 4 * 2 * (16 + 20) = 288.
    assert flops.bert_forward_flops(BERT, 2, 3, 2) == 1824 + 64 + 288
    assert flops.bert_forward_flops(BERT, 2, 3) == 1824 + 64
    # LSTM LM, E=3, h=4, 2 layers: 2*(3+4)*16 = 224, 2*(4+4)*16 = 256, head 2*4*5 = 40.
    assert flops.rnn_lm_forward_flops(RNN_LM, 2, 3) == 6 * (224 + 256 + 40)
    # The same with GRU cells (3 gates): 2*7*12 = 168, 2*8*12 = 192.
    assert flops.rnn_lm_forward_flops({**RNN_LM, 'cell': 'gru'}, 2, 3) == 6 * (168 + 192 + 40)
    # Seq2seq, B=1, S=2, T=2, h=4, a=5: encoder per source token 2 directions x
    # 2*(3+4)*16 + keys 2*8*5 = 528; bridge to (c, h) 2 * 2*16 = 64; per target step
    # W s 2*4*5 = 40 + 2 source positions x (v 2*5 + context 2*8) = 92, decoder cell on
    # [E y; c] 2*(11+4)*16 = 480, maxout readout 2*(12+3)*8 = 240, output 2*4*6 = 48.
    assert flops.seq2seq_forward_flops(SEQ2SEQ, 1, 2, 2) == 2 * 528 + 64 + 2 * 860


def _kernels(params, *prefixes):
    """Sum of the sizes of the 'kernel' leaves under any of the path prefixes."""
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = tuple(k.key for k in path)
        if keys[-1] == 'kernel' and any(keys[: len(p)] == p for p in prefixes):
            total += math.prod(leaf.shape)
    return total


def _params(config):
    model = models.build_model(config)
    return jax.eval_shape(lambda key: models.init_params(config, model, key), jax.random.key(0))


@pytest.mark.parametrize(
    'config',
    [GPT, {**GPT, 'num_layers': 3, 'd_ff': 12}, {**GPT, 'scan_layers': True, 'num_layers': 2}],
)
def test_gpt_count_is_two_flops_per_weight_per_token_plus_attention(config):
    params = _params(config)
    weights = _kernels(params, ('decoder',)) + math.prod(params['token_embed']['embedding'].shape)
    b, t, d, layers = 3, 5, config['d_model'], config['num_layers']
    expected = b * t * (2 * weights + layers * 4 * t * d)
    assert flops.gpt_forward_flops(config, b, t) == expected
    assert (
        flops.train_step_flops(
            config, {'inputs': np.zeros((b, t), np.int32), 'targets': np.zeros((b, t), np.int32)}
        )
        == 3 * expected
    )


def test_the_other_families_agree_with_their_parameters():
    d = 4
    s, t = 3, 2
    # QK^T and AV are h·d_k wide: d_model, or 2 heads of key_size 3.
    for config, width in ((TRANSFORMER, d), ({**TRANSFORMER, 'key_size': 3}, 6)):
        params = _params(config)
        encoder = s * (2 * _kernels(params, ('encoder',)) + 4 * s * width)
        decoder = t * (
            2 * _kernels(params, ('decoder',))
            + 4 * t * width
            + 4 * s * width
            + 2 * math.prod(params['tgt_embed']['embedding'].shape)
        )
        assert flops.transformer_forward_flops(config, 1, s, t) == encoder + decoder

    params = _params(VIT)
    tokens = 5
    expected = (
        4 * 2 * _kernels(params, ('patch_embed',))
        + tokens * (2 * _kernels(params, ('encoder',)) + 4 * tokens * d)
        + 2 * _kernels(params, ('head',))
    )
    assert flops.vit_forward_flops(VIT, 1) == expected

    params = _params(BERT)
    t, scored = 6, 2
    expected = (
        t * (2 * _kernels(params, ('encoder',)) + 4 * t * d)
        + 2 * _kernels(params, ('pooler',))
        + scored
        * 2
        * (_kernels(params, ('mlm_head',)) + math.prod(params['token_embed']['embedding'].shape))
    )
    assert flops.bert_forward_flops(BERT, 1, t, scored) == expected

    params = _params(RNN_LM)
    assert flops.rnn_lm_forward_flops(RNN_LM, 1, 1) == 2 * _kernels(params, ('rnn',), ('output',))
    params = _params(SEQ2SEQ)
    s, t = 3, 4
    per_pair = 2 * _kernels(params, ('attention', 'v')) + 2 * 2 * SEQ2SEQ['hidden_size']
    expected = (
        s * 2 * _kernels(params, ('encoder',), ('attention', 'U'))
        + 2 * _kernels(params, ('bridge',))
        + t * 2 * _kernels(params, ('attention', 'W'), ('decoder',), ('readout',), ('output',))
        + s * t * per_pair
    )
    assert flops.seq2seq_forward_flops(SEQ2SEQ, 1, s, t) == expected


def test_shapes_come_from_each_drivers_batch_layout():
    ints = lambda *shape: np.zeros(shape, np.int32)
    # char LM / GPT: inputs [B, T]
    assert flops.forward_flops(
        GPT, {'inputs': ints(2, 3), 'targets': ints(2, 3)}
    ) == flops.gpt_forward_flops(GPT, 2, 3)
    # translation: src [B, S], tgt_in [B, T] (src_lengths and weights are not shapes)
    batch = {
        'src': ints(2, 3),
        'tgt_in': ints(2, 2),
        'tgt_out': ints(2, 2),
        'src_lengths': ints(2),
        'weights': np.zeros((2, 2), np.float32),
    }
    assert flops.forward_flops(TRANSFORMER, batch) == flops.transformer_forward_flops(
        TRANSFORMER, 2, 3, 2
    )
    assert flops.forward_flops(SEQ2SEQ, batch) == flops.seq2seq_forward_flops(SEQ2SEQ, 2, 3, 2)
    # GPT fine-tuning: named tokens of K choices per example, beside other int arrays
    choices = {'inputs': {'tokens': ints(2, 4, 3), 'last': ints(2, 4)}, 'labels': ints(2)}
    assert flops.forward_flops(GPT, choices) == flops.gpt_forward_flops(GPT, 8, 3)
    # ViT: images [B, H, W, C]
    vit_batch = {'images': np.zeros((2, 4, 4, 1), np.float32), 'labels': ints(2)}
    assert flops.forward_flops(VIT, vit_batch) == flops.vit_forward_flops(VIT, 2)
    # BERT pre-training (MLM at masked positions) and fine-tuning (nested inputs; K options)
    pretrain = {'tokens': ints(2, 6), 'segment_ids': ints(2, 6), 'masked_positions': ints(2, 2)}
    assert flops.forward_flops(BERT, pretrain) == flops.bert_forward_flops(BERT, 2, 6, 2)
    finetune = {
        'inputs': {'tokens': ints(2, 4, 6), 'segment_ids': ints(2, 4, 6)},
        'labels': ints(2),
    }
    assert flops.forward_flops(BERT, finetune) == flops.bert_forward_flops(BERT, 8, 6)
    # What it cannot read is unknown, not a guess.
    assert flops.forward_flops(TRANSFORMER, {'inputs': ints(2, 3)}) is None
    assert flops.forward_flops({'name': 'mlp'}, {'x': ints(2, 3)}) is None
    assert flops.train_step_flops({}, {'x': ints(2, 3)}) is None


def test_datasheet_peaks_and_the_cpu_probe():
    assert flops.datasheet_peak('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.4e12
    assert flops.datasheet_peak('NVIDIA H100 PCIe', 'bfloat16') == 756.5e12
    assert flops.datasheet_peak('NVIDIA H100 80GB HBM3', 'float32') == 494.7e12  # TF32
    assert flops.datasheet_peak('NVIDIA L40S', 'bfloat16') == 362.05e12
    assert flops.datasheet_peak('NVIDIA L4', 'bfloat16') == 121e12
    assert flops.datasheet_peak('TPU v5 lite', 'bfloat16') == 197e12
    assert flops.datasheet_peak('TPU v5', 'bfloat16') == 459e12
    assert flops.datasheet_peak('TPU v3', 'float32') == 61.5e12  # per core
    assert flops.datasheet_peak('cpu') is None
    rate, source = flops.peak_flops_per_sec(jax.devices('cpu')[0])
    assert 1e6 < rate < 1e14 and 'timed' in source


class _CountedToy(ToyTask):
    """The toy MLP with its FLOPs: 3 passes x 2 x B x (8*16 + 16*4) per step."""

    def model_flops(self, batch):
        rows = batch['x'].shape[0]
        return 3 * 2 * rows * (NUM_FEATURES * HIDDEN + HIDDEN * NUM_CLASSES)


def test_every_record_has_model_flops_and_mfu(tmp_path):
    config = toy_config(
        num_train_steps=4, log_every_steps=2, eval_every_steps=0, checkpoint_every_steps=0
    )
    training.train_and_evaluate(config, str(tmp_path), _CountedToy(config))
    records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
    assert [r['step'] for r in records] == [2, 4]
    step_flops = 3 * 2 * config.batch_size * (NUM_FEATURES * HIDDEN + HIDDEN * NUM_CLASSES)
    peak = records[0]['perf/peak_flops_per_sec']
    assert peak > 0
    for r in records:
        assert r['perf/model_flops_per_sec'] == pytest.approx(
            r['perf/steps_per_sec'] * step_flops, rel=1e-9
        )
        assert r['perf/mfu'] == pytest.approx(r['perf/model_flops_per_sec'] / peak, rel=1e-9)
    # A task whose FLOPs are unknown logs no MFU rather than a made-up one.
    batch = ToyTask(config).train_batch(0, 0, 1)
    assert loop._flops_counter(config, ToyTask(config))(batch) is None
    assert loop._peak_flops(config, None, None) is None
