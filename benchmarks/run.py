"""CPU benchmarks of the char-LM models against PyTorch eager, on this machine.

    python -m benchmarks.run [--quick] [--repeats 3] [--json OUT.json] [--parts a,b,...]

Each part runs in its own subprocess (so that its peak resident memory is its own),
one after the other, and prints one JSON line; the parent prints the table:

  matmul      f32 4096x4096 matmul rate, jax.jit and torch (the machine's ceiling)
  lstm_jax    the engine's train step (`make_train_step`, char_lm task, configs/
              char_lm.py:bench_lstm): LSTM LM, vocab 65, embed 128, 2x512, B64 x T128, Adam
  lstm_torch  the same model with torch.nn.LSTM, torch.optim.Adam
  gpt_jax     the engine's train step, configs/char_lm.py:bench_gpt: GPT 6 layers,
              d_model 384, 6 heads, context 256, B16, AdamW, no dropout
  gpt_torch   benchmarks/torch_models.GPT (F.scaled_dot_product_attention), AdamW
  compile     compile time of the bench_gpt train step with 2 and 12 layers (scanned)
  sample      1,024 new tokens from the bench_gpt model with max_len 1,280, batch 1,
              with the KV cache (`GPT.decode_step`) and without it (the whole context
              re-run every token, as nanoGPT's `generate` does)
  translate   greedy and beam-4 decoding (seqmodels.inference.decode: batched, with
              the decoder cache, Wu et al.'s length penalty) with the translation
              `small` Transformer, 64 sources of 16 pieces, a vocabulary of 8,000;
              untrained, so every hypothesis runs to the limit (input length + 50)

Every figure is the median of --repeats timings, with the spread (min-max); the load
average is read before and after each part, since other processes share the CPU.
Model FLOPs are the usual count of matmul work (6 per weight per token for a train
step, plus 12 * layers * context * d_model per token for attention); FLOP/s is also
given as a fraction of the same run's matmul rate of its framework.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

PARTS = (
    'matmul',
    'lstm_jax',
    'lstm_torch',
    'gpt_jax',
    'gpt_torch',
    'compile',
    'sample',
    'translate',
)
SAMPLE_TOKENS, SAMPLE_MAX_LEN = 1024, 1280


# --------------------------------------------------------------------------- #
# Shapes (configs/char_lm.py bench_* variants; --quick shrinks them).


def bench_config(name: str, quick: bool, dataset: str | None):
    from configs import char_lm

    config = char_lm.get_config(name)
    if dataset:
        config.dataset = dataset
    if quick:
        config.batch_size = 4
        config.seq_len = 16
        if name == 'bench_lstm':
            config.model.update(embed_dim=16, hidden_size=32)
        else:
            config.model.update(num_layers=2, d_model=32, num_heads=2, d_ff=128, max_len=16)
    return config


def lstm_flops_per_token(m) -> int:
    """Train-step FLOPs per token: 3 x (forward matmuls: input, recurrent, output)."""
    width = [m.embed_dim] + [m.hidden_size] * (m.num_layers - 1)
    forward = sum(2 * (w + m.hidden_size) * 4 * m.hidden_size for w in width)
    return 3 * (forward + 2 * m.hidden_size * m.vocab_size)


def gpt_flops_per_token(m, context: int) -> int:
    """Kaplan et al. 2020 / PaLM app. B, the estimate benchmarks/gpu_bf16.py also uses."""
    d, layers = m.d_model, m.num_layers
    weights = layers * (4 * d * d + 2 * d * m.d_ff) + m.vocab_size * d
    return 6 * weights + 12 * layers * context * d


def interleaved(runs: dict, repeats: int) -> dict:
    """{name: once() -> seconds} -> {name: [seconds] * repeats}, taking turns (in an
    order that alternates) so that a change of load on the shared CPU hits every
    contender alike."""
    times = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            times[name].append(runs[name]())
    return times


def summary(times, work):
    """Median rate work/time and its spread over repeats (min, max of the rates)."""
    rates = sorted(work / t for t in times)
    return statistics.median(rates), rates[0], rates[-1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- #
# Parts (each runs in a child process).


def part_matmul(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    n = 256 if args.quick else 4096
    calls = 3 if args.quick else 5
    a = np.random.default_rng(0).standard_normal((n, n), np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), np.float32)

    matmul = jax.jit(jnp.matmul)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    matmul(ja, jb).block_until_ready()

    def jax_once():
        start = time.perf_counter()
        for _ in range(calls):
            out = matmul(ja, jb)
        out.block_until_ready()
        return (time.perf_counter() - start) / calls

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.mm(ta, tb)

    def torch_once():
        start = time.perf_counter()
        for _ in range(calls):
            torch.mm(ta, tb)
        return (time.perf_counter() - start) / calls

    times = interleaved({'jax': jax_once, 'torch': torch_once}, args.repeats)
    out = {}
    for name, ts in times.items():
        median, lo, hi = summary(ts, 2 * n**3)
        out[name] = dict(gflops=median / 1e9, min=lo / 1e9, max=hi / 1e9)
    return dict(n=n, **out)


def _engine_step(config, workdir):
    """(compiled train step, state, batches, tokens per step) from the real engine."""
    import jax
    from experiments import char_lm
    from seqmodels.training import sharding
    from seqmodels.training.config import validate_config
    from seqmodels.training.loop import make_train_step
    from seqmodels.training.optimizers import make_optimizer
    from seqmodels.training.state import init_train_state

    config.data_dir = workdir
    data, model, task = char_lm.build(config, workdir)
    mesh = sharding.make_mesh()
    config = validate_config(config, num_devices=mesh.size)
    tx, schedule = make_optimizer(config)
    state = jax.jit(
        lambda: init_train_state(task.init_params, tx, config.seed),
        out_shardings=sharding.replicated(mesh),
    )()
    batches = [sharding.global_batch(task.train_batch(s, 0, 1), mesh) for s in range(4)]
    start = time.perf_counter()
    step = make_train_step(task, tx, schedule, mesh).lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - start
    num_params = sum(x.size for x in jax.tree.leaves(state.params))
    return step, state, batches, config, compile_s, int(num_params)


def _train_jax(args, variant):
    import jax

    with tempfile.TemporaryDirectory() as workdir:
        config = bench_config(variant, args.quick, args.dataset)
        step, state, batches, config, compile_s, num_params = _engine_step(config, workdir)
    holder = [state]

    def steps(n):
        metrics = None
        for i in range(n):
            holder[0], metrics = step(holder[0], batches[i % len(batches)])
        jax.block_until_ready(metrics)
        return metrics

    steps(args.warmup)

    def once():
        start = time.perf_counter()
        metrics = steps(args.steps)
        elapsed = time.perf_counter() - start
        info['loss'] = float(metrics['loss'])
        return elapsed

    info = dict(
        tokens_per_step=config.batch_size * config.seq_len,
        compile_s=compile_s,
        params=num_params,
        model=config.model.to_dict(),
        batch_size=config.batch_size,
        seq_len=config.seq_len,
    )
    return once, info


def _train_torch(args, variant):
    import torch
    import torch.nn.functional as F
    from benchmarks import torch_models

    config = bench_config(variant, args.quick, args.dataset)
    m = config.model
    vocab = args.vocab
    if variant == 'bench_lstm':
        model = torch_models.LSTMLM(vocab, m.embed_dim, m.hidden_size, m.num_layers)
        opt = torch.optim.Adam(
            model.parameters(),
            lr=config.learning_rate,
            betas=(config.adam_b1, config.adam_b2),
            eps=config.adam_eps,
        )
    else:
        model = torch_models.GPT(
            vocab, m.max_len, m.d_model, m.num_heads, m.d_ff, m.num_layers, m.layer_norm_epsilon
        )
        opt = torch.optim.AdamW(
            torch_models.adamw_param_groups(model, config.weight_decay),
            lr=config.learning_rate,
            betas=(config.adam_b1, config.adam_b2),
            eps=config.adam_eps,
        )
    gen = torch.Generator().manual_seed(0)
    shape = (config.batch_size, config.seq_len + 1)
    windows = [torch.randint(0, vocab, shape, generator=gen) for _ in range(4)]
    model.train()

    def steps(n):
        for i in range(n):
            window = windows[i % len(windows)]
            logits = model(window[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), window[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss.item()

    steps(args.warmup)

    def once():
        start = time.perf_counter()
        info['loss'] = steps(args.steps)
        return time.perf_counter() - start

    info = dict(
        tokens_per_step=config.batch_size * config.seq_len,
        params=torch_models.num_params(model),
        threads=torch.get_num_threads(),
    )
    return once, info


def part_compile(args):
    """Compile seconds of the bench_gpt train step at 2 and 12 layers."""
    out = {}
    for layers in (1, 2) if args.quick else (2, 12):
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as workdir:
                config = bench_config('bench_gpt', args.quick, args.dataset)
                config.model.num_layers = layers
                config.model.scan_layers = True  # what keeps compile time flat in depth
                times.append(_engine_step(config, workdir)[4])
        out[str(layers)] = dict(seconds=statistics.median(times), min=min(times), max=max(times))
    return out


def part_sample(args):
    """Seconds for SAMPLE_TOKENS new tokens, batch 1, one jitted call per token.

    Both loops draw every token on the host (as a streaming sampler must) with the
    same sampling function. Without the cache each token re-runs the model over the
    whole context so far; the context is right-padded to a multiple of `bucket` so
    that jit compiles a handful of shapes instead of one per length (causal
    attention: padding after a position cannot change its logits). All shapes are
    compiled before the timing starts.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from seqmodels import decoding
    from seqmodels.models import GPT

    config = bench_config('bench_gpt', args.quick, args.dataset)
    m = config.model
    new_tokens, max_len, bucket = (
        (12, 16, 16) if args.quick else (SAMPLE_TOKENS, SAMPLE_MAX_LEN, 128)
    )
    model = GPT(
        vocab_size=65,
        max_len=max_len,
        d_model=m.d_model,
        num_heads=m.num_heads,
        d_ff=m.d_ff,
        num_layers=m.num_layers,
        dropout=0.0,
        attention_dropout=0.0,
        norm='pre',
        scan_layers=True,
    )
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
    key = jax.random.key(1)

    def sample_cached(params, token, cache, index, rng):
        logits, cache = model.apply(
            {'params': params}, token[:, None], cache, index, method=GPT.decode_step
        )
        return decoding.sample_next(logits[:, -1], rng), cache

    sample_cached = jax.jit(sample_cached, donate_argnums=2)  # the cache is updated in place

    @jax.jit
    def sample_full(params, context, last, rng):
        logits = model.apply({'params': params}, context)
        return decoding.sample_next(logits[:, last], rng)

    def cached():
        cache = model.init_cache(1)
        token = jnp.zeros((1,), jnp.int32)
        ids = []
        for i in range(new_tokens):
            token, cache = sample_cached(params, token, cache, i, jax.random.fold_in(key, i))
            ids.append(int(token[0]))
        return ids

    def uncached(num_tokens):
        ids = [0]
        for i in range(num_tokens):
            context = ids[-max_len:]  # nanoGPT crops to the context size
            padded = np.zeros((1, -(-len(context) // bucket) * bucket), np.int32)
            padded[0, : len(context)] = context
            token = sample_full(params, padded, len(context) - 1, jax.random.fold_in(key, i))
            ids.append(int(token[0]))
        return ids[1:]

    # Token i runs on a context of i + 1 tokens, padded to its bucket.
    buckets = [-(-(i + 1) // bucket) * bucket for i in range(new_tokens)]
    start = time.perf_counter()
    cached()  # compiles the cached step
    for length in sorted(set(buckets)):
        sample_full(params, np.zeros((1, length), np.int32), 0, key).block_until_ready()
    warmup_s = time.perf_counter() - start

    def clock(fn, *fn_args):
        def once():
            begin = time.perf_counter()
            once.ids = fn(*fn_args)
            return time.perf_counter() - begin

        return once

    def sweep():
        """Sum over buckets of (tokens in it) x (one full-context call at its length)."""
        total = 0.0
        for length in sorted(set(buckets)):
            padded = np.zeros((1, length), np.int32)
            begin = time.perf_counter()
            int(sample_full(params, padded, length - 1, key)[0])
            seconds = time.perf_counter() - begin
            if length == bucket:
                first_bucket.append(seconds)
            total += buckets.count(length) * seconds
        return total

    first_bucket = []
    # Without the cache the whole loop costs minutes per repeat on 2 cores: unless
    # --sample-direct, it is timed directly only over its first bucket of tokens, and
    # the full figure is the per-bucket sum (`sweep`), whose error on that first
    # bucket is reported (prefix_s vs prefix_estimate_s).
    prefix = new_tokens if args.sample_direct else min(bucket, new_tokens)
    runs = {'cache': clock(cached), 'prefix': clock(uncached, prefix)}
    if not args.sample_direct:
        runs['sweep'] = sweep
    times = interleaved(runs, args.repeats)
    med = statistics.median
    full_times = times['prefix'] if args.sample_direct else times['sweep']
    ids = runs['prefix'].ids
    # Same params, keys and context: both loops must draw the same tokens.
    agree = float(np.mean(np.array(runs['cache'].ids[: len(ids)]) == np.array(ids)))
    out = dict(
        new_tokens=new_tokens,
        max_len=max_len,
        bucket=bucket,
        compile_s=warmup_s,
        full_measured='direct' if args.sample_direct else 'per-bucket sum',
        cache_s=med(times['cache']),
        cache_min=min(times['cache']),
        cache_max=max(times['cache']),
        full_s=med(full_times),
        full_min=min(full_times),
        full_max=max(full_times),
        speedup=med(full_times) / med(times['cache']),
        token_agreement=agree,
        tokens_compared=len(ids),
    )
    if not args.sample_direct:
        # The sweep's own estimate of the directly timed first bucket.
        out.update(
            prefix_s=med(times['prefix']),
            prefix_estimate_s=buckets.count(bucket) * med(first_bucket),
        )
    return out


def part_translate(args):
    """Sentences/s of greedy and beam-4 decoding of one batch with the translation
    library's `seqmodels.inference.decode`. An untrained model rarely emits EOS, so each row decodes
    to its limit: a fixed, worst-case amount of work per sentence."""
    import functools

    import jax
    import numpy as np
    from configs import translation as translation_configs
    from seqmodels import inference, models
    from seqmodels.data.tokenizers import EOS_ID, PAD_ID

    config = translation_configs.get_config('tiny' if args.quick else 'small')
    vocab = 120 if args.quick else 8000
    config.model.update(src_vocab_size=vocab, tgt_vocab_size=vocab)
    batch, length = (4, 6) if args.quick else (64, 16)
    extra = 4 if args.quick else config.max_decode_extra
    model = models.build_model(config.model)
    rng = np.random.default_rng(0)
    # Source ids past the reserved ones (pad 0, unk 1, bos 2, eos 3), then EOS.
    src = rng.integers(4, vocab, (batch, length), dtype=np.int32)
    src[:, -1] = EOS_ID
    src_lengths = np.full((batch,), length, np.int32)
    inputs = models.example_inputs(config.model, model)
    params = jax.jit(model.init)(jax.random.key(0), *inputs)['params']
    out = dict(batch=batch, source_length=length, vocab_size=vocab, max_decode_len=length + extra)
    runs = {}
    for name, search, beams in (
        ('greedy', 'greedy', 1),
        (f'beam{config.beam_size}', 'beam', config.beam_size),
    ):
        fn = jax.jit(
            functools.partial(
                inference.decode,
                model,
                search=search,
                beam_size=beams,
                alpha=config.length_penalty_alpha,
                max_decode_extra=extra,
                max_decode_len=length + extra,
            )
        )
        start = time.perf_counter()
        tokens = np.asarray(fn(params, src, src_lengths))
        out[f'{name}_compile_s'] = time.perf_counter() - start
        out[f'{name}_tokens'] = int(np.sum(tokens != PAD_ID))  # EOS included

        def once(fn=fn):
            begin = time.perf_counter()
            np.asarray(fn(params, src, src_lengths))
            return time.perf_counter() - begin

        runs[name] = once
    for name, ts in interleaved(runs, args.repeats).items():
        median, lo, hi = summary(ts, batch)
        out[name] = dict(
            sentences_per_s=median,
            min=lo,
            max=hi,
            tokens_per_s=median * out[f'{name}_tokens'] / batch,
        )
    return out


TRAIN_PARTS = {
    'lstm_jax': (_train_jax, 'bench_lstm'),
    'lstm_torch': (_train_torch, 'bench_lstm'),
    'gpt_jax': (_train_jax, 'bench_gpt'),
    'gpt_torch': (_train_torch, 'bench_gpt'),
}
OTHER_PARTS = {
    'matmul': part_matmul,
    'compile': part_compile,
    'sample': part_sample,
    'translate': part_translate,
}


def serve_part(args):
    """Child mode. A training part compiles and warms up, says READY, then times one
    repeat per 'go' line on stdin, so that the parent can take turns between the JAX
    and PyTorch processes; 'done' ends it."""
    if args.part in OTHER_PARTS:
        result = OTHER_PARTS[args.part](args)
    else:
        fn, variant = TRAIN_PARTS[args.part]
        once, result = fn(args, variant)
        print('READY ' + json.dumps(result), flush=True)
        for line in sys.stdin:
            if line.strip() != 'go':
                break
            print(f'TIME {once()!r}', flush=True)
    result['peak_rss_mb'] = peak_rss_mb()
    print('RESULT ' + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- #
# The parent: runs the parts, prints the table.


class Child:
    """One part in its own process (so that its peak RSS is its own)."""

    def __init__(self, args, part):
        cmd = [
            sys.executable,
            '-m',
            'benchmarks.run',
            '--part',
            part,
            '--repeats',
            str(args.repeats),
            '--steps',
            str(args.steps),
            '--warmup',
            str(args.warmup),
            '--vocab',
            str(args.vocab),
        ]
        if args.sample_direct:
            cmd.append('--sample-direct')
        if args.quick:
            cmd.append('--quick')
        if args.dataset:
            cmd += ['--dataset', args.dataset]
        self.part = part
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )

    def _expect(self, prefix):
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.proc.wait()
        raise RuntimeError(
            f'part {self.part} failed (exit {self.proc.returncode}):\n'
            f'{self.proc.stderr.read()[-4000:]}'
        )

    def ready(self):
        self.info = json.loads(self._expect('READY '))

    def once(self) -> float:
        self.proc.stdin.write('go\n')
        self.proc.stdin.flush()
        return float(self._expect('TIME '))

    def result(self) -> dict:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        result = json.loads(self._expect('RESULT '))
        self.proc.wait()
        return result


class InProcess:
    """The same interface without a process (for the smoke test: no RSS figure)."""

    def __init__(self, args, part):
        self.args, self.part = args, part

    def ready(self):
        fn, variant = TRAIN_PARTS[self.part]
        self.once, self.info = fn(self.args, variant)

    def result(self) -> dict:
        if self.part in OTHER_PARTS:
            self.info = OTHER_PARTS[self.part](self.args)
        return dict(self.info, peak_rss_mb=float('nan'))


def run_parts(args, parts) -> dict:
    """Runs `parts`; the JAX and PyTorch twins of a model take turns, repeat by repeat."""
    make = InProcess if args.in_process else Child
    results = {}
    for part in parts:
        if part in results:
            continue
        load_before, start = os.getloadavg()[0], time.perf_counter()
        if part in OTHER_PARTS:
            group = {part: make(args, part)}
        else:
            model = part.split('_')[0]
            group = {p: None for p in (f'{model}_jax', f'{model}_torch') if p in parts}
            for name in group:  # set up one at a time: compiles must not overlap
                group[name] = make(args, name)
                group[name].ready()
                if name.endswith('_jax'):  # its PyTorch twin gets the data's vocabulary
                    args.vocab = group[name].info['model']['vocab_size']
            times = interleaved({name: c.once for name, c in group.items()}, args.repeats)
        for name, runner in group.items():
            result = runner.result()
            if name in TRAIN_PARTS:
                result.update(
                    dict(
                        zip(
                            ('tokens_per_s', 'min', 'max'),
                            summary(times[name], result['tokens_per_step'] * args.steps),
                        )
                    ),
                    times=times[name],
                )
                config = bench_config(TRAIN_PARTS[name][1], args.quick, args.dataset)
                config.model.vocab_size = args.vocab
                result['flops_per_token'] = (
                    lstm_flops_per_token(config.model)
                    if name.startswith('lstm')
                    else gpt_flops_per_token(config.model, config.seq_len)
                )
            if name == 'compile':
                result = dict(
                    layers={k: v for k, v in result.items() if isinstance(v, dict)},
                    **{k: v for k, v in result.items() if not isinstance(v, dict)},
                )
            result.update(
                load_before=load_before,
                load_after=os.getloadavg()[0],
                wall_s=time.perf_counter() - start,
            )
            results[name] = result
            print(f'{name}: ' + json.dumps(result), flush=True)
    return results


def fmt_rate(r, unit=''):
    return f'{r["tokens_per_s"]:,.0f} ({r["min"]:,.0f}-{r["max"]:,.0f}){unit}'


def table(results, args) -> str:
    rows = [
        f'repeats {args.repeats} x {args.steps} steps; load avg (1 min) before -> after '
        'each part in [ ]; spread = min-max over repeats',
        '',
    ]
    mm = results.get('matmul')
    if mm:
        rows.append(
            f'matmul f32 {mm["n"]}^2 GFLOP/s: jax {mm["jax"]["gflops"]:.1f} '
            f'({mm["jax"]["min"]:.1f}-{mm["jax"]["max"]:.1f}), torch '
            f'{mm["torch"]["gflops"]:.1f} ({mm["torch"]["min"]:.1f}-'
            f'{mm["torch"]["max"]:.1f})  [{mm["load_before"]:.2f} -> '
            f'{mm["load_after"]:.2f}]'
        )
    rows.append('')
    rows.append(
        f'{"train step":<12}{"tokens/s median (spread)":>28}{"vs torch":>10}'
        f'{"GFLOP/s":>9}{"of matmul":>11}{"peak RSS":>10}{"params":>11}  load'
    )
    for model in ('lstm', 'gpt'):
        torch_r = results.get(f'{model}_torch')
        for fw in ('jax', 'torch'):
            r = results.get(f'{model}_{fw}')
            if not r:
                continue
            flops = r['tokens_per_s'] * r['flops_per_token']
            ratio = f'{r["tokens_per_s"] / torch_r["tokens_per_s"]:.2f}x' if torch_r else '-'
            frac = f'{flops / 1e9 / mm[fw]["gflops"]:.0%}' if mm else '-'
            rows.append(
                f'{model + " " + fw:<12}{fmt_rate(r):>28}{ratio:>10}'
                f'{flops / 1e9:>9.1f}{frac:>11}{r["peak_rss_mb"]:>8.0f}MB'
                f'{r["params"]:>11,}  [{r["load_before"]:.2f} -> '
                f'{r["load_after"]:.2f}]'
            )
    c = results.get('compile')
    if c:
        (a, ra), (b, rb) = c['layers'].items()
        rows += [
            '',
            f'compile (train step, scanned layers): {a} layers {ra["seconds"]:.2f} s '
            f'({ra["min"]:.2f}-{ra["max"]:.2f}), {b} layers {rb["seconds"]:.2f} s '
            f'({rb["min"]:.2f}-{rb["max"]:.2f}); ratio {rb["seconds"] / ra["seconds"]:.2f}'
            f'  [{c["load_before"]:.2f} -> {c["load_after"]:.2f}]',
        ]
    s = results.get('sample')
    if s:
        rows += [
            '',
            f'sampling {s["new_tokens"]} tokens (max_len {s["max_len"]}): with cache '
            f'{s["cache_s"]:.2f} s ({s["cache_min"]:.2f}-{s["cache_max"]:.2f}), without '
            f'{s["full_s"]:.2f} s ({s["full_min"]:.2f}-{s["full_max"]:.2f}); speedup '
            f'{s["speedup"]:.1f}x; same tokens {s["token_agreement"]:.0%} of '
            f'{s["tokens_compared"]}'
            f'  [{s["load_before"]:.2f} -> {s["load_after"]:.2f}]',
        ]
        if 'prefix_s' in s:
            rows.append(
                f'  without the cache = {s["full_measured"]}; its check on the first '
                f'{s["bucket"]} tokens: timed {s["prefix_s"]:.2f} s, estimated '
                f'{s["prefix_estimate_s"]:.2f} s'
            )
    t = results.get('translate')
    if t:
        rows += [
            '',
            f'translation decoding ({t["batch"]} sentences of {t["source_length"]} '
            f'pieces, up to {t["max_decode_len"]} out, vocab {t["vocab_size"]:,}): '
            + ', '.join(
                f'{name} {t[name]["sentences_per_s"]:.1f} sentences/s '
                f'({t[name]["min"]:.1f}-{t[name]["max"]:.1f})'
                for name in t
                if isinstance(t[name], dict)
            )
            + f'  [{t["load_before"]:.2f} -> {t["load_after"]:.2f}]',
        ]
    return '\n'.join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='tiny shapes (a smoke test)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--steps', type=int, default=5, help='train steps per repeat')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--parts', default=','.join(PARTS))
    parser.add_argument(
        '--dataset',
        default=None,
        help="char_lm dataset string (default: the bench configs' text file)",
    )
    parser.add_argument('--json', default=None, help='also write the results here')
    parser.add_argument(
        '--vocab',
        type=int,
        default=66,
        help='PyTorch vocabulary when no JAX part ran first (tiny '
        "Shakespeare's 65 characters + the char vocab's <unk>)",
    )
    parser.add_argument(
        '--sample-direct',
        action='store_true',
        help='time sampling without the cache over all its tokens (slow) '
        'instead of the per-bucket sum',
    )
    parser.add_argument(
        '--in-process', action='store_true', help='no subprocesses (faster; no peak-RSS figures)'
    )
    parser.add_argument('--part', default=None, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.part:
        return serve_part(args)

    parts = args.parts.split(',')
    for part in parts:
        if part not in PARTS:
            parser.error(f'unknown part {part!r}; choose from {PARTS}')
    import jax
    import torch

    results = dict(
        jax=jax.__version__,
        torch=torch.__version__,
        xla_flags=os.environ.get('XLA_FLAGS', ''),
        cpu_count=os.cpu_count(),
        load_start=os.getloadavg(),
    )
    results.update(run_parts(args, parts))
    results['load_end'] = os.getloadavg()
    print()
    print(table(results, args))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
