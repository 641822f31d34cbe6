"""Running trained models: streaming samplers, decode adapters, the translator.

    sampler = inference.Sampler(model, params, vocab)          # RNNLM or GPT
    text = sampler.generate('def ', 200, jax.random.key(0), temperature=0.8,
                            stream=sys.stdout)
    translator = inference.Translator.from_config(config, model, src_tok, tgt_tok)
    hypotheses, stats = translator.translate(params, sentences, beam_size=4)

Nothing here reads flags or a workdir: drivers, notebooks, sweeps and benchmarks call
it with a model, its parameters and a vocabulary or tokenizers.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqmodels import decoding, models
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from seqmodels.data.translation import DEFAULT_BOUNDARIES
from seqmodels.errors import require
from seqmodels.evaluation import corpus_bleu
from seqmodels.training import sharding as sharding_lib

# --------------------------------------------------------------------------- #
# Language models: one token at a time, so text can stream to a terminal.


class Sampler:
    """Autoregressive sampling for both LM families, one jitted step per token.

    `vocab` encodes a prompt to ids and decodes ids to text (a CharVocab).

    The RNN carries its state; GPT uses its key/value cache. When GPT's cache is full
    (`model.max_len` positions), the last 3/4 of the context is re-encoded into a fresh
    cache and decoding goes on: the model only ever sees contexts it was trained on.
    """

    def __init__(self, model, params, vocab):
        self.model, self.params, self.vocab = model, params, vocab
        self.is_gpt = isinstance(model, models.GPT)
        if self.is_gpt:
            self._feed = jax.jit(
                lambda p, tokens, cache, index: model.apply(
                    {'params': p}, tokens, cache, index, method=models.GPT.decode_step
                )
            )
        else:
            self._feed = jax.jit(
                lambda p, token, carry: model.apply(
                    {'params': p}, carry, token, method=models.RNNLM.step
                )
            )
        self._sample = jax.jit(decoding.sample_next)

    def generate(
        self,
        prompt: str,
        num_chars: int,
        rng,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stream=None,
    ) -> str:
        ids = [int(i) for i in self.vocab.encode(prompt or '\n')]
        logits = self._start(ids)
        out = []
        for i in range(num_chars):
            token = self._sample(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
            token_id = int(token[0])
            ids.append(token_id)
            char = self.vocab.decode([token_id])
            out.append(char)
            if stream is not None:
                stream.write(char)
                stream.flush()
            if i + 1 < num_chars:
                logits = self._next(ids)
        return ''.join(out)

    def _start(self, ids):
        if self.is_gpt:
            return self._refill(ids)
        self._carry = self.model.apply(
            {'params': self.params}, 1, method=models.RNNLM.initial_carry
        )
        for token in ids:
            logits = self._step_rnn(token)
        return logits

    def _step_rnn(self, token):
        logits, self._carry = self._feed(self.params, jnp.array([token], jnp.int32), self._carry)
        return logits

    def _refill(self, ids):
        keep = (
            self.model.max_len if len(ids) <= self.model.max_len else (3 * self.model.max_len) // 4
        )
        context = jnp.array([ids[-keep:]], jnp.int32)
        cache = self.model.init_cache(1)
        logits, self._cache = self._feed(self.params, context, cache, 0)
        self._index = context.shape[1]
        return logits[:, -1]

    def _next(self, ids):
        if not self.is_gpt:
            return self._step_rnn(ids[-1])
        if self._index >= self.model.max_len:
            return self._refill(ids)
        logits, self._cache = self._feed(
            self.params, jnp.array([[ids[-1]]], jnp.int32), self._cache, self._index
        )
        self._index += 1
        return logits[:, -1]


# --------------------------------------------------------------------------- #
# Encoder-decoders. One adapter per model family turns the model into what
# seqmodels.decoding drives: `start` runs the encoder once per batch, `step` feeds
# one target token; every state leaf is batch-leading (the Transformer's shared
# cache position is 0-d), so beam search can tile and re-index all of it.


class TransformerAdapter:
    @staticmethod
    def start(model, params, src, src_lengths, max_decode_len):
        del src_lengths  # the source mask is src != PAD
        memory = model.apply({'params': params}, src, method=models.Transformer.encode)
        return {
            'memory': memory,
            'src_mask': src != PAD_ID,
            'cache': model.init_cache(src.shape[0], max_decode_len),
            'index': jnp.zeros((), jnp.int32),
        }

    @staticmethod
    def step(model, params, tokens, state):
        logits, cache = model.apply(
            {'params': params},
            state['memory'],
            state['src_mask'],
            tokens[:, None],
            state['cache'],
            state['index'],
            method=models.Transformer.decode_step,
        )
        return logits[:, 0], dict(state, cache=cache, index=state['index'] + 1)


class RNNAdapter:
    @staticmethod
    def start(model, params, src, src_lengths, max_decode_len):
        del max_decode_len  # a recurrent carry has no length
        memory = model.apply({'params': params}, src, src_lengths, method=models.RNNSeq2Seq.encode)
        carry = memory.pop('decoder_carry')
        return {'memory': memory, 'carry': carry}

    @staticmethod
    def step(model, params, tokens, state):
        logits, carry = model.apply(
            {'params': params},
            state['memory'],
            state['carry'],
            tokens,
            method=models.RNNSeq2Seq.decode_step,
        )
        return logits, dict(state, carry=carry)


def adapter_for(model):
    if isinstance(model, models.Transformer):
        return TransformerAdapter
    if isinstance(model, models.RNNSeq2Seq):
        return RNNAdapter
    raise TypeError(f'no decoding adapter for {type(model).__name__}')


def decode(
    model,
    params,
    src,
    src_lengths,
    *,
    search: str,
    beam_size: int = 1,
    alpha: float = 0.0,
    max_decode_extra: int,
    max_decode_len: int,
):
    """Target ids [B, max_decode_len] (EOS, then PAD) for src [B, S].

    Example b gets at most src_lengths[b] + max_decode_extra tokens (EOS included), and
    never more than `max_decode_len` (static: the buffer and cache length). `search` is
    'greedy' or 'beam'; beam search returns its best hypothesis.
    """
    adapter = adapter_for(model)
    state = adapter.start(model, params, src, src_lengths, max_decode_len)
    step = functools.partial(adapter.step, model, params)
    bos = jnp.full((src.shape[0],), BOS_ID, jnp.int32)
    limit = jnp.minimum(src_lengths + max_decode_extra, max_decode_len)
    if search == 'greedy':
        tokens, _ = decoding.greedy(step, state, bos, max_decode_len, eos_id=EOS_ID, pad_id=PAD_ID)
        # Rows are independent, so cutting at the limit equals stopping there.
        return jnp.where(jnp.arange(max_decode_len)[None] < limit[:, None], tokens, PAD_ID)
    if search == 'beam':
        sequences, _ = decoding.beam_search(
            step,
            state,
            bos,
            beam_size,
            limit,
            EOS_ID,
            alpha,
            max_decode_len=max_decode_len,
            pad_id=PAD_ID,
        )
        return sequences[:, 0]
    raise ValueError(f"search must be 'greedy' or 'beam', got {search!r}")


@dataclasses.dataclass
class DecodeStats:
    sentences: int = 0
    compile_sec: float = 0.0
    decode_sec: float = 0.0  # excluding compilation

    @property
    def sentences_per_sec(self) -> float:
        return self.sentences / self.decode_sec if self.decode_sec else math.nan


# Compiled decoders, shared by every Translator in the process (flax modules compare by
# their fields), so that evaluating and translating with one model compiles once.
_EXECUTABLES: dict = {}


class Translator:
    """Sentences in, sentences out: batched, length-sorted, jit-compiled decoding.

    Sources are sorted by length and cut into batches of `batch_size` rows, each padded
    to a length bucket, so jit compiles once per (bucket, search) and pads little.
    Empty (blank) lines are not decoded: they translate to an empty line.
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        *,
        batch_size: int,
        boundaries: Sequence[int],
        max_decode_extra: int,
        alpha: float,
    ):
        self.model = model
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.batch_size, self.max_decode_extra, self.alpha = batch_size, max_decode_extra, alpha
        self.boundaries = tuple(sorted(boundaries))
        self.max_source_len = getattr(model, 'max_len', None)

    @classmethod
    def from_config(cls, config, model, source_tokenizer, target_tokenizer):
        boundaries = config.get('bucket_boundaries') or DEFAULT_BOUNDARIES
        longest = max(config.max_source_length, config.max_target_length)
        return cls(
            model,
            source_tokenizer,
            target_tokenizer,
            batch_size=config.decode_batch_size,
            boundaries=[b for b in boundaries if b < longest] + [longest],
            max_decode_extra=config.max_decode_extra,
            alpha=config.length_penalty_alpha,
        )

    @staticmethod
    def check_config(config) -> None:
        """The decoding keys of a translation config; raises ConfigError naming the key."""
        for key in ('beam_size', 'max_decode_extra', 'decode_batch_size'):
            require(
                isinstance(config[key], int) and config[key] >= 1,
                key,
                'must be a positive integer',
                config[key],
            )
        require(
            config.length_penalty_alpha >= 0,
            'length_penalty_alpha',
            'must be >= 0',
            config.length_penalty_alpha,
        )

    def bucket(self, length: int) -> int:
        for boundary in self.boundaries:
            if length <= boundary:
                break
        else:
            boundary = -(-length // self.boundaries[-1]) * self.boundaries[-1]
        return boundary if self.max_source_len is None else min(boundary, self.max_source_len)

    def translate(
        self, params, sentences: Sequence[str], beam_size: int = 1
    ) -> tuple[list[str], DecodeStats]:
        """Translations of `sentences` in their order; beam_size=1 is greedy decoding."""
        stats = DecodeStats(sentences=len(sentences))
        out = [''] * len(sentences)
        todo = [i for i, s in enumerate(sentences) if s.strip()]
        ids = self.source_tokenizer.encode_batch([sentences[i] for i in todo])
        order = sorted(range(len(todo)), key=lambda j: len(ids[j]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            src, src_lengths = self._source_batch([ids[j] for j in chunk])
            fn = self._executable(params, src, src_lengths, beam_size, stats)
            begin = time.perf_counter()
            tokens = np.asarray(fn(params, src, src_lengths))
            stats.decode_sec += time.perf_counter() - begin
            for row, j in enumerate(chunk):
                out[todo[j]] = self.target_tokenizer.decode(tokens[row]).replace('\n', ' ')
        return out, stats

    def score(
        self, params, sources: Sequence[str], references: Sequence[str], beam_size: int = 1
    ) -> tuple[float, str, list[str], DecodeStats]:
        """(sacreBLEU, its signature, hypotheses, decoding stats) of translating
        `sources` against one reference each."""
        hypotheses, stats = self.translate(params, sources, beam_size)
        bleu, signature = corpus_bleu(hypotheses, references)
        return bleu, signature, hypotheses, stats

    def _source_batch(self, rows):
        longest = max(len(r) for r in rows) + 1
        length = self.bucket(longest)
        src = np.full((self.batch_size, length), PAD_ID, np.int32)
        src[:, 0] = EOS_ID  # filler rows: a one-token source, never an all-masked one
        src_lengths = np.ones(self.batch_size, np.int32)
        for i, r in enumerate(rows):
            r = list(r)[: length - 1]  # beyond a Transformer's position table: cut
            src[i, : len(r)] = r
            src[i, len(r)] = EOS_ID
            src_lengths[i] = len(r) + 1
        return src, src_lengths

    def _executable(self, params, src, src_lengths, beam_size, stats):
        max_decode_len = src.shape[1] + self.max_decode_extra
        if self.max_source_len is not None:
            max_decode_len = min(max_decode_len, self.max_source_len)
        leaves, treedef = jax.tree.flatten(params)
        key = (
            self.model,
            src.shape,
            beam_size,
            self.alpha,
            self.max_decode_extra,
            max_decode_len,
            treedef,
            tuple((np.shape(x), np.result_type(x)) for x in leaves),
        )
        if key not in _EXECUTABLES:
            fn = functools.partial(
                decode,
                self.model,
                search='greedy' if beam_size == 1 else 'beam',
                beam_size=beam_size,
                alpha=self.alpha,
                max_decode_extra=self.max_decode_extra,
                max_decode_len=max_decode_len,
            )
            begin = time.perf_counter()
            _EXECUTABLES[key] = jax.jit(fn).lower(params, src, src_lengths).compile()
            stats.compile_sec += time.perf_counter() - begin
        return _EXECUTABLES[key]


# --------------------------------------------------------------------------- #
# Classifiers.


def predict_logits(
    apply_fn, params, batches: Iterable[dict], inputs: str, mesh=None
) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, classes], labels [N]) of `apply_fn(params, batch[inputs])` over
    `batches` on one process, rows of weight 0 (padding) dropped."""
    mesh = sharding_lib.make_mesh() if mesh is None else mesh
    replicated = sharding_lib.replicated(mesh)
    forward = jax.jit(
        apply_fn,
        in_shardings=(replicated, sharding_lib.batch_sharding(mesh)),
        out_shardings=replicated,
    )
    logits, labels = [], []
    for batch in batches:
        keep = batch['weights'] > 0
        x = sharding_lib.global_batch({inputs: batch[inputs]}, mesh)[inputs]
        logits.append(np.asarray(forward(params, x))[keep])
        labels.append(batch['labels'][keep])
    return np.concatenate(logits), np.concatenate(labels)
