"""Training-step time and MFU of GPT-2 small and Transformer-base in bf16 on one GPU.

    python benchmarks/gpu_bf16.py [--steps 20] [--json OUT.json]

Measures, in one process: the card's bf16 (and f32) matmul rate on 8192^3 products,
then for each model one jitted AdamW training step (f32 master weights, bf16 compute,
f32 loss) — its median step time over `--steps` timed steps after warm-up, and
MFU = model FLOPs / step time / measured bf16 matmul rate. Model FLOPs per step are
`seqmodels.flops.train_step_flops`, the count the training engine logs as perf/mfu
(Kaplan et al. 2020; PaLM appendix B): 6 FLOPs per parameter per token for every
matmul weight (the tied output projection included, embedding lookups not) plus
12 * layers * context * d_model per token for attention scores and values. (XLA's
`cost_analysis` is no substitute: it counts a scanned loop body once, and on the GPU
it leaves out the cuBLAS matmul calls.) Uses only `seqmodels.models` and
`seqmodels.flops` (no ml_collections), so it runs in a bare JAX+flax+optax GPU image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from seqmodels import flops
from seqmodels.models import GPT, Transformer


def timed(fn, *args, steps: int, warmup: int = 3):
    """Median and spread (min, max) of wall seconds per call, blocking on the output."""
    out = None
    for _ in range(warmup):
        out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), out


def matmul_rate(dtype, n: int = 8192, steps: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    median, *_ = timed(f, a, b, steps=steps)
    return 2 * n**3 / median


def train_step_fn(apply_loss):
    tx = optax.adamw(1e-4, b1=0.9, b2=0.98, weight_decay=0.01)

    def step(params, opt_state, batch, rng):
        def loss(p):
            p16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), p)
            return apply_loss(p16, batch, rng)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return tx, jax.jit(step, donate_argnums=(0, 1))


def xent(logits, targets):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), targets
    ).mean()


def bench_model(name, model, batch, apply_loss, tokens_per_step, step_flops, steps, peak):
    params = jax.jit(
        lambda: model.init(
            {'params': jax.random.key(0)}, *[batch[k] for k in batch if k != 'targets']
        )['params']
    )()
    num_params = sum(x.size for x in jax.tree.leaves(params))
    tx, step = train_step_fn(apply_loss)
    opt_state = tx.init(params)
    rng = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(params, opt_state, batch, rng).compile()
    compile_s = time.perf_counter() - start
    state = [params, opt_state]

    def run():
        state[0], state[1], loss = compiled(state[0], state[1], batch, rng)
        return loss

    median, lo, hi, loss = timed(run, steps=steps)
    return dict(
        model=name,
        params=int(num_params),
        tokens_per_step=tokens_per_step,
        compile_s=round(compile_s, 2),
        step_ms=round(1e3 * median, 2),
        step_ms_min=round(1e3 * lo, 2),
        step_ms_max=round(1e3 * hi, 2),
        tokens_per_s=round(tokens_per_step / median),
        step_tflops=round(step_flops / 1e12, 3),
        achieved_tflops_per_s=round(step_flops / median / 1e12, 1),
        mfu=round(step_flops / median / peak, 4),
        final_loss=float(loss),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--json', default=None)
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='shrink every size (a smoke test of this script on a CPU)',
    )
    args = parser.parse_args()
    s = 16 if args.tiny else 1  # divides widths, lengths, batches and vocabularies

    device = jax.devices()[0]
    bf16 = matmul_rate(jnp.bfloat16, 8192 // s)
    f32 = matmul_rate(jnp.float32, 8192 // s)
    results = dict(
        device=str(device.device_kind),
        jax=jax.__version__,
        matmul_bf16_tflops=round(bf16 / 1e12, 1),
        matmul_f32_tflops=round(f32 / 1e12, 1),
        models=[],
    )
    print(json.dumps({k: v for k, v in results.items() if k != 'models'}), flush=True)

    # GPT-2 small (124M), context 1,024, batch 16, dropout off.
    vocab, ctx, batch = 50_257 // s, 1024 // s, 16
    gpt_config = dict(
        vocab_size=vocab,
        max_len=ctx,
        d_model=768 // s,
        num_heads=12,
        d_ff=3072 // s,
        num_layers=12,
        dropout=0.0,
        attention_dropout=0.0,
        norm='pre',
        scan_layers=True,
    )
    gpt = GPT(**gpt_config)
    tokens = jax.random.randint(jax.random.key(2), (batch, ctx), 0, vocab)
    gpt_batch = {'tokens': tokens, 'targets': jnp.roll(tokens, -1, axis=1)}

    def gpt_loss(p, batch, rng):
        return xent(gpt.apply({'params': p}, batch['tokens']), batch['targets'])

    results['models'].append(
        bench_model(
            'gpt2_small bf16 B16xT1024',
            gpt,
            gpt_batch,
            gpt_loss,
            batch * ctx,
            flops.train_step_flops({'name': 'gpt', **gpt_config}, gpt_batch),
            args.steps,
            bf16,
        )
    )
    print(json.dumps(results['models'][-1]), flush=True)

    # Transformer base (Vaswani et al.), shared 37k vocabulary, batch 128 x (64 + 64) tokens.
    vocab, batch = 37_000 // s, 128 // s
    base_config = dict(
        src_vocab_size=vocab,
        tgt_vocab_size=vocab,
        d_model=512 // s,
        num_heads=8,
        d_ff=2048 // s,
        num_encoder_layers=6,
        num_decoder_layers=6,
        dropout=0.1,
        attention_dropout=0.0,
        max_len=256,
        scan_layers=True,
        share_embeddings=True,
    )
    base = Transformer(**base_config)
    src = jax.random.randint(jax.random.key(3), (batch, 64), 4, vocab)
    tgt = jax.random.randint(jax.random.key(4), (batch, 65), 4, vocab)
    base_batch = {'src': src, 'tgt_in': tgt[:, :-1], 'targets': tgt[:, 1:]}

    def base_loss(p, batch, rng):
        logits = base.apply(
            {'params': p}, batch['src'], batch['tgt_in'], deterministic=False, rngs={'dropout': rng}
        )
        return xent(logits, batch['targets'])

    results['models'].append(
        bench_model(
            'transformer_base bf16 B128x(64+64)',
            base,
            base_batch,
            base_loss,
            batch * 128,
            flops.train_step_flops({'name': 'transformer', **base_config}, base_batch),
            args.steps,
            bf16,
        )
    )
    print(json.dumps(results['models'][-1]), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
