"""Autoregressive decoding: greedy, temperature / top-k / top-p sampling, beam search.

Every decoder here is written against one generic *step function*, so the same code
drives the RNN LM, GPT, and the encoder-decoder Transformer:

    step_fn(tokens: int32[N], state) -> (logits: float[N, V], new_state)

`tokens` are the inputs at the current position, `logits` score the next token.
`state` is any pytree (KV cache, LSTM carry, encoder memory, ...). Array leaves carry
the batch (or batch x beam) on their LEADING axis; 0-d leaves (e.g. flax's shared
`cache_index`) are treated as shared by all rows and are never tiled or re-indexed.
`step_fn` must be pure and keep the state's structure, shapes and dtypes.

Prompt convention: `state` has consumed every token *before* the one passed as
`bos`. To continue a prompt, either pass it as `bos_or_prompt` of shape [B, P] (all
but its last token are fed by `prefill`, and its last token becomes the first
input), or feed it yourself and pass its last token as `bos`. Outputs never include
the prompt or the BOS token.

The decoders use `lax.while_loop`, so they trace to a single loop and are meant to
be called inside `jax.jit`. Make the model parameters arguments of the jitted
function (not constants closed over at module level), so one compilation serves
every checkpoint:

    @functools.partial(jax.jit, static_argnames="max_len")
    def generate(params, state, bos, rng, max_len):
        step = lambda tok, st: model.apply(params, tok, st, method=Model.decode_step)
        return sample(step, state, bos, max_len, rng, top_p=0.9, eos_id=EOS)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
StepFn = Callable[[Array, Any], tuple[Array, Any]]

NEG_INF = -jnp.inf


# ---------------------------------------------------------------------------
# Logit filters and a single sampling step.


def _descending_ranks(logits: Array) -> tuple[Array, Array]:
    """Sort order (best first) and each entry's rank; ties go to the lower index."""
    order = jnp.argsort(-logits, axis=-1, stable=True)
    ranks = jnp.argsort(order, axis=-1, stable=True)
    return order, ranks


def apply_top_k(logits: Array, k) -> Array:
    """Keeps exactly the `k` largest logits of each row, setting the rest to -inf.

    `k` may be traced; ties at the boundary are broken towards the lower token id so
    that exactly `k` survive. `k >= V` keeps every logit.
    """
    _, ranks = _descending_ranks(logits)
    return jnp.where(ranks < k, logits, NEG_INF)


def apply_top_p(logits: Array, p) -> Array:
    """Nucleus filter (Holtzman et al., 2019): keeps, per row, the smallest set of
    most probable tokens whose total probability is >= `p`; the rest become -inf.

    A token is kept when the mass of the tokens ranked above it is still < p, which
    always keeps the most probable token. `p` may be traced; `p >= 1` keeps all.
    """
    logits = jnp.asarray(logits)
    order, ranks = _descending_ranks(logits)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    sorted_probs = jnp.take_along_axis(probs, order, axis=-1)
    # An explicit exclusive cumsum; `cumsum - x` would leak rounding into the boundary.
    mass_above = jnp.cumsum(sorted_probs, axis=-1)
    mass_above = jnp.concatenate(
        [jnp.zeros_like(mass_above[..., :1]), mass_above[..., :-1]], axis=-1
    )
    keep_sorted = (mass_above < p) | (p >= 1.0)
    keep = jnp.take_along_axis(keep_sorted, ranks, axis=-1)
    return jnp.where(keep, logits, NEG_INF)


def _sample_logits(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """Temperature, then top-k, then top-p on the tempered distribution; T=0 is argmax."""
    logits = jnp.asarray(logits, jnp.float32)
    temperature = jnp.asarray(temperature, jnp.float32)
    argmax = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    # Dividing by a placeholder 1 keeps the unused branch free of inf/nan at T=0.
    scaled = logits / jnp.where(temperature > 0, temperature, 1.0)
    if top_k is not None:
        scaled = apply_top_k(scaled, top_k)
    if top_p is not None:
        scaled = apply_top_p(scaled, top_p)
    sampled = jax.random.categorical(rng, scaled, axis=-1).astype(jnp.int32)
    return jnp.where(temperature > 0, sampled, argmax)


def check_sampling_options(temperature=1.0, top_k=None, top_p=None) -> None:
    """Raises ValueError, naming the option and its valid range, for values that
    `sample_next` would silently misread (a negative temperature flips the ranking;
    top_k=0 or top_p outside (0, 1] would keep nothing or everything)."""
    if temperature is not None and not temperature >= 0:
        raise ValueError(f'temperature must be >= 0 (0 = greedy), got {temperature}')
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f'top_k must be an integer >= 1, got {top_k}')
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f'top_p must lie in (0, 1], got {top_p}')


@jax.jit
def sample_next(logits: Array, rng: Array, temperature=1.0, top_k=None, top_p=None) -> Array:
    """Draws one token per row of `logits` [N, V] -> int32[N].

    logits / temperature, then `apply_top_k`, then `apply_top_p` (so the nucleus is
    taken on the tempered distribution); temperature 0 returns the argmax. All three
    are traced, so a streaming CLI can call this once per character without
    recompiling when they change (switching one between None and a value compiles
    once more).
    """
    return _sample_logits(logits, rng, temperature, top_k, top_p)


# ---------------------------------------------------------------------------
# Greedy decoding and sampling.


def prefill(step_fn: StepFn, state, tokens: Array):
    """Feeds `tokens` [B, P] through `step_fn` (teacher forcing) and returns the state."""
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.shape[1] == 0:
        return state

    def feed(state, column):
        _, state = step_fn(column, state)
        return state, None

    state, _ = jax.lax.scan(feed, state, tokens.T)
    return state


def _split_prompt(step_fn, state, bos_or_prompt):
    tokens = jnp.asarray(bos_or_prompt, jnp.int32)
    if tokens.ndim == 1:
        return state, tokens
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ValueError(
            f'bos_or_prompt must be int[B] or a non-empty int[B, P], got {tokens.shape}'
        )
    return prefill(step_fn, state, tokens[:, :-1]), tokens[:, -1]


def _generate(step_fn, state, first, max_len, choose, eos_id, pad_id):
    """Shared loop: `choose(logits, t)` picks tokens; rows stop at EOS, then pad."""
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f'max_len must be a positive Python int, got {max_len!r}')
    batch = first.shape[0]
    out = jnp.full((batch, max_len), pad_id, jnp.int32)
    done = jnp.zeros((batch,), bool)
    lengths = jnp.zeros((batch,), jnp.int32)

    def cond(carry):
        t, _, _, _, done, _ = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, tokens, state, out, done, lengths = carry
        logits, state = step_fn(tokens, state)
        new = jnp.where(done, pad_id, choose(logits, t))
        out = out.at[:, t].set(new)
        lengths = jnp.where(done, lengths, t + 1)
        if eos_id is not None:
            done = done | (new == eos_id)
        return t + 1, new, state, out, done, lengths

    carry = (jnp.int32(0), first, state, out, done, lengths)
    _, _, _, out, _, lengths = jax.lax.while_loop(cond, body, carry)
    return out, lengths


def greedy(
    step_fn: StepFn, init_state, bos, max_len: int, eos_id: int | None = None, pad_id: int = 0
) -> tuple[Array, Array]:
    """Argmax decoding.

    Args:
      bos: int[B] first input tokens, or an int[B, P] prompt (see module docstring).
      max_len: number of tokens to generate (static).
    Returns:
      tokens int32[B, max_len] (EOS included; `pad_id` after it) and lengths int32[B]
      (tokens up to and including EOS, `max_len` if no EOS was produced).
    """
    state, first = _split_prompt(step_fn, init_state, bos)
    choose = lambda logits, t: jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return _generate(step_fn, state, first, max_len, choose, eos_id, pad_id)


def sample(
    step_fn: StepFn,
    init_state,
    bos_or_prompt,
    max_len: int,
    rng: Array,
    temperature=1.0,
    top_k=None,
    top_p=None,
    eos_id: int | None = None,
    pad_id: int = 0,
) -> tuple[Array, Array]:
    """Ancestral sampling with temperature / top-k / nucleus filtering.

    Step t draws with `jax.random.fold_in(rng, t)`, so a given rng always yields the
    same tokens. Temperature 0 is greedy decoding. Returns (tokens, lengths) as
    `greedy` does.
    """
    state, first = _split_prompt(step_fn, init_state, bos_or_prompt)

    def choose(logits, t):
        return _sample_logits(logits, jax.random.fold_in(rng, t), temperature, top_k, top_p)

    return _generate(step_fn, state, first, max_len, choose, eos_id, pad_id)


# ---------------------------------------------------------------------------
# Beam search.


def tile_beams(state, beam_size: int):
    """Repeats each example's rows `beam_size` times: leading axis B -> B*beam_size,
    example-major (rows b*beam_size ... b*beam_size + beam_size - 1 belong to example b)."""

    def tile(x):
        x = jnp.asarray(x)
        return x if x.ndim == 0 else jnp.repeat(x, beam_size, axis=0)

    return jax.tree_util.tree_map(tile, state)


def gather_beams(state, beam_indices: Array):
    """Re-indexes the state's leading (batch*beam) axis by chosen parent beams.

    `beam_indices` int[B, K] gives, for each new beam, its parent beam within the same
    example; each leaf [B*K_old, ...] becomes [B*K, ...]. 0-d leaves are shared.
    """
    batch, _ = beam_indices.shape

    def gather(x):
        if x.ndim == 0:
            return x
        old_beams = x.shape[0] // batch
        flat = (jnp.arange(batch)[:, None] * old_beams + beam_indices).reshape(-1)
        return jnp.take(x, flat, axis=0)

    return jax.tree_util.tree_map(gather, state)


def length_penalty(length, alpha):
    """Wu et al. (2016), eq. 14: lp(Y) = (5 + |Y|)^alpha / (5 + 1)^alpha."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _beam_state(init_state, batch, beam_size):
    """Accepts a state for B examples (tiled here) or one already tiled to B*beam."""

    def prepare(x):
        x = jnp.asarray(x)
        if x.ndim == 0:
            return x
        if x.shape[0] == batch:
            return jnp.repeat(x, beam_size, axis=0)
        if x.shape[0] == batch * beam_size:
            return x
        raise ValueError(
            f'beam_search: state leaf of shape {x.shape} has leading axis {x.shape[0]}; '
            f'expected the batch ({batch}) or batch*beam_size ({batch * beam_size})'
        )

    return jax.tree_util.tree_map(prepare, init_state)


def _static_max_len(max_len, max_decode_len):
    if max_decode_len is not None:
        return int(max_decode_len)
    try:
        return int(np.max(np.asarray(max_len)))
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerArrayConversionError,
        jax.errors.TracerIntegerConversionError,
    ) as e:
        raise ValueError(
            'beam_search: max_len is traced; pass a static max_decode_len (the buffer '
            'length, >= every per-example max_len)'
        ) from e


def beam_search(
    step_fn: StepFn,
    init_state,
    bos,
    beam_size: int,
    max_len,
    eos_id: int,
    alpha=0.6,
    *,
    max_decode_len: int | None = None,
    pad_id: int = 0,
    early_stop: bool = True,
) -> tuple[Array, Array]:
    """Batched beam search with the GNMT length penalty (Wu et al., 2016).

    Each step extends the K live beams of every example by every token and ranks the
    K*V extensions by log P(Y|X). Of the top K extensions, those ending in EOS become
    finished hypotheses; the K best non-EOS extensions stay live (their state is the
    parent's, re-indexed with `gather_beams`). A hypothesis that reaches its example's
    `max_len` without EOS is finished too. Finished hypotheses are ranked by
    log P(Y|X) / lp(Y), |Y| counting generated tokens including EOS. With alpha=0 and
    beam_size=1 this is exactly greedy decoding.

    Args:
      init_state: state for B examples (tiled here with `tile_beams`), or already tiled
        to B*beam_size rows.
      bos: int[B] first input tokens.
      max_len: int, or int[B] per-example limit (e.g. source length + 50); values
        are clipped to [1, max_decode_len].
      alpha: length-penalty exponent; may be traced.
      max_decode_len: static buffer length; needed only when `max_len` is traced.
      early_stop: stop an example once no live beam can beat its worst finished
        hypothesis (exact: log-probs only fall with length, and the bound divides by
        the largest penalty still reachable). False runs every example to max_len;
        both give the same result.
    Returns:
      sequences int32[B, K, L] (best first; `pad_id` after EOS / the example's
      max_len) and scores float32[B, K] (-inf marks an empty slot).
    """
    if eos_id is None:
        raise ValueError('beam_search needs an eos_id')
    if beam_size < 1:
        raise ValueError(f'beam_size must be >= 1, got {beam_size}')
    bos = jnp.asarray(bos, jnp.int32)
    batch, k = bos.shape[0], beam_size
    length = _static_max_len(max_len, max_decode_len)
    if length < 1:
        raise ValueError(f'beam_search: max_len must be >= 1, got {length}')
    example_max = jnp.broadcast_to(jnp.clip(jnp.asarray(max_len, jnp.int32), 1, length), (batch,))
    alpha = jnp.asarray(alpha, jnp.float32)

    # The best reachable score of a live beam divides its (non-positive) log-prob by
    # the largest penalty it could still get; lp is monotone in |Y| for either sign of
    # alpha, so that is at one end of the remaining length range.
    def best_possible(live_logp, t):
        lp_max = jnp.maximum(length_penalty(t + 1, alpha), length_penalty(example_max, alpha))
        return live_logp[:, 0] / lp_max

    state = _beam_state(init_state, batch, k)
    # All beams start identical; only beam 0 is live, so the first step is not K copies.
    live_logp = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (k - 1), jnp.float32), (batch, 1))
    empty_seqs = jnp.full((batch, k, length), pad_id, jnp.int32)
    carry = dict(
        t=jnp.int32(0),
        tokens=jnp.repeat(bos, k),
        state=state,
        live_seqs=empty_seqs,
        live_logp=live_logp,
        fin_seqs=empty_seqs,
        fin_scores=jnp.full((batch, k), -jnp.inf, jnp.float32),
        done=jnp.zeros((batch,), bool),
    )

    def cond(c):
        return (c['t'] < length) & ~jnp.all(c['done'])

    def body(c):
        t = c['t']
        logits, state = step_fn(c['tokens'], c['state'])
        vocab = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        cand_logp = c['live_logp'][:, :, None] + logp.reshape(batch, k, vocab)
        # Top 2K always holds K non-EOS extensions: there are at most K EOS ones.
        top_logp, top_idx = jax.lax.top_k(cand_logp.reshape(batch, k * vocab), 2 * k)
        parent, token = top_idx // vocab, top_idx % vocab
        cand_seqs = jnp.take_along_axis(c['live_seqs'], parent[:, :, None], axis=1)
        cand_seqs = cand_seqs.at[:, :, t].set(token)

        is_eos = token == eos_id
        in_beam = jnp.arange(2 * k) < k
        at_limit = (t + 1 >= example_max)[:, None]
        finishing = (~c['done'])[:, None] & in_beam & (is_eos | at_limit)
        new_scores = jnp.where(finishing, top_logp / length_penalty(t + 1, alpha), -jnp.inf)
        # Old finished come first, so on exact ties they are kept (as without early stop).
        all_scores = jnp.concatenate([c['fin_scores'], new_scores], axis=1)
        all_seqs = jnp.concatenate([c['fin_seqs'], cand_seqs], axis=1)
        fin_scores, fin_idx = jax.lax.top_k(all_scores, k)
        fin_seqs = jnp.take_along_axis(all_seqs, fin_idx[:, :, None], axis=1)

        live_logp, live_idx = jax.lax.top_k(jnp.where(is_eos, -jnp.inf, top_logp), k)
        live_parent = jnp.take_along_axis(parent, live_idx, axis=1)
        live_token = jnp.take_along_axis(token, live_idx, axis=1)
        live_seqs = jnp.take_along_axis(cand_seqs, live_idx[:, :, None], axis=1)

        done = c['done'] | (t + 1 >= example_max)
        if early_stop:
            done = done | (fin_scores[:, -1] >= best_possible(live_logp, t))
        return dict(
            t=t + 1,
            tokens=live_token.reshape(-1),
            state=gather_beams(state, live_parent),
            live_seqs=live_seqs,
            live_logp=live_logp,
            fin_seqs=fin_seqs,
            fin_scores=fin_scores,
            done=done,
        )

    c = jax.lax.while_loop(cond, body, carry)
    scores = c['fin_scores']
    sequences = jnp.where(jnp.isneginf(scores)[:, :, None], pad_id, c['fin_seqs'])
    return sequences, scores
