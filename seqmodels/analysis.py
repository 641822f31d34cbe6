"""Looking inside trained models: attention maps, attention rollout, attention distance,
position embeddings, patch-embedding filters, sampling distributions.

Functions of a model and its parameters that return arrays; `seqmodels.plots` draws
them. No flags, no workdir: drivers and notebooks call the same code. The recurrent
language models' cells have their own module, `seqmodels.cells`.

Attention weights are the softmax rows each attention module used, sown by
`MultiHeadAttention` into 'intermediates' (or captured from `AdditiveAttention`), laid
out [layers, batch, heads, queries, keys]; masked keys have weight exactly 0.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqmodels import decoding, models
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seqmodels.nn.additive_attention import AdditiveAttention


def stacked_weights(stack: dict, num_layers: int, name: str = 'self_attention') -> jax.Array:
    """[num_layers, B, heads, Tq, Tk]: the weights sown by each layer's attention `name`
    ('self_attention' or 'memory_attention') in the intermediates of an Encoder or
    Decoder stack, unrolled (`layers_i`) or scanned (`layers`)."""
    if 'layers' in stack:  # scan_layers: already stacked on a leading layer axis
        return stack['layers'][name]['attention_weights'][0]
    return jnp.stack(
        [stack[f'layers_{i}'][name]['attention_weights'][0] for i in range(num_layers)]
    )


def attention_weights(model: models.ViT, params, images) -> jax.Array:
    """[num_layers, B, heads, T, T]: every layer's softmax attention (sown by the
    attention module into 'intermediates'), in layer order."""
    _, state = model.apply(
        {'params': params}, images, deterministic=True, mutable=['intermediates']
    )
    return stacked_weights(state['intermediates']['encoder'], model.num_layers)


def attention_rollout(weights) -> jax.Array:
    """Abnar & Zuidema 2020: [L, B, heads, T, T] -> [B, T, T].

    Each layer's attention is averaged over heads; the residual connection is accounted
    for by adding the identity and renormalising the rows; the layers are then composed,
    last layer leftmost: R = Â_L ··· Â_1. Row q of R says how much of token q's final
    state is mixed from each input token.
    """
    a = jnp.asarray(weights, jnp.float32).mean(axis=2)
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    a = a / a.sum(axis=-1, keepdims=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = jnp.einsum('bij,bjk->bik', layer, rollout)
    return rollout


@functools.partial(jax.jit, static_argnums=(0, 3))
def _patch_scores(model: models.ViT, params, images, rollout: bool):
    weights = attention_weights(model, params, images)
    if model.pool == 'cls' and not rollout:
        return weights[-1].mean(axis=1)[:, 0, 1:]
    r = attention_rollout(weights)
    return r[:, 0, 1:] if model.pool == 'cls' else r.mean(axis=1)


def patch_attention(model: models.ViT, params, images, rollout: bool = False) -> np.ndarray:
    """[B, grid, grid]: how much the representation the head reads attends to each patch.

    [class] models: the [class] token's row (of the last layer, or of the rollout).
    GAP models read the mean of all tokens, so their map is the mean row of the rollout.
    """
    g = model.grid_size
    return np.asarray(_patch_scores(model, params, images, bool(rollout))).reshape(-1, g, g)


# --------------------------------------------------------------------------- #
# ViT, Figure 7 of Dosovitskiy et al. 2021.


def mean_attention_distance(
    weights, grid_size: int, patch_size: int, has_cls: bool = True
) -> np.ndarray:
    """[L, B, heads, T, T] -> [L, heads]: the "attention distance" of ViT's Figure 7,
    in pixels: for each query patch, the distance to every key patch (between patch
    centres) weighted by the attention it pays to it, averaged over query patches and
    images. The [class] token (position 0 when `has_cls`) is left out as query and as
    key, and each patch's row is renormalised over the patches."""
    w = np.asarray(weights, np.float64)
    if has_cls:
        w = w[..., 1:, 1:]
    w = w / np.maximum(w.sum(axis=-1, keepdims=True), 1e-30)
    rows, cols = np.divmod(np.arange(grid_size * grid_size), grid_size)
    distance = patch_size * np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    return (w * distance).sum(axis=-1).mean(axis=(1, 3))


def patch_embedding_components(kernel, num_components: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the patch-embedding filters (ViT's Figure 7, left).

    kernel [P, P, C, D] holds D filters of P·P·C pixels; returns (components [k, P, P, C],
    each of unit norm, and the fraction of the filters' variance each explains [k]),
    k = min(num_components, P·P·C, D).
    """
    kernel = np.asarray(kernel, np.float64)
    p, q, c, d = kernel.shape
    filters = kernel.reshape(p * q * c, d).T
    filters = filters - filters.mean(axis=0)
    _, singular, vt = np.linalg.svd(filters, full_matrices=False)
    k = min(num_components, vt.shape[0])
    variance = singular**2
    return vt[:k].reshape(k, p, q, c), variance[:k] / max(variance.sum(), 1e-30)


# --------------------------------------------------------------------------- #
# Position encodings.


def position_similarity(table, kind: str = 'cosine') -> np.ndarray:
    """[N, D] -> [N, N]: the dot product ('dot') or cosine similarity ('cosine') of the
    encodings of every pair of positions."""
    table = np.asarray(table, np.float64)
    if kind == 'cosine':
        table = table / np.maximum(np.linalg.norm(table, axis=-1, keepdims=True), 1e-30)
    elif kind != 'dot':
        raise ValueError(f"kind must be 'dot' or 'cosine', got {kind!r}")
    return table @ table.T


# --------------------------------------------------------------------------- #
# Language models: the distribution each sampling setting draws from.


def next_token_logits(model, params, tokens) -> np.ndarray:
    """[V]: the logits of the token after tokens [T] (an RNNLM or a GPT; a GPT sees its
    last max_len tokens)."""
    tokens = np.asarray(tokens, np.int32).reshape(1, -1)
    if isinstance(model, models.GPT):
        tokens = tokens[:, -model.max_len :]
    return np.asarray(jax.jit(model.apply)({'params': params}, tokens))[0, -1]


def sampling_distribution(
    logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> np.ndarray:
    """The probabilities `decoding.sample_next` draws from for logits [..., V]: the
    softmax of logits / temperature after top-k, then top-p; temperature 0 puts all
    the mass on the argmax."""
    logits = jnp.asarray(logits, jnp.float32)
    if temperature == 0:
        return np.asarray(jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1]))
    scaled = logits / temperature
    if top_k is not None:
        scaled = decoding.apply_top_k(scaled, top_k)
    if top_p is not None:
        scaled = decoding.apply_top_p(scaled, top_p)
    return np.asarray(jax.nn.softmax(scaled, axis=-1))


# --------------------------------------------------------------------------- #
# Encoder-decoders.


def encoder_attention(model: models.Transformer, params, src) -> jax.Array:
    """[L, B, heads, S, S]: the encoder's self-attention over src [B, S]."""
    return _encoder_attention(model, params, src)


@functools.partial(jax.jit, static_argnums=0)
def _encoder_attention(model, params, src):
    _, state = model.apply(
        {'params': params}, src, method=models.Transformer.encode, mutable=['intermediates']
    )
    return stacked_weights(state['intermediates']['encoder'], model.num_encoder_layers)


def transformer_attention(model: models.Transformer, params, src, tgt_in) -> dict:
    """Every attention map of one teacher-forced pass, tgt_in [B, T] against src [B, S]:
    {'encoder': [L, B, heads, S, S], 'decoder': [L, B, heads, T, T] (causal),
    'cross': [L, B, heads, T, S]}."""
    return _transformer_attention(model, params, src, tgt_in)


def decoder_attention(
    model: models.Transformer, params, src, tgt_in
) -> tuple[jax.Array, jax.Array]:
    """(self [L, B, heads, T, T], cross [L, B, heads, T, S]) of the decoder reading
    tgt_in [B, T] (teacher forcing) against the encoding of src [B, S]."""
    maps = _transformer_attention(model, params, src, tgt_in)
    return maps['decoder'], maps['cross']


@functools.partial(jax.jit, static_argnums=0)
def _transformer_attention(model, params, src, tgt_in):
    _, state = model.apply({'params': params}, src, tgt_in, mutable=['intermediates'])
    stacks = state['intermediates']
    n = model.num_decoder_layers
    return {
        'encoder': stacked_weights(stacks['encoder'], model.num_encoder_layers),
        'decoder': stacked_weights(stacks['decoder'], n, 'self_attention'),
        'cross': stacked_weights(stacks['decoder'], n, 'memory_attention'),
    }


def _is_additive_attention(module, method_name: str) -> bool:
    return isinstance(module, AdditiveAttention) and method_name == '__call__'


def rnn_attention(model: models.RNNSeq2Seq, params, src, src_lengths, tgt_in) -> jax.Array:
    """[B, T, S]: alpha_ij of Bahdanau et al. (the weights `AdditiveAttention` returned
    to `decode_step`) while the decoder reads tgt_in [B, T] (teacher forcing)."""
    return _rnn_teacher_forced(model, params, src, src_lengths, tgt_in)[1]


@functools.partial(jax.jit, static_argnums=0)
def _rnn_teacher_forced(model, params, src, src_lengths, tgt_in):
    """(logits [B, T, V], attention [B, T, S]), one decode_step per target position."""
    variables = {'params': params}
    memory = model.apply(variables, src, src_lengths, method=models.RNNSeq2Seq.encode)

    def step(carry, token):
        (logits, carry), state = model.apply(
            variables,
            memory,
            carry,
            token,
            method=models.RNNSeq2Seq.decode_step,
            capture_intermediates=_is_additive_attention,
            mutable=['intermediates'],
        )
        _, weights = state['intermediates']['attention']['__call__'][0]
        return carry, (logits, weights)

    _, (logits, weights) = jax.lax.scan(step, memory['decoder_carry'], jnp.asarray(tgt_in).T)
    return logits.swapaxes(0, 1), weights.swapaxes(0, 1)


def cross_attention(
    model, params, src, src_lengths, tgt_in, layer: int = -1, head: int | None = None
) -> jax.Array:
    """[B, T, S]: what each target position attended to in the source. The Transformer:
    decoder layer `layer`'s cross-attention, averaged over heads unless `head` is given;
    the RNN encoder-decoder: its additive attention."""
    if isinstance(model, models.RNNSeq2Seq):
        return rnn_attention(model, params, src, src_lengths, tgt_in)
    cross = _transformer_attention(model, params, src, tgt_in)['cross'][layer]
    return cross.mean(axis=1) if head is None else cross[:, head]


@dataclasses.dataclass
class AttentionMap:
    """The cross-attention of one sentence (line `index` of the input): weights
    [len(target), len(source)]; row i is what the decoder attended to while producing
    target piece i. `source` and `target` label the pieces (EOS included) whose ids are
    `source_ids` and `target_ids`."""

    index: int
    sentence: str
    translation: str
    source: list[str]
    target: list[str]
    weights: np.ndarray
    source_ids: list[int]
    target_ids: list[int]


class ChoiceError(ValueError):
    """A decoder layer or head the model does not have; the message starts with the
    argument's name ('layer ...', 'head ...')."""


_SPECIAL_LABELS = {PAD_ID: '<pad>', UNK_ID: '<unk>', BOS_ID: '<s>', EOS_ID: '</s>'}


def _piece_labels(tokenizer, ids) -> list[str]:
    # SentencePiece's own mark (U+2581) on a word-initial piece.
    labels = []
    for t in (int(t) for t in ids):
        piece = tokenizer.decode_piece(t)
        labels.append(
            _SPECIAL_LABELS.get(t)
            or ('\u2581' + piece[1:] if piece.startswith(' ') else piece or f'<{t}>')
        )
    return labels


def check_layer_and_head(model, layer: int | None, head: int | None) -> None:
    """Raises ChoiceError when `layer` or `head` is not one of a Transformer's decoder
    layers or heads (the RNN encoder-decoder has one attention: both must be None)."""
    if isinstance(model, models.RNNSeq2Seq):
        for name, value in (('layer', layer), ('head', head)):
            if value is not None:
                raise ChoiceError(
                    f'{name}: the RNN encoder-decoder has one attention, no {name} to choose'
                )
        return
    n = model.num_decoder_layers
    if layer is not None and not -n <= layer < n:
        raise ChoiceError(f'layer must lie in 0..{n - 1}, got {layer}')
    if head is not None and not 0 <= head < model.num_heads:
        raise ChoiceError(f'head must lie in 0..{model.num_heads - 1}, got {head}')


def translation_attention(
    run, sentences: Sequence[str], layer: int | None = None, head: int | None = None
) -> list[AttentionMap]:
    """Greedy translations of `sentences` by a translation run (a `runs.Run`) and the
    cross-attention that produced them, one map per non-blank sentence.

    Greedy decoding as `inference.decode` does it (at most source length + the config's
    max_decode_extra pieces, fewer than a Transformer's max_len), run as repeated
    teacher-forced passes over the output so far: one compiled function gives both the
    next piece and, at the end, the attention rows of every decoding step. The
    Transformer's map is decoder layer `layer` (default the last), averaged over heads
    unless `head` is given.
    """
    model, source_tokenizer = run.model, run.source_tokenizer
    check_layer_and_head(model, layer, head)
    lines = [(i, s) for i, s in enumerate(sentences) if s.strip()]
    if not lines:
        return []
    limit = getattr(model, 'max_len', None)  # the Transformer's position table
    rows = [
        ids[: None if limit is None else limit - 1] + [EOS_ID]
        for ids in source_tokenizer.encode_batch([s for _, s in lines])
    ]
    src = np.full((len(rows), max(len(r) for r in rows)), PAD_ID, np.int32)
    for i, r in enumerate(rows):
        src[i, : len(r)] = r
    src_lengths = np.array([len(r) for r in rows], np.int32)
    extra = run.config.max_decode_extra
    decode_len = src.shape[1] + extra if limit is None else min(src.shape[1] + extra, limit)
    tokens, lengths, weights = _greedy(
        model, run.params, src, src_lengths, np.minimum(src_lengths + extra, decode_len), decode_len
    )
    if not isinstance(model, models.RNNSeq2Seq):
        weights = weights[-1 if layer is None else layer]  # [B, heads, T, S]
        weights = weights.mean(axis=1) if head is None else weights[:, head]
    maps = []
    for (index, sentence), row, out, length, w in zip(lines, rows, tokens, lengths, weights):
        maps.append(
            AttentionMap(
                index,
                sentence,
                run.target_tokenizer.decode(out),
                _piece_labels(source_tokenizer, row),
                _piece_labels(run.target_tokenizer, out[:length]),
                w[:length, : len(row)],
                row,
                out[:length].tolist(),
            )
        )
    return maps


def _greedy(model, params, src, src_lengths, limits, decode_len):
    """(tokens [B, decode_len]: the argmax pieces up to EOS, then PAD; lengths [B]: the
    pieces of each row, EOS included, at most limits[b]; the cross-attention of the pass
    that read them all: [L, B, heads, T, S] for the Transformer, [B, T, S] for the RNN).

    Step t reads the pieces so far and takes the argmax at position t; the decoder is
    causal, so position t sees exactly what a step-by-step decoder would."""
    tgt_in = np.full((len(src), decode_len), PAD_ID, np.int32)
    tgt_in[:, 0] = BOS_ID
    tokens = np.full_like(tgt_in, PAD_ID)
    lengths = np.zeros(len(src), np.int32)
    live = np.ones(len(src), bool)
    for t in range(decode_len):
        live &= t < limits
        if not live.any():
            break
        logits, _ = _teacher_forced(model, params, src, src_lengths, tgt_in)
        tokens[live, t] = np.asarray(logits[:, t]).argmax(-1)[live]
        lengths[live] += 1
        live &= tokens[:, t] != EOS_ID
        if t + 1 < decode_len:
            tgt_in[:, t + 1] = tokens[:, t]
    _, weights = _teacher_forced(model, params, src, src_lengths, tgt_in)
    return tokens, lengths, np.asarray(weights)


def _teacher_forced(model, params, src, src_lengths, tgt_in):
    if isinstance(model, models.RNNSeq2Seq):
        return _rnn_teacher_forced(model, params, src, src_lengths, tgt_in)
    return _transformer_forward(model, params, src, tgt_in)


@functools.partial(jax.jit, static_argnums=0)
def _transformer_forward(model, params, src, tgt_in):
    logits, state = model.apply({'params': params}, src, tgt_in, mutable=['intermediates'])
    cross = stacked_weights(
        state['intermediates']['decoder'], model.num_decoder_layers, 'memory_attention'
    )
    return logits, cross
