"""Transformer blocks and the Transformer / GPT / BERT / ViT models on tiny sizes:
causality, padding, cached decoding, scan-over-layers, tied heads, the Transformer's
key_size and learned positions, BERT masking, ViT patches and permutation symmetry."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels import decoding, inference, models
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from seqmodels.errors import ConfigError
from seqmodels.models.bert import BERT, mask_tokens
from seqmodels.models.gpt import GPT
from seqmodels.models.transformer import Transformer
from seqmodels.models.vit import ViT, assemble_patches, extract_patches
from seqmodels.nn.masks import key_padding_mask
from seqmodels.nn.transformer import (
    DecoderBlock,
    Encoder,
    EncoderBlock,
    FeedForward,
    stack_layer_params,
    unstack_layer_params,
)

# One set of sizes everywhere: eager ops compile once per shape, and tests share them.
TINY = {'d_model': 16, 'num_heads': 2, 'd_ff': 32}
VOCAB, T = 32, 8
KEY = jax.random.key(0)


def tokens(seed, shape, vocab, low=1):
    return jnp.asarray(np.random.default_rng(seed).integers(low, vocab, size=shape), jnp.int32)


def random_variables(model, *args, seed=0, **kwargs):
    """Variables of the model's shapes drawn in NumPy: no XLA compilation for init (the
    tests' main cost on CPU), and non-zero biases and LayerNorm offsets that the
    references must get right."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == 'scale':
            value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
        elif name == 'kernel' or name == 'embedding':
            value = rng.normal(size=leaf.shape) * 0.3
        else:
            value = rng.normal(size=leaf.shape) * 0.1
        return jnp.asarray(value, leaf.dtype)

    shapes = jax.eval_shape(model.init, KEY, *args, **kwargs)
    return jax.tree_util.tree_map_with_path(draw, shapes)


def close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol, rtol=0)


# ---------------------------------------------------------------- blocks and stacks


def test_feed_forward_is_two_dense_layers_with_the_activation():
    x = jax.random.normal(KEY, (2, T, 16))
    for activation in ('relu', 'gelu'):
        ffn = FeedForward(d_ff=32, activation=activation)
        p = random_variables(ffn, x)['params']
        h = np.asarray(x, np.float64) @ p['wi']['kernel'] + p['wi']['bias']
        if activation == 'relu':
            h = np.maximum(h, 0)
        else:  # tanh approximation of GELU
            h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
        ref = h @ np.asarray(p['wo']['kernel']) + np.asarray(p['wo']['bias'])
        close(ffn.apply({'params': p}, x), ref)


def np_layer_norm(x, p, eps=1e-6):
    x = np.asarray(x, np.float64)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return normed * p['scale'] + p['bias']


def np_mha(p, x, kv, mask):
    """Concat(head_1..head_h) W^O, head_i = softmax(Q_i K_iᵀ/√d_k + mask) V_i."""
    q, k, v = (
        np.einsum('btd,dhk->bthk', inp, p[n]['kernel']) + p[n]['bias']
        for n, inp in (('query', x), ('key', kv), ('value', kv))
    )
    scores = np.einsum('bqhk,bthk->bhqt', q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask, scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    heads = np.einsum('bhqt,bthk->bqhk', w, v)
    return np.einsum('bqhk,hkd->bqd', heads, p['out']['kernel']) + p['out']['bias']


def np_ffn(p, x):
    hidden = np.maximum(x @ p['wi']['kernel'] + p['wi']['bias'], 0)
    return hidden @ p['wo']['kernel'] + p['wo']['bias']


def np_sublayer(x, f, norm_params, norm):
    """post: LN(x + f(x)); pre: x + f(LN(x))."""
    if norm == 'post':
        return np_layer_norm(x + f(x), norm_params)
    return x + f(np_layer_norm(x, norm_params))


@pytest.mark.parametrize('norm', ['post', 'pre'])
def test_blocks_match_numpy(norm):
    x = np.random.default_rng(5).normal(size=(2, T, 16)).astype(np.float32)
    memory = np.random.default_rng(6).normal(size=(2, 5, 16)).astype(np.float32)
    causal = np.tril(np.ones((T, T), bool))[None, None]
    memory_mask = np.ones((2, 1, 1, 5), bool)
    memory_mask[0, ..., 3:] = False

    def p64(variables):
        return jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])

    block = EncoderBlock(**TINY, norm=norm)
    variables = random_variables(block, x, causal)
    p = p64(variables)
    ref = np_sublayer(
        x, lambda h: np_mha(p['self_attention'], h, h, causal), p['self_attention_norm'], norm
    )
    ref = np_sublayer(ref, lambda h: np_ffn(p['ffn'], h), p['ffn_norm'], norm)
    close(block.apply(variables, x, causal), ref, atol=1e-4)

    block = DecoderBlock(**TINY, norm=norm)
    variables = random_variables(block, x, memory, causal, memory_mask)
    p = p64(variables)
    ref = np_sublayer(
        x, lambda h: np_mha(p['self_attention'], h, h, causal), p['self_attention_norm'], norm
    )
    ref = np_sublayer(
        ref,
        lambda h: np_mha(p['memory_attention'], h, memory, memory_mask),
        p['memory_attention_norm'],
        norm,
    )
    ref = np_sublayer(ref, lambda h: np_ffn(p['ffn'], h), p['ffn_norm'], norm)
    close(block.apply(variables, x, memory, causal, memory_mask), ref, atol=1e-4)


def test_encoder_scan_equals_unrolled_and_ignores_padding():
    x = jax.random.normal(KEY, (2, T, 16))
    valid = jnp.arange(T)[None] < jnp.array([[5], [T]])
    mask = key_padding_mask(valid)
    unrolled = Encoder(**TINY, num_layers=2)
    scanned = unrolled.clone(scan_layers=True)
    params = random_variables(unrolled, x, mask)['params']
    stacked = stack_layer_params(params)
    assert jax.tree.structure(stacked) == jax.tree.structure(
        jax.eval_shape(scanned.init, KEY, x, mask)['params']
    )
    assert stacked['layers']['ffn']['wi']['kernel'].shape == (2, 16, 32)
    jax.tree.map(np.testing.assert_array_equal, unstack_layer_params(stacked), params)

    out = unrolled.apply({'params': params}, x, mask)
    close(scanned.apply({'params': stacked}, x, mask), out)
    # Past a sequence's length, nothing leaks in.
    out2 = unrolled.apply({'params': params}, x.at[0, 5:].set(100.0), mask)
    close(out2[0, :5], out[0, :5])
    close(out2[1], out[1])
    assert not np.allclose(out2[0, 5:], out[0, 5:])


# ---------------------------------------------------------------- Transformer


@pytest.fixture(scope='module')
def transformer():
    model = Transformer(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        **TINY,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.1,
        max_len=16,
    )
    src, tgt = tokens(0, (2, T), VOCAB), tokens(1, (2, T), VOCAB)
    src = src.at[1, 5:].set(0)  # sequence 1 has length 5
    return model, random_variables(model, src, tgt), src, tgt


def test_transformer_shares_one_embedding_with_the_output_projection(transformer):
    model, variables, src, tgt = transformer
    params = variables['params']
    assert set(params) == {'shared_embed', 'encoder', 'decoder'}
    logits = model.apply(variables, src, tgt)
    assert logits.shape == (2, T, VOCAB)

    def decoder_states(m, src, tgt):
        memory = m.encode(src)
        y = m.embed('target', tgt, 0, deterministic=True)
        return m.decoder(y, memory, key_padding_mask(tgt != 0), key_padding_mask(src != 0))

    # Embeddings: E[token]·√d_model + PE(position) (§3.4, §3.5).
    emb = np.asarray(params['shared_embed']['embedding'], np.float64)
    pe = np.array(
        [
            [np.sin(p / 10000 ** (2 * (i // 2) / 16) + (i % 2) * np.pi / 2) for i in range(16)]
            for p in range(T)
        ]
    )
    embedded = model.apply(variables, tgt, method=lambda m, t: m.embed('target', t, 0, True))
    close(embedded, emb[np.asarray(tgt)] * 4.0 + pe, atol=1e-4)

    states = model.apply(variables, src, tgt, method=decoder_states)
    close(logits, states @ params['shared_embed']['embedding'].T, atol=1e-4)
    with pytest.raises(ValueError, match='share_embeddings'):
        jax.eval_shape(Transformer(src_vocab_size=5, tgt_vocab_size=6, **TINY).init, KEY, src, tgt)


def test_transformer_decoder_is_causal_and_ignores_source_padding(transformer):
    model, variables, src, tgt = transformer
    apply = jax.jit(functools.partial(model.apply, variables))
    logits = apply(src, tgt)
    changed = tgt.at[:, 3:].set(tgt[:, 3:] % (VOCAB - 1) + 1)
    logits2 = apply(src, changed)
    close(logits2[:, :3], logits[:, :3])
    assert not np.allclose(logits2[:, 3:], logits[:, 3:])  # the change is visible later

    # More padding after the source (all ids 0) changes nothing...
    padded = jnp.concatenate([src, jnp.zeros((2, 3), jnp.int32)], axis=1)
    close(apply(padded, tgt), logits)
    # ...while a real source token does.
    assert not np.allclose(apply(src.at[1, 5].set(3), tgt)[1], logits[1])

    train = model.apply(variables, src, tgt, deterministic=False, rngs={'dropout': KEY})
    assert not np.allclose(train, logits)


def assert_cached_decoding_equals_full_forward(model, variables, src, tgt, d_k):
    full = model.apply(variables, src, tgt)
    memory = model.apply(variables, src, method=Transformer.encode)
    # jit: one compilation for all steps (an eager nn.scan recompiles at every call).
    step = jax.jit(functools.partial(model.apply, method=Transformer.decode_step))
    cache = model.init_cache(2, 12)
    # [batch, layers, max_len, heads, d_k]
    assert cache['k'].shape == (2, model.num_decoder_layers, 12, model.num_heads, d_k)
    outs = []
    for t in range(T):
        logits, cache = step(variables, memory, src != 0, tgt[:, t : t + 1], cache, t)
        outs.append(logits)
    close(jnp.concatenate(outs, axis=1), full)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_transformer_cached_decoding_equals_full_forward(transformer, scan_layers):
    model, variables, src, tgt = transformer
    if scan_layers:
        model = model.clone(scan_layers=True)
        variables = {'params': stack_layer_params(variables['params'])}
    assert_cached_decoding_equals_full_forward(model, variables, src, tgt, d_k=8)


# ------------------------------------------- Transformer: key_size and learned positions

H, D_K = 3, 4  # h · d_k = 12 != d_model = 16, and 16 is not divisible by h


@pytest.fixture(scope='module')
def keyed():
    """Both Table 3 keys at once: key_size (row B) and learned positions (row E)."""
    model = Transformer(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=16,
        num_heads=H,
        key_size=D_K,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=2,
        dropout=0.0,
        max_len=16,
        position_embedding='learned',
    )
    src, tgt = tokens(0, (2, T), VOCAB), tokens(1, (2, T), VOCAB)
    src = src.at[1, 5:].set(0)
    return model, random_variables(model, src, tgt), src, tgt


def param_shapes(model):
    src = jnp.ones((1, T), jnp.int32)
    return jax.eval_shape(model.init, KEY, src, src)['params']


def size(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_key_size_sets_the_width_of_the_heads():
    d, h, vocab, d_ff = 16, 2, VOCAB, 32
    model = Transformer(
        VOCAB, VOCAB, d_model=d, num_heads=h, d_ff=d_ff, num_encoder_layers=2, num_decoder_layers=2
    )
    # Per attention sublayer: W^Q, W^K, W^V (d x h·d_k) and W^O (h·d_k x d), the paper's
    # 4 · d_model · h · d_k, plus biases h·d_k for each of Q, K, V and d for the output.
    # 2 encoder layers have one, 2 decoder layers two (self and cross).
    sublayers = 2 + 2 * 2
    ffn, norm = 2 * d * d_ff + d_ff + d, 2 * d

    def expected(d_k):
        attention = 4 * d * h * d_k + 3 * h * d_k + d
        return vocab * d + 2 * (ffn + 2 * norm) + 2 * (ffn + 3 * norm) + sublayers * attention

    default = param_shapes(model)
    assert size(default) == expected(d // h) == 11_648
    # key_size=0 is d_model / num_heads: the same tree and shapes as before the key.
    same = param_shapes(model.clone(key_size=d // h))
    assert jax.tree.structure(same) == jax.tree.structure(default)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, same, default)))
    for d_k in (4, 12):
        params = param_shapes(model.clone(key_size=d_k))
        attention = params['decoder']['layers_1']['memory_attention']
        assert attention['query']['kernel'].shape == (d, h, d_k)
        assert attention['out']['kernel'].shape == (h, d_k, d)
        assert size(params) == expected(d_k)


def test_key_size_in_the_config_checks():
    config = {'name': 'transformer', 'src_vocab_size': VOCAB, 'tgt_vocab_size': VOCAB}
    config.update(d_model=16, num_heads=3, key_size=D_K)
    models.check_config(config)  # d_model need not divide by h when d_k is given
    with pytest.raises(ConfigError, match=r'model.key_size=-1: must be a non-negative'):
        models.check_config({**config, 'key_size': -1})
    with pytest.raises(ConfigError, match=r'model.d_model=16: .*num_heads=3 .*key_size'):
        models.check_config({**config, 'key_size': 0})
    with pytest.raises(ConfigError, match=r'model.position_embedding=.rope.'):
        models.check_config({**config, 'position_embedding': 'rope'})


def test_learned_positions_add_one_table_per_side():
    model = Transformer(VOCAB, VOCAB, **TINY, num_encoder_layers=1, num_decoder_layers=1)
    sinusoidal = param_shapes(model)
    learned = param_shapes(model.clone(position_embedding='learned'))
    for name in ('src_position_embed', 'tgt_position_embed'):
        assert learned[name]['embedding'].shape == (model.max_len, 16)
    assert size(learned) - size(sinusoidal) == 2 * model.max_len * 16


def test_learned_positions_are_embedded_and_break_permutation_symmetry(keyed):
    model, variables, src, tgt = keyed
    p = jax.tree.map(np.asarray, variables['params'])
    emb = p['shared_embed']['embedding']

    # (E[token] + P[position])·√d_model, each side from its own table; the target's
    # from its first position on, as a decoding step reads it.
    def embed(v, tokens, side, first):
        return model.apply(v, tokens, method=lambda m, t: m.embed(side, t, first, True))

    close(
        embed(variables, src, 'source', 0),
        (emb[src] + p['src_position_embed']['embedding'][:T]) * 4,
    )
    close(
        embed(variables, tgt[:, :2], 'target', 3),
        (emb[tgt[:, :2]] + p['tgt_position_embed']['embedding'][3:5]) * 4,
    )

    # Self-attention alone is permutation-equivariant: without position information the
    # encoder's output for a permuted source is the permuted output. The learned table
    # is what breaks that.
    encode = jax.jit(functools.partial(model.apply, method=Transformer.encode))
    perm = jnp.array([3, 0, 7, 1, 6, 2, 5, 4])
    full = tokens(2, (2, T), VOCAB)  # no padding
    assert not np.allclose(
        encode(variables, full[:, perm]), encode(variables, full)[:, perm], atol=1e-3
    )
    params = dict(variables['params'])
    params['src_position_embed'] = jax.tree.map(jnp.zeros_like, params['src_position_embed'])
    no_positions = {'params': params}
    close(encode(no_positions, full[:, perm]), encode(no_positions, full)[:, perm], atol=1e-4)


def test_key_size_and_learned_positions_decode_with_the_cache(keyed):
    model, variables, src, tgt = keyed
    assert_cached_decoding_equals_full_forward(model, variables, src, tgt, d_k=D_K)


def test_greedy_and_beam_search_agree_with_the_full_forward(keyed):
    """Through the translation adapter: greedy decoding is the teacher-forced argmax, and
    a beam of 2 (whose caches are tiled and re-indexed between beams) scores each
    hypothesis with its teacher-forced log-probability."""
    model, variables, _, _ = keyed
    rng = np.random.default_rng(1)
    src_lengths = np.array([2, 5, 3, 6], np.int32)
    src = np.zeros((4, 6), np.int32)
    for row, n in enumerate(src_lengths):
        src[row, : n - 1] = rng.integers(4, VOCAB, n - 1)
        src[row, n - 1] = EOS_ID
    extra, max_len, k = 3, 9, 2
    limit = np.minimum(src_lengths + extra, max_len)

    @jax.jit  # one compilation for everything
    def run(p, s, n):
        greedy = inference.decode(
            model, p, s, n, search='greedy', max_decode_extra=extra, max_decode_len=max_len
        )
        adapter = inference.TransformerAdapter
        beams, scores = decoding.beam_search(
            functools.partial(adapter.step, model, p),
            adapter.start(model, p, s, n, max_len),
            jnp.full((len(s),), BOS_ID),
            k,
            jnp.minimum(n + extra, max_len),
            EOS_ID,
            alpha=0.0,
            max_decode_len=max_len,
            pad_id=PAD_ID,
        )
        # One teacher-forced pass over the greedy rows and the beams.
        y = jnp.concatenate([greedy, beams.reshape(-1, max_len)])
        tgt_in = jnp.concatenate([jnp.full((len(y), 1), BOS_ID), y[:, :-1]], axis=1)
        logits = model.apply({'params': p}, jnp.concatenate([s, jnp.repeat(s, k, 0)]), tgt_in)
        return y, scores.reshape(-1), jax.nn.log_softmax(logits)

    y, scores, log_probs = map(np.asarray, run(variables['params'], src, src_lengths))
    rows = len(src)
    limits = np.concatenate([limit, np.repeat(limit, k)])
    for i in range(len(y)):
        # Generated tokens, EOS included (the decoders pad after EOS and after the limit).
        eos = y[i, : limits[i]] == EOS_ID
        n = int(eos.argmax()) + 1 if eos.any() else limits[i]
        # The teacher-forced pass would mask a generated PAD.
        assert not (y[i, :n] == PAD_ID).any()
        if i < rows:
            np.testing.assert_array_equal(log_probs[i, :n].argmax(-1), y[i, :n])
        else:
            score = log_probs[i, np.arange(n), y[i, :n]].sum()
            np.testing.assert_allclose(score, scores[i - rows], atol=1e-4)


# ---------------------------------------------------------------- GPT


@pytest.fixture(scope='module', params=['post', 'pre'])
def gpt(request):
    model = GPT(
        vocab_size=VOCAB, max_len=12, **TINY, num_layers=2, norm=request.param, num_classes=3
    )
    x = tokens(2, (2, T), VOCAB)
    return model, random_variables(model, x), x


def test_gpt_is_causal_and_decodes_with_the_cache(gpt):
    model, variables, x = gpt
    apply = jax.jit(functools.partial(model.apply, variables))
    logits = apply(x)
    assert logits.shape == (2, T, VOCAB)
    for t in (0, 4):
        changed = x.at[:, t + 1 :].set(x[:, t + 1 :] % (VOCAB - 1) + 1)
        out = apply(changed)
        close(out[:, : t + 1], logits[:, : t + 1])
        assert not np.allclose(out[:, t + 1 :], logits[:, t + 1 :])

    # Cached decoding: unrolled layers for GPT-1, scanned layers for GPT-2.
    if model.norm == 'pre':
        model = model.clone(scan_layers=True)
        variables = {'params': stack_layer_params(variables['params'])}
        close(model.apply(variables, x), logits)
    step = jax.jit(functools.partial(model.apply, method=GPT.decode_step))
    cache = model.init_cache(2)
    assert cache['k'].shape == (2, 2, 12, 2, 8)
    out, cache = model.apply(variables, x[:, :3], cache, 0, method=GPT.decode_step)  # a prompt
    outs = [out]
    for t in range(3, T):
        out, cache = step(variables, x[:, t : t + 1], cache, t)
        outs.append(out)
    close(jnp.concatenate(outs, axis=1), logits)


def test_gpt_tied_head_and_classifier_on_the_last_token(gpt):
    model, variables, x = gpt
    params = variables['params']
    assert set(params) == {'token_embed', 'position_embed', 'decoder', 'classifier'}
    lm, cls = model.apply(variables, x, method=GPT.classify)
    close(lm, model.apply(variables, x))
    assert cls.shape == (2, 3)
    states = model.apply(variables, x, True, method=GPT.hidden_states)
    close(lm, states @ params['token_embed']['embedding'].T, atol=1e-4)
    close(cls, states[:, -1] @ params['classifier']['kernel'] + params['classifier']['bias'])
    # With last_positions, a sequence that ends early is classified on its own last token.
    _, cls_at = model.apply(variables, x, jnp.array([4, T - 1]), method=GPT.classify)
    close(cls_at[0], states[0, 4] @ params['classifier']['kernel'] + params['classifier']['bias'])
    close(cls_at[1], cls[1])


def test_gpt_initialisation(gpt):
    model, _, x = gpt
    params = model.init(KEY, x)['params']
    layer = params['decoder']['layers_0']
    # GPT-2 shrinks the projections into the residual stream by 1/√(2·num_layers).
    residual_std = 0.02 / np.sqrt(2 * model.num_layers) if model.norm == 'pre' else 0.02
    for kernel in (layer['ffn']['wo']['kernel'], layer['self_attention']['out']['kernel']):
        assert abs(np.std(kernel) / residual_std - 1) < 0.15
    assert abs(np.std(layer['ffn']['wi']['kernel']) / 0.02 - 1) < 0.15
    assert abs(np.std(params['token_embed']['embedding']) / 0.02 - 1) < 0.15
    assert ('final_norm' in params['decoder']) == (model.norm == 'pre')


# ---------------------------------------------------------------- BERT


def test_bert_heads_and_padding_mask():
    model = BERT(vocab_size=VOCAB, max_len=16, **TINY, num_layers=2)
    x = tokens(3, (2, T), VOCAB).at[0, 6:].set(0)  # sequence 0 has length 6
    segments = jnp.zeros((2, T), jnp.int32).at[:, 4:].set(1)
    variables = random_variables(model, x, segments)
    params = variables['params']
    (mlm, nsp), state = model.apply(variables, x, segments, mutable=['intermediates'])
    assert mlm.shape == (2, T, VOCAB) and nsp.shape == (2, 2)
    for layer in state['intermediates']['encoder'].values():
        weights = layer['self_attention']['attention_weights'][0]
        assert np.all(weights[0, :, :, 6:] == 0) and np.all(weights[1] > 0)

    # The MLM head: transform (dense, GELU, LN), then the token embedding transposed + bias.
    h, pooled = model.apply(variables, x, segments, method=BERT.encode)
    head = params['mlm_head']
    t = np.asarray(h, np.float64) @ head['transform']['kernel'] + head['transform']['bias']
    t = 0.5 * t * (1 + np.tanh(np.sqrt(2 / np.pi) * (t + 0.044715 * t**3)))
    t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, keepdims=True) + 1e-12)
    t = t * head['transform_norm']['scale'] + head['transform_norm']['bias']
    close(
        mlm, t @ np.asarray(params['token_embed']['embedding']).T + head['output_bias'], atol=1e-4
    )
    pooled_ref = np.tanh(
        np.asarray(h)[:, 0] @ params['pooler']['kernel'] + params['pooler']['bias']
    )
    close(pooled, pooled_ref)
    close(nsp, pooled_ref @ params['nsp_head']['kernel'] + params['nsp_head']['bias'])

    # Scoring only some positions gives the same scores.
    positions = jnp.array([[1, 5], [0, 7]])
    mlm_at, _ = model.apply(variables, x, segments, positions)
    close(mlm_at, jnp.take_along_axis(mlm, positions[..., None], axis=1))
    # Segments are embedded.
    assert not np.allclose(model.apply(variables, x)[0], mlm)


def test_bert_mask_tokens_statistics():
    rng = np.random.default_rng(0)
    vocab, mask_id, special = 1000, 103, [0, 101, 102, 103]
    toks = rng.integers(0, vocab, size=(1000, 1024)).astype(np.int32)  # ~1M tokens
    toks[:, 0], toks[:, -1] = 101, 102  # [CLS] ... [SEP]
    masked, targets, weights = mask_tokens(rng, toks, vocab, mask_id, special)

    is_special = np.isin(toks, special)
    chosen = weights == 1.0
    assert masked.shape == toks.shape and np.array_equal(targets, toks)
    assert not chosen[is_special].any()
    assert np.array_equal(masked[~chosen], toks[~chosen])  # unchosen positions untouched
    assert abs(chosen.sum() / (~is_special).sum() - 0.15) < 0.003
    n = chosen.sum()
    to_mask = masked[chosen] == mask_id
    unchanged = masked[chosen] == toks[chosen]
    random = ~to_mask & ~unchanged
    assert abs(to_mask.sum() / n - 0.8) < 0.01
    assert abs(random.sum() / n - 0.1) < 0.01
    assert abs(unchanged.sum() / n - 0.1) < 0.01
    assert not np.isin(masked[chosen][random], special).any()
    # Random replacements cover the ordinary vocabulary.
    assert len(np.unique(masked[chosen][random])) > 0.9 * (vocab - len(special))


# ---------------------------------------------------------------- ViT


def test_patches_round_trip_exactly_in_row_major_order():
    images = np.random.default_rng(4).normal(size=(2, 8, 12, 3)).astype(np.float32)
    patches = np.asarray(extract_patches(images, 4))
    assert patches.shape == (2, 6, 48)
    # Patch (row 1, column 2) is grid index 1 * 3 + 2.
    np.testing.assert_array_equal(patches[:, 5], images[:, 4:8, 8:12].reshape(2, -1))
    np.testing.assert_array_equal(assemble_patches(patches, images.shape), images)
    with pytest.raises(ValueError):
        extract_patches(images, 5)


@pytest.mark.parametrize('pool', ['cls', 'gap'])
def test_vit_is_permutation_invariant_only_without_position_embeddings(pool):
    images = jax.random.normal(KEY, (2, 8, 8, 3))
    patches = extract_patches(images, 4)
    permuted = assemble_patches(patches[:, jnp.array([3, 0, 2, 1])], images.shape)
    position = {'cls': 'learned', 'gap': 'sincos2d'}[pool]
    for use_pe in (False, True):
        model = ViT(
            image_size=8,
            patch_size=4,
            num_classes=5,
            **TINY,
            num_layers=2,
            pool=pool,
            use_position_embeddings=use_pe,
            position_embedding=position,
        )
        variables = random_variables(model, images)
        apply = jax.jit(functools.partial(model.apply, variables))
        logits, logits_p = apply(images), apply(permuted)
        assert logits.shape == (2, 5)
        if use_pe:
            assert not np.allclose(logits, logits_p, atol=1e-3)
        else:
            close(logits_p, logits, atol=1e-4)


def test_vit_options():
    images = jnp.zeros((1, 8, 8, 3))
    vit = ViT(
        image_size=8,
        patch_size=4,
        num_classes=5,
        **TINY,
        num_layers=2,
        position_embedding='sincos2d',
        representation_size=6,
    )
    params = jax.eval_shape(vit.init, KEY, images)['params']
    assert 'position_embed' not in params and params['pre_logits']['kernel'].shape == (16, 6)
    assert (
        'position_embed'
        in jax.eval_shape(vit.clone(position_embedding='learned').init, KEY, images)['params']
    )
    with pytest.raises(ValueError, match='8x8'):
        jax.eval_shape(vit.init, KEY, jnp.zeros((1, 12, 12, 3)))
