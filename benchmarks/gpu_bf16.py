"""Train-step speed, MFU and memory of GPT-2 small and Transformer-base on one GPU, with
and without each of the engine's accelerator settings.

    python -m benchmarks.gpu_bf16 --out DIR [--steps 10] [--warmup 3]
    python -m benchmarks.gpu_bf16 --smoke --out DIR    # tiny shapes: tests the script on a CPU

Every configuration is the engine's own jitted train step
(`seqmodels.training.loop.make_train_step`, with the mesh, optimizer, train state and
shardings the engine builds from the config) with the loss of the experiment's task, on
one batch of random tokens: GPT-2 small (`configs/gpt.py:gpt2_small`, dropout 0) on
16 x 1,024 tokens and Transformer-base (`configs/translation.py:base`) on
128 x (64 source + 64 target) tokens. Three settings vary:

- `config.precision`: 'f32' or 'bf16' (matmuls and activations; parameters stay f32);
- attention: 'auto', the fused `jax.nn.dot_product_attention` wherever no weights are
  needed (cuDNN for bf16 on a GPU where it applies, XLA otherwise), or 'reference', the
  einsum-softmax-einsum with f32 scores. The models expose no attention field, so
  'reference' makes `MultiHeadAttention._fused` answer False while the step is traced
  (an error if that method is no longer called);
- `config.model.remat`: 'none' or 'block'.

They run in the order of `SETTINGS` (`--settings` picks some), both models before the
next setting: 'all' (bf16 and fused attention), each of the two undone ('no_fused',
'no_bf16'), 'all' with remat ('remat'), and 'none' (f32, reference attention).

Per configuration: compile seconds; the median step time over `--steps` steps timed one by
one after `--warmup` (min and max beside it); tokens/s; model FLOP/s, the engine's count
(`seqmodels.flops.train_step_flops`: 6 per weight per token plus attention, PaLM app. B);
MFU against the bf16 matmul rate measured in the same run (8192^3 products) and against
the datasheet's dense bf16 peak (`seqmodels.flops.PEAKS`), so that f32 rows are measured
against what the card does in bf16; the peak device memory (`memory_stats()`'s
peak_bytes_in_use, where the backend has it) and XLA's own estimate for the compiled step
(`memory_analysis()`); how many traced attention calls took the fused path, and whether
the compiled step calls cuDNN's fused attention.

Each configuration runs in a child process, so that its peak memory is its own and one
that fails (out of memory, say) costs only its row; `--in_process` (the default with
`--smoke`) runs them all here, without the peak memory. OUT/gpu_bf16.json and
OUT/gpu_bf16.md are rewritten after every configuration; configurations not started
within `--time_budget_s` are listed as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ('gpt2_small', 'transformer_base')


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    precision: str  # config.precision
    attention: str  # 'auto' | 'reference'
    remat: str  # config.model.remat


# In order of interest, since the time budget may cut the list short: 'none' (all f32)
# says least about a GPU run.
SETTINGS = (
    Setting('all', 'bf16', 'auto', 'none'),  # bf16 and fused attention; remat costs compute
    Setting('no_fused', 'bf16', 'reference', 'none'),
    Setting('no_bf16', 'f32', 'auto', 'none'),
    Setting('remat', 'bf16', 'auto', 'block'),
    Setting('none', 'f32', 'reference', 'none'),
)

# Tiny models for --smoke: seconds per configuration on a CPU.
SMOKE_MODELS = {
    'gpt2_small': dict(vocab_size=256, max_len=32, d_model=32, num_heads=2, d_ff=64, num_layers=1),
    'transformer_base': dict(
        src_vocab_size=256,
        tgt_vocab_size=256,
        max_len=32,
        d_model=32,
        num_heads=2,
        d_ff=64,
        num_encoder_layers=1,
        num_decoder_layers=1,
    ),
}
# (batch, tokens per sequence; for the Transformer per side), full size and smoke.
SHAPES = {'gpt2_small': ((16, 1024), (4, 32)), 'transformer_base': ((128, 64), (4, 8))}

COLUMNS = (
    'model',
    'setting',
    'precision',
    'attention',
    'remat',
    'fused attention calls',
    'cuDNN attention',
    'compile s',
    'step ms (min-max)',
    'tokens/s',
    'model TFLOP/s',
    'MFU vs measured bf16',
    'MFU vs datasheet bf16',
    'peak memory GiB',
    'XLA estimate GiB',
    'loss',
)


def timed(fn, steps: int, warmup: int):
    """(median, min, max) wall seconds of `fn()` over `steps` calls after `warmup`,
    blocking on each call's output; and the last output."""
    import jax

    out = None
    for _ in range(warmup):
        out = jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), out


def matmul_rates(smoke: bool) -> dict:
    """The device, and its bf16 and f32 matmul rates on n^3 products (n = 8192)."""
    import jax
    import jax.numpy as jnp

    from seqmodels import flops

    n = 128 if smoke else 8192
    product = jax.jit(lambda a, b: a @ b)
    rates = {}
    for name, dtype in (('bf16', jnp.bfloat16), ('f32', jnp.float32)):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        median, *_ = timed(functools.partial(product, a, b), steps=10, warmup=3)
        rates[name] = 2 * n**3 / median
    device = jax.devices()[0]
    datasheet = flops.datasheet_peak(device.device_kind, 'bfloat16')
    return dict(
        device=device.device_kind,
        platform=device.platform,
        jax=jax.__version__,
        matmul_n=n,
        matmul_bf16_flops=rates['bf16'],
        matmul_f32_flops=rates['f32'],
        datasheet_bf16_flops=datasheet,
    )


def build_config(model: str, setting: Setting, smoke: bool, scan_layers: bool):
    if model == 'gpt2_small':
        from configs import gpt

        config = gpt.get_config('gpt2_small')
        # GPT-2-style training without dropout, as nanoGPT's reproduction runs it.
        config.model.update(dropout=0.0, attention_dropout=0.0)
    else:
        from configs import translation

        config = translation.get_config('base')
    if smoke:
        config.model.update(SMOKE_MODELS[model])
    config.batch_size = SHAPES[model][smoke][0]
    config.model.scan_layers = scan_layers
    config.model.remat = setting.remat
    config.precision = setting.precision
    return config


def random_batch(model: str, config, smoke: bool) -> dict:
    """One batch of random tokens in the layout the experiment's data gives its task."""
    import numpy as np

    batch, length = SHAPES[model][smoke]
    rng = np.random.default_rng(0)
    if model == 'gpt2_small':
        tokens = rng.integers(0, config.model.vocab_size, (batch, length + 1), dtype=np.int32)
        return {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:]}
    # Ids from 4 up: no padding (id 0) or other special tokens.
    src = rng.integers(4, config.model.src_vocab_size, (batch, length), dtype=np.int32)
    tgt = rng.integers(4, config.model.tgt_vocab_size, (batch, length + 1), dtype=np.int32)
    weights = np.ones((batch, length), np.float32)
    return {'src': src, 'tgt_in': tgt[:, :-1], 'tgt_out': tgt[:, 1:], 'weights': weights}


class RandomBatchTask:
    """The engine's Task on one fixed batch, with the loss of the experiment's own task:
    GPT pre-training's mean next-token cross-entropy (`LanguageModelTask`), the
    translation task's label-smoothed cross-entropy over the target tokens
    (`TranslationTask`). The tasks themselves are not imported: their data modules need
    grain and array_record, which a bare JAX GPU image lacks."""

    def __init__(self, config, model, batch: dict):
        self.config, self.model, self.batch = config, model, batch

    def init_params(self, rng):
        from seqmodels import models

        return models.init_params(self.config.model, self.model, rng)

    def loss_fn(self, params, batch, rng, deterministic, step):
        import jax.numpy as jnp
        import optax

        from seqmodels.losses import label_smoothed_cross_entropy

        variables, rngs = {'params': params}, {'dropout': rng}
        if 'inputs' in batch:
            logits = self.model.apply(
                variables, batch['inputs'], deterministic=deterministic, rngs=rngs
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['targets'])
            return loss.mean(), {'num_tokens': batch['targets'].size}
        logits = self.model.apply(
            variables, batch['src'], batch['tgt_in'], deterministic=deterministic, rngs=rngs
        )
        w = batch['weights']
        smoothed = label_smoothed_cross_entropy(
            logits, batch['tgt_out'], self.config.label_smoothing
        )
        return (smoothed * w).sum() / jnp.maximum(w.sum(), 1.0), {'num_tokens': w.sum()}

    def train_batch(self, step, process_index, process_count):
        return self.batch


@contextlib.contextmanager
def attention_path(attention: str, counts: dict):
    """Within it, traced attention calls take `attention` ('auto' leaves them as they
    are; 'reference' refuses the fused path); `counts` gets 'calls' and 'fused'."""
    import flax.linen as nn

    from seqmodels.nn.attention import MultiHeadAttention

    def intercept(next_fun, args, kwargs, context):
        if not (isinstance(context.module, MultiHeadAttention) and context.method_name == '_fused'):
            return next_fun(*args, **kwargs)
        fused = attention != 'reference' and next_fun(*args, **kwargs)
        counts['calls'] = counts.get('calls', 0) + 1
        counts['fused'] = counts.get('fused', 0) + int(fused)
        return fused

    with nn.intercept_methods(intercept):
        yield
    if not counts.get('calls'):
        raise RuntimeError(
            'no call of MultiHeadAttention._fused was traced: seqmodels.nn.attention '
            'changed, so this script can no longer choose the attention path'
        )


def bench_configuration(model_name: str, setting: Setting, args) -> dict:
    """One configuration's row (see the module docstring), measured in this process."""
    import jax

    from seqmodels import flops, models
    from seqmodels.training import sharding
    from seqmodels.training.config import validate_config
    from seqmodels.training.loop import make_train_step
    from seqmodels.training.optimizers import make_optimizer
    from seqmodels.training.state import init_train_state

    config = build_config(model_name, setting, args.smoke, not args.unroll)
    config = validate_config(config, num_devices=jax.device_count())
    model = models.from_config(config)
    rows = random_batch(model_name, config, args.smoke)
    task = RandomBatchTask(config, model, rows)
    mesh = sharding.make_mesh(spec=config.mesh)
    tx, schedule = make_optimizer(config)
    # A smoke run checks the script, not XLA's code: it compiles quickly.
    options = {'xla_backend_optimization_level': 0} if args.smoke else None
    init_fn = lambda: init_train_state(task.init_params, tx, config.seed)
    shardings = sharding.state_shardings(jax.eval_shape(init_fn), mesh)
    state = jax.jit(init_fn, out_shardings=shardings).lower().compile(compiler_options=options)()
    batch = sharding.global_batch(rows, mesh)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))

    counts: dict = {}
    start = time.perf_counter()
    with attention_path(setting.attention, counts):
        step = make_train_step(task, tx, schedule, mesh, config.grad_accum_steps, shardings)
        compiled = step.lower(state, batch).compile(compiler_options=options)
    compile_s = time.perf_counter() - start
    estimate = compiled.memory_analysis()
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        return metrics

    median, lo, hi, metrics = timed(run, args.steps, args.warmup)
    stats = jax.devices()[0].memory_stats() or {}
    batch_size, length = SHAPES[model_name][args.smoke]
    tokens = batch_size * length * (1 if model_name == 'gpt2_small' else 2)
    return dict(
        model=model_name,
        setting=setting.name,
        precision=setting.precision,
        attention=setting.attention,
        remat=setting.remat,
        scan_layers=bool(config.model.scan_layers),
        params=int(num_params),
        attention_calls=counts['calls'],
        fused_attention_calls=counts.get('fused', 0),
        cudnn_attention='__cudnn$fmha' in compiled.as_text(),  # jax's cuDNN custom call
        compile_s=compile_s,
        step_s=median,
        step_s_min=lo,
        step_s_max=hi,
        tokens_per_step=tokens,
        tokens_per_s=tokens / median,
        model_flops_per_step=flops.train_step_flops(config.model, rows),
        peak_memory_bytes=None if args.in_process else stats.get('peak_bytes_in_use'),
        xla_estimate_bytes=_estimate_bytes(estimate),
        loss=float(metrics['loss']),
    )


def _estimate_bytes(analysis) -> int | None:
    """XLA's peak estimate for a compiled step, else its buffers added up."""
    if analysis is None:
        return None
    peak = getattr(analysis, 'peak_memory_in_bytes', 0)
    if peak:
        return int(peak)
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )


def _child_command(part: str, args) -> list[str]:
    command = [sys.executable, '-m', 'benchmarks.gpu_bf16', '--_child', part]
    command += ['--steps', str(args.steps), '--warmup', str(args.warmup)]
    command += ['--smoke'] * args.smoke + ['--unroll'] * args.unroll
    return command + ['--no-in_process']


def run_child(part: str, args) -> dict:
    """`part` ('matmul' or 'MODEL:SETTING') in a fresh process; its result, or
    {'error': its last line of stderr}."""
    try:
        done = subprocess.run(
            _child_command(part, args),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.config_timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {args.config_timeout_s} s'}
    lines = done.stdout.splitlines()
    if done.returncode == 0 and lines and lines[-1].startswith('RESULT '):
        return json.loads(lines[-1][len('RESULT ') :])
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    sys.stderr.write('\n'.join(errors[-20:]) + '\n')
    return {'error': f'exit {done.returncode}: {errors[-1][:300] if errors else "no output"}'}


def run_part(part: str, args) -> dict:
    if part == 'matmul':
        return matmul_rates(args.smoke)
    model, _, name = part.partition(':')
    setting = next(s for s in SETTINGS if s.name == name)
    return bench_configuration(model, setting, args)


def add_rates(row: dict, header: dict) -> dict:
    """Model TFLOP/s and both MFUs of a measured row."""
    if 'step_s' not in row or not row.get('model_flops_per_step'):
        return row
    rate = row['model_flops_per_step'] / row['step_s']
    row['model_flops_per_s'] = rate
    row['mfu_measured_bf16'] = rate / header['matmul_bf16_flops']
    peak = header.get('datasheet_bf16_flops')
    row['mfu_datasheet_bf16'] = rate / peak if peak else None
    return row


def _gib(value) -> str:
    return '-' if value is None else f'{value / 2**30:.3g}'


def _percent(value) -> str:
    return '-' if value is None else f'{100 * value:.1f}%'


def markdown(results: dict) -> str:
    h = results['header']
    datasheet = h.get('datasheet_bf16_flops')
    lines = [
        f'{h["device"]} ({h["platform"]}), jax {h["jax"]}; bf16 matmul {h["matmul_n"]}^3: '
        f'{h["matmul_bf16_flops"] / 1e12:.3g} TFLOP/s measured (f32: '
        f'{h["matmul_f32_flops"] / 1e12:.3g}); datasheet dense bf16: '
        + (f'{datasheet / 1e12:.1f} TFLOP/s' if datasheet else 'not in seqmodels.flops.PEAKS'),
        f'{results["steps"]} timed steps after {results["warmup"]} warm-up steps per '
        f'configuration{"; smoke sizes" if results["smoke"] else ""}.',
        '',
        '| ' + ' | '.join(COLUMNS) + ' |',
        '|' + '---|' * len(COLUMNS),
    ]
    for row in results['configurations']:
        cells = [row['model'], row['setting'], row['precision'], row['attention'], row['remat']]
        if 'step_s' not in row:
            cells += [row.get('error') or row.get('skipped', '')] + [''] * (len(COLUMNS) - 6)
        else:
            cells += [
                f'{row["fused_attention_calls"]} of {row["attention_calls"]}',
                'yes' if row['cudnn_attention'] else 'no',
                f'{row["compile_s"]:.1f}',
                f'{1e3 * row["step_s"]:.2f} ({1e3 * row["step_s_min"]:.2f}-'
                f'{1e3 * row["step_s_max"]:.2f})',
                f'{row["tokens_per_s"]:,.0f}',
                '-' if 'model_flops_per_s' not in row else f'{row["model_flops_per_s"] / 1e12:.3g}',
                _percent(row.get('mfu_measured_bf16')),
                _percent(row.get('mfu_datasheet_bf16')),
                _gib(row['peak_memory_bytes']),
                _gib(row['xla_estimate_bytes']),
                f'{row["loss"]:.4f}',
            ]
        lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
    return '\n'.join(lines) + '\n'


def write(results: dict, out: str) -> None:
    with open(os.path.join(out, 'gpu_bf16.json'), 'w') as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, 'gpu_bf16.md'), 'w') as f:
        f.write(markdown(results))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument('--out', default='.', help='folder for gpu_bf16.json and gpu_bf16.md')
    parser.add_argument('--steps', type=int, default=10, help='timed steps per configuration')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps after compiling')
    parser.add_argument('--models', default=','.join(MODELS), help=f'some of {MODELS}')
    names = [setting.name for setting in SETTINGS]
    parser.add_argument('--settings', default=','.join(names), help=f'some of {names}')
    parser.add_argument(
        '--smoke', action='store_true', help='tiny models and matmuls (a test of the script)'
    )
    parser.add_argument(
        '--unroll', action='store_true', help='unrolled layers (default: scan_layers=True)'
    )
    parser.add_argument(
        '--in_process',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='every configuration in this process (no peak memory); the default with --smoke',
    )
    parser.add_argument(
        '--time_budget_s',
        type=float,
        default=300,
        help='start no configuration after this many seconds (the rest are listed skipped)',
    )
    parser.add_argument(
        '--config_timeout_s', type=float, default=120, help='a child running longer fails'
    )
    parser.add_argument('--_child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process is None:
        args.in_process = args.smoke
    args.models = [m for m in args.models.split(',') if m]
    args.settings = [name for name in args.settings.split(',') if name]
    choices = (('models', args.models, MODELS), ('settings', args.settings, names))
    for flag, chosen, known in choices:
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            parser.error(f'--{flag}: {", ".join(unknown)} not among {", ".join(known)}')
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args._child:
        print('RESULT ' + json.dumps(run_part(args._child, args)), flush=True)
        return None
    run = run_part if args.in_process else run_child
    start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    header = run('matmul', args)
    if 'error' in header:
        raise SystemExit(f'matmul: {header["error"]}')
    results = dict(
        header=header, steps=args.steps, warmup=args.warmup, smoke=args.smoke, configurations=[]
    )
    print(json.dumps(header), flush=True)
    for setting in [s for s in SETTINGS if s.name in args.settings]:
        for model in args.models:
            row = dict(
                model=model,
                setting=setting.name,
                precision=setting.precision,
                attention=setting.attention,
                remat=setting.remat,
            )
            elapsed = time.perf_counter() - start
            if elapsed > args.time_budget_s:
                row['skipped'] = f'skipped: {elapsed:.0f} s > --time_budget_s'
            else:
                row.update(add_rates(run(f'{model}:{setting.name}', args), header))
            results['configurations'].append(row)
            write(results, args.out)
            print(json.dumps(row), flush=True)
    print(markdown(results), end='')
    print(f'{time.perf_counter() - start:.0f} s; results in {args.out}', flush=True)
    return results


if __name__ == '__main__':
    main()
