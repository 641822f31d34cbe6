"""Model FLOPs of a training step, and the peak rate of the device, for MFU.

MFU (model FLOPs utilisation, PaLM appendix B) = the FLOPs the model needs per
step / step time / the devices' peak rate. The model FLOPs count matrix products
only (elementwise work, softmax and layer norms are left out), at 2 FLOPs per
multiply-add, and a training step costs 3 forward passes (the backward pass
computes gradients of both activations and weights: twice the forward), as in
Kaplan et al. 2020. For a decoder-only Transformer this gives the familiar
6 N + 12 L T d per token (N the matmul weights, the tied output projection
included, embedding lookups not; L layers, T the context, d = d_model).

Per family (`FORWARD_FLOPS`), from the `model` sub-config and the shapes of a
batch; `train_step_flops(model_config, batch)` reads those shapes from a batch of
the layout the drivers use (None where it cannot):

    gpt, rnn_lm        inputs or tokens [B, T] or [B, K, T] (K choices per example)
    bert               tokens [B, T] or [B, K, T]; MLM head at masked_positions [B, P]
    transformer        src [B, S], tgt_in [B, T]
    seq2seq            src [B, S], tgt_in [B, T]
    vit                images [B, H, W, C]

Peaks (`peak_flops_per_sec`): datasheet dense rates per device for common
accelerators (`PEAKS`), for bfloat16 and for a float32 matmul at JAX's default
precision (TF32 tensor cores on Ampere and later GPUs, bfloat16 passes on TPU). On a
CPU, or a device missing from the table, the rate of a matmul timed once
(`measured_matmul_rate`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

# Gates of each recurrent cell's fused input and recurrent matmuls (seqmodels.nn.recurrent).
CELL_GATES = {'rnn': 1, 'elman': 1, 'lstm': 4, 'lnlstm': 4, 'gru': 3}
# Leaves of each cell's carry: an LSTM carries (c, h).
CELL_CARRIES = {'rnn': 1, 'elman': 1, 'lstm': 2, 'lnlstm': 2, 'gru': 1}

TRAIN_FORWARDS = 3  # forward + backward (2x forward)


def _get(m: Mapping, key: str, default=None):
    value = m.get(key, default) if hasattr(m, 'get') else getattr(m, key, default)
    return default if value is None else value


def _attention_width(m: Mapping) -> int:
    """h · d_k, the width of the concatenated heads: d_model unless model.key_size sets
    d_k (Vaswani et al. 2017, Table 3 row B)."""
    key_size = _get(m, 'key_size', 0)
    return m['num_heads'] * key_size if key_size else m['d_model']


def _transformer_layer(
    d: int, d_ff: int, context: int, cross_context: int = 0, width: int | None = None
) -> int:
    """Forward FLOPs per token of one Transformer layer: Q, K, V, O projections
    (d x width each, width = h · d_k, d by default), the feed-forward, QK^T and AV over
    `context` keys, and cross-attention when `cross_context` > 0."""
    width = d if width is None else width
    flops = 2 * (4 * d * width + 2 * d * d_ff) + 2 * 2 * context * width
    if cross_context:
        flops += 2 * 4 * d * width + 2 * 2 * cross_context * width
    return flops


def gpt_forward_flops(m: Mapping, batch: int, length: int) -> int:
    """Decoder-only Transformer over [batch, length] tokens, the tied LM head included
    (a classification head is not counted)."""
    d, d_ff, layers = m['d_model'], m['d_ff'], m['num_layers']
    per_token = layers * _transformer_layer(d, d_ff, length) + 2 * d * m['vocab_size']
    return batch * length * per_token


def bert_forward_flops(m: Mapping, batch: int, length: int, scored: int | None = None) -> int:
    """Encoder over [batch, length] tokens, the pooler, and the MLM head (transform and
    tied projection) at `scored` positions per sequence (None: no MLM head, as when
    fine-tuning a classifier)."""
    d, d_ff, layers = m['d_model'], m['d_ff'], m['num_layers']
    flops = batch * length * layers * _transformer_layer(d, d_ff, length)
    flops += batch * 2 * d * d  # pooler
    if scored:
        flops += batch * scored * 2 * (d * d + d * m['vocab_size'])
    return flops


def transformer_forward_flops(m: Mapping, batch: int, src_length: int, tgt_length: int) -> int:
    """Encoder over [batch, src_length], decoder over [batch, tgt_length] with
    cross-attention, and the output projection."""
    d, d_ff, width = m['d_model'], m['d_ff'], _attention_width(m)
    encoder = (
        src_length
        * _get(m, 'num_encoder_layers', 6)
        * _transformer_layer(d, d_ff, src_length, width=width)
    )
    decoder = tgt_length * (
        _get(m, 'num_decoder_layers', 6)
        * _transformer_layer(d, d_ff, tgt_length, src_length, width=width)
        + 2 * d * m['tgt_vocab_size']
    )
    return batch * (encoder + decoder)


def vit_forward_flops(
    m: Mapping,
    batch: int,
    height: int | None = None,
    width: int | None = None,
    channels: int | None = None,
) -> int:
    """Patch embedding, encoder over the patches (and [class] token), head. Image sizes
    default to the config's."""
    p, d, d_ff = m['patch_size'], m['d_model'], m['d_ff']
    height = height or _get(m, 'image_size', 224)
    width = width or _get(m, 'image_size', 224)
    channels = channels or _get(m, 'num_channels', 3)
    patches = (height // p) * (width // p)
    tokens = patches + (1 if _get(m, 'pool', 'cls') == 'cls' else 0)
    flops = patches * 2 * p * p * channels * d
    flops += tokens * m['num_layers'] * _transformer_layer(d, d_ff, tokens)
    representation = _get(m, 'representation_size', 0)
    head_in = representation or d
    flops += 2 * d * representation + 2 * head_in * m['num_classes']
    return batch * flops


def _cell(cell: str, inputs: int, hidden: int) -> int:
    """Forward FLOPs of one step of a recurrent cell: its fused input and recurrent
    matmuls."""
    return 2 * (inputs + hidden) * CELL_GATES[cell] * hidden


def rnn_lm_forward_flops(m: Mapping, batch: int, length: int) -> int:
    """Stacked RNN over [batch, length] tokens and the output projection."""
    cell, h, e = _get(m, 'cell', 'lstm'), m['hidden_size'], m['embed_dim']
    layers = _get(m, 'num_layers', 1)
    per_token = _cell(cell, e, h) + (layers - 1) * _cell(cell, h, h) + 2 * h * m['vocab_size']
    return batch * length * per_token


def seq2seq_forward_flops(m: Mapping, batch: int, src_length: int, tgt_length: int) -> int:
    """Bahdanau et al.'s encoder-decoder: a bidirectional encoder (layers above the
    first read both directions, 2h), the keys U h_j, the bridge to the decoder carry,
    then per target step W s, v^T tanh(.) and the context over every source position,
    the decoder cell on [E y; c], the maxout readout on [s; c; E y] and the output."""
    cell, h, e = _get(m, 'cell', 'lstm'), m['hidden_size'], m['embed_dim']
    a = _get(m, 'attention_dim', h)
    enc_layers, dec_layers = _get(m, 'encoder_layers', 1), _get(m, 'decoder_layers', 1)
    encoder = src_length * (
        2 * _cell(cell, e, h) + (enc_layers - 1) * 2 * _cell(cell, 2 * h, h) + 2 * 2 * h * a
    )
    bridge = dec_layers * CELL_CARRIES[cell] * 2 * h * h
    attention = 2 * h * a + src_length * (2 * a + 2 * 2 * h)
    step = (
        attention
        + _cell(cell, e + 2 * h, h)
        + (dec_layers - 1) * _cell(cell, h, h)
        + 2 * (3 * h + e) * 2 * h
        + 2 * h * m['tgt_vocab_size']
    )
    return batch * (encoder + bridge + tgt_length * step)


FORWARD_FLOPS = {
    'gpt': gpt_forward_flops,
    'bert': bert_forward_flops,
    'transformer': transformer_forward_flops,
    'vit': vit_forward_flops,
    'rnn_lm': rnn_lm_forward_flops,
    'seq2seq': seq2seq_forward_flops,
}


# --------------------------------------------------------------------------- #
# Shapes from a batch.


def _leaves(batch, prefix=()):
    """(path, array) of every array in a nested dict, in insertion order."""
    if isinstance(batch, Mapping):
        for key, value in batch.items():
            yield from _leaves(value, prefix + (str(key),))
    elif hasattr(batch, 'shape'):
        yield prefix, batch


def _find(batch, names, rank=None, integer=None, fallback=True):
    """The shape of the first leaf named one of `names` (at any depth) of that rank and
    kind, else (with `fallback`) of the first leaf of that rank and kind; None when
    there is none."""

    def fits(x):
        is_int = np.issubdtype(np.dtype(x.dtype), np.integer)
        return (rank is None or len(x.shape) == rank) and (integer is None or is_int == integer)

    leaves = [(path, x) for path, x in _leaves(batch) if fits(x)]
    for name in names:
        for path, x in leaves:
            if path and path[-1] == name:
                return tuple(x.shape)
    return tuple(leaves[0][1].shape) if leaves and fallback else None


def forward_flops(model_config: Mapping, batch) -> int | None:
    """Forward FLOPs of the model on `batch` (a dict of arrays or shape-bearing leaves,
    global shapes); None for a family or a batch layout this module does not know."""
    name = _get(model_config, 'name')
    if name in ('gpt', 'rnn_lm'):
        # [B, T], or [B, K, T] for K choices per example
        tokens = _find(batch, ('inputs', 'tokens'), integer=True, fallback=False) or _find(
            batch, (), rank=2, integer=True
        )
        if tokens is None or len(tokens) not in (2, 3):
            return None
        return FORWARD_FLOPS[name](model_config, math.prod(tokens[:-1]), tokens[-1])
    if name == 'bert':
        tokens = _find(batch, ('tokens',), integer=True)
        if tokens is None or len(tokens) not in (2, 3):
            return None
        positions = _find(batch, ('masked_positions',), rank=2, fallback=False)
        scored = None if positions is None else positions[-1]
        return bert_forward_flops(model_config, math.prod(tokens[:-1]), tokens[-1], scored)
    if name in ('transformer', 'seq2seq'):
        src = _find(batch, ('src',), rank=2, fallback=False)
        tgt = _find(batch, ('tgt_in', 'tgt'), rank=2, fallback=False)
        if src is None or tgt is None:
            return None
        return FORWARD_FLOPS[name](model_config, src[0], src[1], tgt[1])
    if name == 'vit':
        images = _find(batch, ('images',), rank=4)
        return None if images is None else vit_forward_flops(model_config, *images)
    return None


def train_step_flops(model_config: Mapping, batch) -> int | None:
    """Model FLOPs of one training step on `batch` (3 forward passes); None where
    `forward_flops` is."""
    forward = forward_flops(model_config, batch)
    return None if forward is None else TRAIN_FORWARDS * forward


# --------------------------------------------------------------------------- #
# Peak rates.

# (substring of jax's device_kind, dense bfloat16 TFLOP/s, float32 TFLOP/s) per device,
# most specific first. float32 is what a float32 matmul gets at JAX's default precision:
# TF32 tensor cores on NVIDIA Ampere and later, bfloat16 passes on TPU. Sources: NVIDIA
# datasheets (dense, i.e. half the "with sparsity" figures), Google Cloud TPU pages.
# TPU v2 and v3 chips hold two devices (cores) each: the rates are per core.
PEAKS: tuple[tuple[str, float, float], ...] = (
    ('H100 PCIe', 756.5, 378.0),
    ('H100 NVL', 835.5, 417.5),
    ('H200 NVL', 835.5, 417.5),
    ('H100', 989.4, 494.7),  # SXM ('NVIDIA H100 80GB HBM3')
    ('H200', 989.4, 494.7),  # SXM, and GH200
    ('B200', 2250.0, 1100.0),
    ('A100', 312.0, 156.0),
    ('L40S', 362.05, 183.0),
    ('L40', 181.05, 90.5),
    ('L4', 121.0, 60.0),
    ('TPU v2', 22.5, 22.5),
    ('TPU v3', 61.5, 61.5),
    ('TPU v4', 275.0, 275.0),
    ('TPU v5 lite', 197.0, 197.0),  # v5e
    ('TPU v5e', 197.0, 197.0),
    ('TPU v5', 459.0, 459.0),  # v5p
    ('TPU v6', 918.0, 918.0),  # v6e (Trillium)
)


def datasheet_peak(device_kind: str, dtype: str = 'float32') -> float | None:
    """Dense peak FLOP/s per device of `device_kind` for `dtype` ('bfloat16' or
    'float32'), or None when the device is not in `PEAKS`."""
    column = {'bfloat16': 1, 'float32': 2}[np.dtype(dtype).name]
    for row in PEAKS:
        if row[0].lower() in device_kind.lower():
            return row[column] * 1e12
    return None


def measured_matmul_rate(
    dtype: str = 'float32', n: int = 512, repeats: int = 5, device=None
) -> float:
    """FLOP/s of an n x n x n matmul on one device: the best of `repeats` timed calls
    after a warm-up (the CPU's denominator)."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    a = jax.device_put(jnp.ones((n, n), dtype), device)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / max(best, 1e-9)


def peak_flops_per_sec(device=None, dtype: str = 'float32') -> tuple[float, str]:
    """(peak FLOP/s of one device, where it comes from): the datasheet rate for an
    accelerator in `PEAKS`, else a matmul timed now."""
    import jax

    device = device or jax.devices()[0]
    kind = getattr(device, 'device_kind', '') or ''
    if device.platform != 'cpu':
        peak = datasheet_peak(kind, dtype)
        if peak is not None:
            return peak, f'{kind} datasheet, dense {np.dtype(dtype).name}'
    return (
        measured_matmul_rate(dtype, device=device),
        f'{kind or device.platform} {np.dtype(dtype).name} matmul timed at start-up',
    )


def describe(model_config: Mapping, batch: Mapping[str, Any]) -> str:
    """One line for logs: the family and its FLOPs per training step on `batch`."""
    flops = train_step_flops(model_config, batch)
    name = _get(model_config, 'name')
    return (
        f'{name}: {flops / 1e9:.3f} GFLOP per training step'
        if flops is not None
        else f'{name}: FLOPs per step unknown for this batch layout'
    )
