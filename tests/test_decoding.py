"""Decoding against NumPy float64 references on toy step functions.

Toy vocabulary everywhere: 0 = PAD/BOS (never predicted), 1 = EOS, 2.. = regular.
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from seqmodels import decoding

PAD, EOS = 0, 1
NEVER = -1e9  # logit for PAD so that it is never generated


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_lp(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


def chi_square_ok(samples, probs, alpha=1e-4):
    """Counts of `samples` fit `probs`; impossible tokens must never appear."""
    probs = np.asarray(probs, np.float64)
    counts = np.bincount(np.asarray(samples).ravel(), minlength=probs.size)
    assert counts[probs == 0].sum() == 0, (counts, probs)
    support = probs > 0
    expected = counts.sum() * probs[support]
    stat = ((counts[support] - expected) ** 2 / expected).sum()
    dof = max(int(support.sum()) - 1, 1)
    return stat < stats.chi2.ppf(1 - alpha, dof), (stat, counts, expected)


# ---------------------------------------------------------------------------
# Toy step functions.


def trigram_tables(rng, num_models, vocab, scale=2.0, eos_bias=0.0):
    """Random next-token logits given (previous token, current token), per model."""
    t = rng.normal(size=(num_models, vocab, vocab, vocab)) * scale
    t[..., PAD] = NEVER
    t[..., EOS] += eos_bias
    return t.astype(np.float32)


def trigram_step(tables):
    """State: which model each row uses and the token before the current one."""

    def step(tokens, state):
        logits = tables[state['model'], state['prev'], tokens]
        return logits, {'model': state['model'], 'prev': tokens}

    return step


def trigram_state(models, prev=None):
    models = jnp.asarray(models, jnp.int32)
    prev = jnp.zeros_like(models) if prev is None else jnp.asarray(prev, jnp.int32)
    return {'model': models, 'prev': prev}


def np_trigram_logp(table, prev, cur):
    return np_log_softmax(table[prev, cur])


class TinyGRULM(nn.Module):
    vocab: int
    features: int = 16

    @nn.compact
    def __call__(self, tokens, carry):
        x = nn.Embed(self.vocab, self.features)(tokens)
        carry, h = nn.GRUCell(self.features)(carry, x)
        logits = nn.Dense(self.vocab, kernel_init=nn.initializers.normal(1.0))(h)
        # PAD is never a prediction; a nudge to EOS makes some rows end early.
        return logits.at[:, PAD].set(NEVER).at[:, EOS].add(1.5), carry


GRU_VOCAB, GRU_FEATURES = 8, 16


@functools.cache
def gru_params():
    model = TinyGRULM(GRU_VOCAB, GRU_FEATURES)
    carry = jnp.zeros((1, GRU_FEATURES))
    return model.init(jax.random.key(0), jnp.zeros((1,), jnp.int32), carry)


def gru_step(params):
    return lambda tokens, carry: TinyGRULM(GRU_VOCAB, GRU_FEATURES).apply(params, tokens, carry)


# ---------------------------------------------------------------------------
# Logit filters and single-step sampling.


def test_top_k_keeps_exactly_k():
    rng = np.random.default_rng(0)
    # Small integers make ties common, the case where a threshold would keep too many.
    logits = rng.integers(-3, 3, size=(64, 10)).astype(np.float32)
    for k in (1, 3, 7, 10, 15):
        out = np.asarray(decoding.apply_top_k(jnp.asarray(logits), k))
        kept = np.isfinite(out)
        assert (kept.sum(-1) == min(k, 10)).all()
        assert (out[kept] == logits[kept]).all()
        assert (out[~kept] == -np.inf).all()
        for row in range(len(logits)):
            if k < 10:
                assert logits[row][kept[row]].min() >= logits[row][~kept[row]].max()


def np_top_p_mask(logits, p):
    """Smallest set of most probable tokens whose probability sums to >= p."""
    probs = np.exp(np_log_softmax(logits))
    order = np.argsort(-probs, kind='stable')
    count = np.searchsorted(np.cumsum(probs[order]), p) + 1
    mask = np.zeros(probs.shape, bool)
    mask[order[: min(count, probs.size)]] = True
    return mask


def test_top_p_keeps_smallest_nucleus():
    rng = np.random.default_rng(1)
    rows, ps = [], []
    for _ in range(40):
        logits = rng.normal(size=12) * 2
        sorted_probs = np.sort(np.exp(np_log_softmax(logits)))[::-1]
        cum = np.cumsum(sorted_probs)
        # p strictly between two partial sums, so float32 rounding cannot move the cut;
        # plus the exact edges p = 1 (keep all) and a tiny p (keep only the top token).
        j = rng.integers(0, 11)
        for p in ((cum[j] + cum[j + 1]) / 2 if j else cum[0] / 2, 1.0, 1e-6):
            rows.append(logits)
            ps.append(p)
    logits = np.asarray(rows, np.float32)
    ps = np.asarray(ps, np.float32)
    out = np.asarray(jax.jit(jax.vmap(decoding.apply_top_p))(jnp.asarray(logits), jnp.asarray(ps)))
    for row, p, got in zip(logits, ps, out):
        want = np_top_p_mask(row, float(p))
        np.testing.assert_array_equal(np.isfinite(got), want)
        np.testing.assert_array_equal(got[want], row[want])
    assert np.isfinite(out).sum(-1).min() == 1 and np.isfinite(out).sum(-1).max() == 12


@pytest.mark.parametrize(
    'temperature,top_k,top_p',
    [(1.0, None, None), (0.5, None, None), (1.0, 3, None), (1.0, None, 0.8), (0.7, 4, 0.6)],
)
def test_sampling_frequencies_match_filtered_softmax(temperature, top_k, top_p):
    logits = np.array([1.0, 0.2, -0.5, 2.0, 0.9, -1.5, 0.0, 1.3])
    # Reference: softmax(l / T), keep top k, renormalise, keep the nucleus, renormalise.
    probs = np.exp(np_log_softmax(logits / temperature))
    if top_k is not None:
        probs[np.argsort(-probs)[top_k:]] = 0
        probs /= probs.sum()
    if top_p is not None:
        probs[~np_top_p_mask(np.log(np.maximum(probs, 1e-300)), top_p) | (probs == 0)] = 0
        probs /= probs.sum()
    n = 20000
    batch = jnp.asarray(np.tile(logits, (n, 1)), jnp.float32)
    samples = decoding.sample_next(batch, jax.random.key(3), temperature, top_k, top_p)
    ok, info = chi_square_ok(samples, probs)
    assert ok, info


def test_temperature_to_zero_is_argmax():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(256, 30)), jnp.float32)
    argmax = np.asarray(jnp.argmax(logits, -1))
    for t in (0.0, 1e-4):
        got = decoding.sample_next(logits, jax.random.key(5), t)
        np.testing.assert_array_equal(got, argmax)
    # A high temperature really does sample, so the checks above can fail.
    assert (np.asarray(decoding.sample_next(logits, jax.random.key(5), 1.0)) != argmax).any()


# ---------------------------------------------------------------------------
# Greedy decoding and sampling loops.


def np_greedy_trigram(table, context, max_len):
    prev, cur = context
    out = []
    for _ in range(max_len):
        nxt = int(np.argmax(np_trigram_logp(table, prev, cur)))
        out.append(nxt)
        if nxt == EOS:
            break
        prev, cur = cur, nxt
    return out


def test_greedy_matches_numpy_with_eos_and_prompt():
    rng = np.random.default_rng(3)
    vocab, max_len, batch = 6, 7, 12
    tables = trigram_tables(rng, batch, vocab, eos_bias=1.0)
    prompt = rng.integers(2, vocab, size=(batch, 3))
    run = jax.jit(
        lambda tables, state, prompt: decoding.greedy(
            trigram_step(tables), state, prompt, max_len, eos_id=EOS, pad_id=PAD
        )
    )
    tokens, lengths = run(jnp.asarray(tables), trigram_state(np.arange(batch)), prompt)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    for b in range(batch):
        # The state consumed prompt[:-1], so the context is its last two tokens.
        want = np_greedy_trigram(tables[b].astype(np.float64), prompt[b, -2:], max_len)
        assert lengths[b] == len(want)
        np.testing.assert_array_equal(tokens[b, : len(want)], want)
        assert (tokens[b, len(want) :] == PAD).all()
    assert (lengths < max_len).any() and (lengths == max_len).any(), lengths


def test_sample_is_deterministic_and_pads_after_eos():
    params = gru_params()
    batch, max_len = 16, 12
    carry = jax.random.normal(jax.random.key(1), (batch, GRU_FEATURES))
    bos = jnp.arange(batch, dtype=jnp.int32) % (GRU_VOCAB - 2) + 2

    @jax.jit
    def run(params, rng, temperature):
        return decoding.sample(
            gru_step(params),
            carry,
            bos,
            max_len,
            rng,
            temperature=temperature,
            top_p=0.95,
            eos_id=EOS,
            pad_id=PAD,
        )

    a, len_a = map(np.asarray, run(params, jax.random.key(1), 1.0))
    b, len_b = map(np.asarray, run(params, jax.random.key(1), 1.0))
    c, _ = map(np.asarray, run(params, jax.random.key(2), 1.0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(len_a, len_b)
    assert (a != c).any()
    for row, n in zip(a, len_a):
        eos_at = np.flatnonzero(row == EOS)
        assert n == (eos_at[0] + 1 if eos_at.size else max_len)
        assert (row[:n] != PAD).all() and (row[n:] == PAD).all()
    assert (len_a < max_len).any(), len_a
    # Temperature 0 inside the loop is greedy decoding.
    g, len_g = decoding.greedy(gru_step(params), carry, bos, max_len, eos_id=EOS)
    z, len_z = run(params, jax.random.key(7), 0.0)
    np.testing.assert_array_equal(z, g)
    np.testing.assert_array_equal(len_z, len_g)


def test_sample_feeds_each_token_back():
    """First token ~ p(.|BOS); second token, given the first a, ~ p(.|BOS, a)."""
    rng = np.random.default_rng(4)
    vocab, batch = 5, 6000
    table = trigram_tables(rng, 1, vocab, scale=1.0)
    state = trigram_state(np.zeros(batch))
    tokens, _ = jax.jit(
        lambda t, s: decoding.sample(
            trigram_step(t), s, jnp.zeros((batch,), jnp.int32), 2, jax.random.key(9), top_k=3
        )
    )(jnp.asarray(table), state)
    tokens = np.asarray(tokens)

    def top3(logits):
        p = np.exp(np_log_softmax(logits))
        p[np.argsort(-p)[3:]] = 0
        return p / p.sum()

    ok, info = chi_square_ok(tokens[:, 0], top3(table[0, PAD, PAD]))
    assert ok, info
    for a in np.unique(tokens[:, 0]):
        rows = tokens[:, 0] == a
        if rows.sum() < 200:
            continue
        ok, info = chi_square_ok(tokens[rows, 1], top3(table[0, PAD, a]))
        assert ok, (a, info)


# ---------------------------------------------------------------------------
# Beam search.


def test_tile_and_gather_beams_follow_numpy_indexing():
    batch, beams = 3, 4
    rng = np.random.default_rng(5)
    state = {
        'cache': rng.normal(size=(batch, 2, 5)).astype(np.float32),
        'pos': np.int32(7),
        'ids': np.arange(batch),
    }
    tiled = decoding.tile_beams(state, beams)
    np.testing.assert_array_equal(tiled['cache'], np.repeat(state['cache'], beams, 0))
    np.testing.assert_array_equal(tiled['ids'], np.repeat(np.arange(batch), beams))
    assert tiled['pos'].shape == () and int(tiled['pos']) == 7
    flat = {'cache': rng.normal(size=(batch * beams, 5)).astype(np.float32), 'pos': np.int32(3)}
    parents = rng.integers(0, beams, size=(batch, beams))
    got = decoding.gather_beams(jax.tree_util.tree_map(jnp.asarray, flat), jnp.asarray(parents))
    want = flat['cache'].reshape(batch, beams, 5)[np.arange(batch)[:, None], parents]
    np.testing.assert_allclose(got['cache'], want.reshape(batch * beams, 5))
    assert int(got['pos']) == 3


@functools.partial(jax.jit, static_argnames=('beam_size', 'max_decode_len', 'early_stop'))
def trigram_beam(tables, models, max_len, alpha, beam_size, max_decode_len, early_stop=True):
    bos = jnp.full(models.shape, PAD, jnp.int32)
    return decoding.beam_search(
        trigram_step(tables),
        trigram_state(models),
        bos,
        beam_size,
        max_len,
        EOS,
        alpha=alpha,
        max_decode_len=max_decode_len,
        early_stop=early_stop,
        pad_id=PAD,
    )


def np_all_hypotheses(table, max_len, alpha, regular):
    """Every hypothesis: regular tokens then EOS, or max_len regular tokens."""
    hyps = []
    for n in range(max_len + 1):
        for prefix in itertools.product(regular, repeat=n):
            ends = [prefix + (EOS,)] if n < max_len else []
            if n == max_len:
                ends.append(prefix)
            for seq in ends:
                prev, cur, logp = PAD, PAD, 0.0
                for tok in seq:
                    logp += np_trigram_logp(table, prev, cur)[tok]
                    prev, cur = cur, tok
                hyps.append((logp / np_lp(len(seq), alpha), seq))
    hyps.sort(key=lambda h: -h[0])
    return hyps


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_wide_beam_finds_exhaustive_best(alpha):
    """With a beam as wide as the number of extensions at each step, nothing is
    pruned: the K returned hypotheses are the exact top K of all sequences."""
    vocab, beam = 6, 80  # 4 regular tokens: 5 * 4**2 = 80 extensions at depth 2
    regular = tuple(range(2, vocab))
    rng = np.random.default_rng(6)
    max_lens = np.array([4, 3, 4, 2])
    tables = trigram_tables(rng, len(max_lens), vocab, scale=1.5)
    seqs, scores = trigram_beam(
        jnp.asarray(tables), jnp.arange(len(max_lens)), jnp.asarray(max_lens), alpha, beam, 4
    )
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    for b, max_len in enumerate(max_lens):
        ref = np_all_hypotheses(tables[b].astype(np.float64), int(max_len), alpha, regular)
        m = min(beam, len(ref))
        ref_scores = np.array([s for s, _ in ref[:m]])
        np.testing.assert_allclose(scores[b, :m], ref_scores, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(scores[b, :m]) <= 0)
        assert (scores[b, m:] < -1e8).all()  # only hypotheses using the impossible PAD
        for i in range(min(m, 10)):
            gaps = np.abs(ref_scores[max(i - 1, 0) : i + 2] - ref_scores[i])
            if np.sort(gaps)[1] < 1e-4:  # a near tie: float32 may order it either way
                continue
            want = ref[i][1]
            np.testing.assert_array_equal(seqs[b, i, : len(want)], want)
            assert (seqs[b, i, len(want) :] == PAD).all()
            assert len(want) <= max_len


def test_beam_size_one_is_greedy():
    params = gru_params()
    batch, max_len = 8, 10
    # Distinct carries and first tokens, so rows differ and some stop at EOS early.
    carry = jax.random.normal(jax.random.key(1), (batch, GRU_FEATURES))
    bos = jnp.arange(batch, dtype=jnp.int32) % (GRU_VOCAB - 2) + 2

    @jax.jit
    def run(params):
        step = gru_step(params)
        greedy, lengths = decoding.greedy(step, carry, bos, max_len, eos_id=EOS)
        seqs, _ = decoding.beam_search(step, carry, bos, 1, max_len, EOS, alpha=0.0)
        return greedy, lengths, seqs

    greedy, lengths, seqs = map(np.asarray, run(params))
    np.testing.assert_array_equal(seqs[:, 0], greedy)
    assert (lengths < max_len).any() and (lengths == max_len).any(), lengths

    # The same on trigram models, where the state is a token rather than a carry.
    tables = trigram_tables(np.random.default_rng(7), 8, 6, eos_bias=0.5)
    greedy_tri = jax.jit(
        lambda t: decoding.greedy(
            trigram_step(t), trigram_state(np.arange(8)), jnp.zeros(8, jnp.int32), 6, eos_id=EOS
        )[0]
    )(jnp.asarray(tables))
    seqs, _ = trigram_beam(jnp.asarray(tables), jnp.arange(8), 6, 0.0, 1, 6)
    np.testing.assert_array_equal(np.asarray(seqs)[:, 0], greedy_tri)


HIST_VOCAB, HIST_LEN, HIST_BUCKETS = 7, 8, 101


def history_step(table, weights):
    """Logits depend on the whole recorded history through a hash, so a beam whose
    state came from the wrong parent scores its tokens with the wrong table rows."""

    def step(tokens, state):
        history = state['history'].at[:, state['pos']].set(tokens)
        bucket = (history * weights).sum(-1) % HIST_BUCKETS
        return table[bucket], {'history': history, 'pos': state['pos'] + 1}

    return step


def np_history_logp(table, weights, bos, seq):
    history = np.zeros(HIST_LEN + 1, np.int64)
    logp = 0.0
    for t, tok in enumerate(seq):
        history[t] = bos if t == 0 else seq[t - 1]
        logp += np_log_softmax(table[(history * weights).sum() % HIST_BUCKETS])[tok]
    return logp


def test_beam_state_follows_parents():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(HIST_BUCKETS, HIST_VOCAB)) * 2
    table[:, PAD] = NEVER
    # Likely EOS fills the finished pools early, so early stopping really cuts searches
    # short (with this seed, a bound that forgets the length penalty changes 3 examples).
    table[:, EOS] += 2.0
    weights = rng.integers(1, 50, size=HIST_LEN + 1)
    batch, beam, alpha = 16, 4, 0.6
    # One history row per example; scalar `pos` is shared by every row, like a cache index.
    state = {'history': jnp.zeros((batch, HIST_LEN + 1), jnp.int32), 'pos': jnp.int32(0)}
    bos = jnp.arange(batch, dtype=jnp.int32) % (HIST_VOCAB - 2) + 2

    @functools.partial(jax.jit, static_argnames='early_stop')
    def run(table, weights, early_stop):
        return decoding.beam_search(
            history_step(table, weights),
            state,
            bos,
            beam,
            HIST_LEN,
            EOS,
            alpha=alpha,
            early_stop=early_stop,
        )

    tab, w = jnp.asarray(table, jnp.float32), jnp.asarray(weights, jnp.int32)
    seqs, scores = map(np.asarray, run(tab, w, True))
    for b in range(batch):
        seen = set()
        for seq, score in zip(seqs[b], scores[b]):
            assert np.isfinite(score)
            eos_at = np.flatnonzero(seq == EOS)
            n = eos_at[0] + 1 if eos_at.size else HIST_LEN
            hyp = tuple(seq[:n])
            assert hyp not in seen
            seen.add(hyp)
            want = np_history_logp(table, weights, int(bos[b]), hyp) / np_lp(n, alpha)
            np.testing.assert_allclose(score, want, rtol=1e-5)
    assert (seqs[:, :, 1:] != PAD).any()  # hypotheses longer than one token exist
    # Early stopping is exact: running every example to max_len gives the same beams.
    seqs_full, scores_full = map(np.asarray, run(tab, w, False))
    np.testing.assert_array_equal(seqs, seqs_full)
    np.testing.assert_array_equal(scores, scores_full)


def test_beam_search_rejects_bad_state_and_traced_max_len():
    state = {'carry': jnp.zeros((5, 3))}
    step = lambda tokens, st: (jnp.zeros((tokens.shape[0], 4)), st)
    with pytest.raises(ValueError, match='leading axis'):
        decoding.beam_search(step, state, jnp.zeros(2, jnp.int32), 3, 4, EOS)
    with pytest.raises(ValueError, match='max_decode_len'):
        jax.jit(
            lambda m: decoding.beam_search(
                step, {'carry': jnp.zeros((2, 3))}, jnp.zeros(2, jnp.int32), 3, m, EOS
            )
        )(jnp.array([2, 3]))
