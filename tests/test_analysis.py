"""seqmodels.analysis: attention maps are the softmax rows the model used, checked against
NumPy formulas and step-by-step decoding; ViT's attention distance, position similarity
and filter components by hand; the translation driver's attention mode."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import common, translation
from seqmodels import analysis, decoding, inference, models, runs, training
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, UNK_ID, train_sentencepiece
from seqmodels.data.translation import tokenizer_paths
from seqmodels.nn.position import sinusoidal_position_encoding
from tests.test_translation import ANIMALS, COLORS, VERBS, tiny_config

VOCAB = 13


def random_params(model, *inputs, scale=0.5, seed=0):
    """Parameters of `model` drawn from N(0, scale²), shaped by tracing its init (which
    compiles nothing)."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *inputs))['params']
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (scale * rng.normal(size=s.shape)).astype(s.dtype), shapes)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(scope='module')
def transformer():
    model = models.Transformer(
        VOCAB,
        VOCAB,
        d_model=16,
        num_heads=2,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=2,
        dropout=0.0,
        max_len=16,
    )
    tokens = jnp.ones((1, 4), jnp.int32)
    return model, random_params(model, tokens, tokens)


SRC = np.array([[5, 6, 7, 8, 9, EOS_ID], [10, 11, EOS_ID, PAD_ID, PAD_ID, PAD_ID]], np.int32)
SRC_LENGTHS = np.array([6, 3], np.int32)
TGT_IN = np.array([[BOS_ID, 4, 5, 6, 7], [BOS_ID, 8, 9, PAD_ID, PAD_ID]], np.int32)


def test_encoder_attention_is_the_softmax_of_the_papers_formula(transformer):
    model, params = transformer
    weights = np.asarray(analysis.encoder_attention(model, params, SRC))
    assert weights.shape == (1, 2, 2, 6, 6)  # [layers, batch, heads, queries, keys]
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[:, 1, :, :, 3:] == 0.0)  # padding keys: exactly zero

    # Layer 0 by hand: x = E[src]·√d_model + PE; softmax(Q Kᵀ / √d_k) over real keys.
    p = jax.tree.map(np.asarray, params)
    x = p['shared_embed']['embedding'][SRC] * 4.0 + sinusoidal_position_encoding(16, 16)[:6]
    attention = p['encoder']['layers_0']['self_attention']
    q = np.einsum('bsd,dhk->bshk', x, attention['query']['kernel']) + attention['query']['bias']
    k = np.einsum('bsd,dhk->bshk', x, attention['key']['kernel']) + attention['key']['bias']
    logits = np.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(8)
    logits = np.where((SRC != PAD_ID)[:, None, None, :], logits, -np.inf)
    np.testing.assert_allclose(weights[0], softmax(logits), atol=1e-5)


def test_decoder_attention_is_what_step_by_step_decoding_uses(transformer):
    model, params = transformer
    self_weights, cross = map(np.asarray, analysis.decoder_attention(model, params, SRC, TGT_IN))
    assert self_weights.shape == (2, 2, 2, 5, 5) and cross.shape == (2, 2, 2, 5, 6)
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
    assert np.all(cross[:, 1, :, :, 3:] == 0.0)
    assert np.all(np.triu(self_weights, k=1) == 0.0)  # causal
    assert np.all(self_weights[:, 1, :, :, 3:] == 0.0)  # target padding

    # Decoding one position at a time with the cache sows the same cross-attention rows
    # (where the input is not padding: decoding never feeds padding).
    @jax.jit
    def decode_rows(params):
        variables = {'params': params}
        memory = model.apply(variables, SRC, method=models.Transformer.encode)

        def step(cache, t):
            (_, cache), state = model.apply(
                variables,
                memory,
                SRC != PAD_ID,
                jax.lax.dynamic_slice_in_dim(TGT_IN, t, 1, 1),
                cache,
                t,
                method=models.Transformer.decode_step,
                mutable=['intermediates'],
            )
            decoder = state['intermediates']['decoder']
            return cache, jnp.stack(
                [
                    decoder[f'layers_{i}']['memory_attention']['attention_weights'][0][:, :, 0]
                    for i in range(2)
                ]
            )

        return jax.lax.scan(step, model.init_cache(2, 5), jnp.arange(5))[1]

    rows = np.asarray(decode_rows(params)).transpose(0, 2, 1, 3, 4)  # [T, B, layers, heads, S]
    real = (TGT_IN != PAD_ID).T  # [T, B]
    np.testing.assert_allclose(cross.transpose(3, 1, 0, 2, 4)[real], rows[real], atol=1e-5)
    maps = analysis.transformer_attention(model, params, SRC, TGT_IN)
    np.testing.assert_allclose(
        maps['encoder'], analysis.encoder_attention(model, params, SRC), atol=1e-5
    )

    mean = np.asarray(analysis.cross_attention(model, params, SRC, SRC_LENGTHS, TGT_IN))
    np.testing.assert_allclose(mean, cross[-1].mean(axis=1), atol=1e-6)
    one = np.asarray(analysis.cross_attention(model, params, SRC, SRC_LENGTHS, TGT_IN, 0, 1))
    np.testing.assert_allclose(one, cross[0, :, 1], atol=1e-6)


def test_rnn_attention_is_bahdanaus_alpha_of_the_decoder_states():
    model = models.RNNSeq2Seq(VOCAB, VOCAB, embed_dim=8, hidden_size=16, cell='gru')
    params = random_params(model, SRC, SRC_LENGTHS, TGT_IN)
    weights = np.asarray(analysis.rnn_attention(model, params, SRC, SRC_LENGTHS, TGT_IN))
    assert weights.shape == (2, 5, 6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(weights[1, :, 3:] == 0.0)

    # alpha_ij = softmax_j(v · tanh(W s_{i-1} + U h_j)) in NumPy, with the decoder states
    # s_{i-1} from running decode_step and the encoder states h_j from encode.
    @jax.jit
    def states(params):  # s_{i-1} for every i, by running decode_step; and h_j
        variables = {'params': params}
        memory = model.apply(variables, SRC, SRC_LENGTHS, method=models.RNNSeq2Seq.encode)

        def step(carry, token):
            s = model.apply(variables, carry, method=lambda m, c: m.decoder.hidden(c))
            _, carry = model.apply(
                variables, memory, carry, token, method=models.RNNSeq2Seq.decode_step
            )
            return carry, s

        return jax.lax.scan(step, memory['decoder_carry'], TGT_IN.T)[1], memory['values']

    s, h = jax.tree.map(np.asarray, states(params))
    a = jax.tree.map(np.asarray, params['attention'])
    e = np.tanh((s @ a['W']['kernel'])[:, :, None] + (h @ a['U']['kernel'])[None])
    e = np.where(SRC != PAD_ID, (e @ a['v']['kernel'])[..., 0], -np.inf)  # [T, B, S]
    np.testing.assert_allclose(weights, softmax(e).transpose(1, 0, 2), atol=1e-5)


# --------------------------------------------------------------------------- #
# ViT's Figure 7, positions, sampling.


def test_mean_attention_distance_by_hand():
    # A 2x2 grid of 4-pixel patches plus [class]: patch 0 is 4 px from patches 1 and 2
    # and 4·√2 px from patch 3.
    uniform = np.full((1, 1, 1, 5, 5), 0.2)  # [layers, batch, heads, T, T]
    self_only = np.eye(5)[None, None, None]
    got = analysis.mean_attention_distance(
        np.concatenate([uniform, self_only], axis=2), grid_size=2, patch_size=4
    )
    # Uniform over the patches (the [class] column dropped, rows renormalised).
    np.testing.assert_allclose(got, [[(4 + 4 + 4 * math.sqrt(2)) / 4, 0.0]])
    no_cls = analysis.mean_attention_distance(uniform[..., 1:, 1:] * 1.25, 2, 4, has_cls=False)
    np.testing.assert_allclose(no_cls, got[:, :1])


def test_sinusoidal_dot_product_depends_only_on_the_offset():
    length, d = 20, 16
    sim = analysis.position_similarity(sinusoidal_position_encoding(length, d), kind='dot')
    # PE_p · PE_q = Σ_i sin(pω_i)sin(qω_i) + cos(pω_i)cos(qω_i) = Σ_i cos((p - q) ω_i).
    omega = 1.0 / 10000 ** (np.arange(0, d, 2) / d)
    offsets = np.arange(length)[:, None] - np.arange(length)[None]
    np.testing.assert_allclose(sim, np.cos(offsets[..., None] * omega).sum(-1), atol=1e-5)
    cosine = analysis.position_similarity(np.array([[1.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_allclose(cosine, [[1.0, 0.6], [0.6, 1.0]])


def test_patch_embedding_components_are_the_filters_principal_axes():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(2, 2, 1, 30)) * np.array([3.0, 1.0, 0.5, 0.1]).reshape(2, 2, 1, 1)
    components, explained = analysis.patch_embedding_components(kernel, num_components=3)
    assert components.shape == (3, 2, 2, 1)
    flat = components.reshape(3, 4)
    np.testing.assert_allclose(flat @ flat.T, np.eye(3), atol=1e-10)
    filters = kernel.reshape(4, 30).T
    values, vectors = np.linalg.eigh(np.cov(filters, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1][:3]].T
    np.testing.assert_allclose(np.abs(np.sum(flat * top, axis=1)), 1.0, atol=1e-8)
    np.testing.assert_allclose(explained, np.sort(values)[::-1][:3] / values.sum(), rtol=1e-8)


def test_sampling_distribution_is_what_sample_next_draws_from():
    logits = np.log(np.array([0.05, 0.1, 0.15, 0.3, 0.4]))
    np.testing.assert_allclose(
        analysis.sampling_distribution(logits, top_k=2), [0, 0, 0, 3 / 7, 4 / 7], atol=1e-6
    )
    np.testing.assert_allclose(
        analysis.sampling_distribution(logits, top_p=0.6), [0, 0, 0, 3 / 7, 4 / 7], atol=1e-6
    )
    np.testing.assert_allclose(
        analysis.sampling_distribution(logits, temperature=0), [0, 0, 0, 0, 1]
    )
    tempered = analysis.sampling_distribution(logits, temperature=0.5)
    np.testing.assert_allclose(tempered, softmax(2 * logits), atol=1e-6)
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = jax.vmap(
        lambda k: decoding.sample_next(jnp.asarray(logits, jnp.float32)[None], k, 0.5, None, 0.9)
    )(keys)[:, 0]
    frequencies = np.bincount(np.asarray(draws), minlength=5) / 4000
    np.testing.assert_allclose(
        frequencies, analysis.sampling_distribution(logits, 0.5, top_p=0.9), atol=0.03
    )


# --------------------------------------------------------------------------- #
# Translation runs: the library function and the driver's mode.


def write_run(workdir, config, params, vocab=None, tokenizer=None):
    """A workdir as a training run leaves it (config.json, checkpoints/, and vocab.json
    or the joint SentencePiece model), holding `params`, without training."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
        json.dump(config.to_dict(), f)
    if vocab is not None:
        vocab.save(os.path.join(workdir, 'vocab.json'))
    if tokenizer is not None:
        path = tokenizer_paths(workdir, True, config.source_lang, config.target_lang)[0]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(tokenizer.model_proto)
    state = training.init_train_state(lambda key: params, optax.sgd(0.1), seed=0)
    checkpointer = training.Checkpointer(workdir, async_save=False)
    checkpointer.save(state)
    checkpointer.close()
    return workdir


@pytest.fixture(scope='module')
def translation_run(tmp_path_factory):
    """A tiny Transformer run with random weights and a SentencePiece
    vocabulary of English and German animal sentences."""
    root = tmp_path_factory.mktemp('attention')
    sentences = [f'the {c} {a} {v} .' for c, _ in COLORS for a, _ in ANIMALS for v, _ in VERBS]
    sentences += [f'die {c} {a} {v} .' for _, c in COLORS for _, a in ANIMALS for _, v in VERBS]
    tokenizer = train_sentencepiece(sentences, vocab_size=60)
    config = tiny_config(root)
    config.model.src_vocab_size = config.model.tgt_vocab_size = tokenizer.vocab_size
    model = models.build_model(config.model)
    params = random_params(model, *models.example_inputs(config.model, model))
    return write_run(str(root / 'run'), config, params, tokenizer=tokenizer)


def test_translation_attention_maps_the_greedy_translation(translation_run):
    run = runs.restore(translation_run)
    sentences = ['the red duck eats .', '', 'the blue cat runs in the old barn ?']
    maps = analysis.translation_attention(run, sentences)
    hypotheses, _ = inference.Translator.from_config(
        run.config, run.model, run.source_tokenizer, run.target_tokenizer
    ).translate(run.params, sentences, beam_size=1)
    assert [m.index for m in maps] == [0, 2]  # blank lines have no map
    for m in maps:
        assert m.translation == hypotheses[m.index]
        # SentencePiece's pieces, '<unk>' for the unknown '?', and the end of sentence.
        pieces = [
            p if i != UNK_ID else '<unk>'
            for p, i in zip(
                run.source_tokenizer.pieces(m.sentence), run.source_tokenizer.encode(m.sentence)
            )
        ]
        assert m.source == pieces + ['</s>']
        assert m.weights.shape == (len(m.target), len(m.source))
        np.testing.assert_allclose(m.weights.sum(-1), 1.0, atol=1e-5)
        assert run.target_tokenizer.decode(m.target_ids) == m.translation
    # A map is the cross-attention of reading its own pieces, alone (the other sentences
    # and the batch's padding change nothing).
    m = maps[1]
    alone = analysis.cross_attention(
        run.model,
        run.params,
        np.array([m.source_ids]),
        None,
        np.array([[BOS_ID] + m.target_ids[:-1]]),
    )
    np.testing.assert_allclose(m.weights, np.asarray(alone)[0], atol=1e-5)
    with pytest.raises(analysis.ChoiceError, match='layer must lie in 0..0'):
        analysis.translation_attention(run, sentences, layer=1)


def test_attention_mode_writes_one_heatmap_per_line(translation_run, tmp_path):
    source = tmp_path / 'source.en'
    # The sentences of the test above: the decoder compiled there serves here too.
    source.write_text('the red duck eats .\n\nthe blue cat runs in the old barn ?\n', 'utf-8')
    paths = translation.attention(translation_run, str(source), head=1)
    folder = os.path.join(translation_run, 'attention')
    assert paths == [os.path.join(folder, '0.png'), os.path.join(folder, '2.png')]
    assert all(os.path.getsize(p) > 1000 for p in paths)
    with pytest.raises(common.UsageError, match='--attention_head must lie in 0..1, got 2'):
        translation.attention(translation_run, str(source), head=2)
    with pytest.raises(common.UsageError, match='--attention_layer must lie in 0..0, got 1'):
        translation.attention(translation_run, str(source), layer=1)
