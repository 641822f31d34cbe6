"""Validation of the engine's config keys, with one clear error per bad value.

Every experiment config carries the common keys flat at its top (see
`default_config` for all of them and their defaults). `validate_config` checks
them before anything is compiled, so a typo in a sweep costs a second, not a
compile. Experiments check their own keys with `require`:

    require(config.model.num_heads > 0, 'model.num_heads', 'must be positive')

Unknown keys and wrongly typed values on the command line are rejected by
`ml_collections.config_flags` itself; the type error it prints is clear, the
unknown-key one is a long traceback, so drivers pass `parse_flags` to
`absl.app.run(main, flags_parser=parse_flags)` to get one line instead.

Config files read as a base config plus a table of variants, each a mapping of
overrides applied with `apply_overrides` (the sweep launcher applies a trial's
overrides with the same function):

    VARIANTS = {'lstm': {}, 'gru': {'model.cell': 'gru'}, 'gpt': {'model': gpt_model()}}

    def get_config(variant='lstm'):
        return apply_overrides(base_config(), select_variant(VARIANTS, variant, __file__))
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any

import ml_collections

from seqmodels.errors import ConfigError, require
from seqmodels.precision import DEFAULT_PRECISION, compute_dtype

OPTIMIZERS = ('sgd', 'rmsprop', 'adam', 'adamw')
SCHEDULES = ('constant', 'warmup_cosine', 'warmup_linear', 'rsqrt')

# Keys every experiment must set itself: there is no sensible default size.
REQUIRED_KEYS = ('batch_size', 'num_train_steps')

# Engine keys an experiment may leave out. Values are typed (0.0, not None) so
# that `--config.KEY=VALUE` can override them: config_flags cannot infer the
# type of a None field.
ENGINE_DEFAULTS: dict[str, Any] = {
    'seed': 0,
    'optimizer': 'adam',
    'learning_rate': 1e-3,
    'schedule': 'constant',
    'warmup_steps': 0,
    'min_lr_ratio': 0.0,  # warmup_cosine/_linear decay to min_lr_ratio * learning_rate
    'momentum': 0.0,  # sgd
    'nesterov': False,  # sgd
    'rmsprop_decay': 0.9,
    'rmsprop_eps': 1e-8,
    'adam_b1': 0.9,
    'adam_b2': 0.999,
    'adam_eps': 1e-8,
    'weight_decay': 0.0,  # adamw only (decoupled, Loshchilov & Hutter 2019)
    'grad_clip_norm': 0.0,  # 0 = off
    'grad_accum_steps': 1,
    'log_every_steps': 100,  # 0 = only at the end
    'eval_every_steps': 1000,  # 0 = only at the end
    'checkpoint_every_steps': 1000,  # 0 = only at the end
    'keep_checkpoints': 3,
    'async_checkpoints': True,
    'prefetch': 2,  # training batches made ahead on a thread; 0 = between steps
    # Device mesh: axis:size pairs over data (replicas) and fsdp (parameters and
    # optimizer state sharded); -1 = the devices the other axes leave.
    'mesh': 'data:-1',
    # The models' compute dtype (seqmodels.precision): 'f32', or 'bf16' for bfloat16
    # matmuls and activations with float32 parameters and optimizer state.
    'precision': DEFAULT_PRECISION,
}


def default_config() -> ml_collections.ConfigDict:
    """A config with every engine key at its default and the required ones unset.

    Experiments start from it (`config = default_config(); config.batch_size = 32`)
    so that every engine key can be overridden from the command line.
    """
    config = ml_collections.ConfigDict(ENGINE_DEFAULTS)
    config.batch_size = 0
    config.num_train_steps = 0
    config.model = ml_collections.ConfigDict()
    return config


def resolve_config(config) -> ml_collections.ConfigDict:
    """A copy of `config` (ConfigDict or dict) with missing engine keys defaulted."""
    if isinstance(config, ml_collections.ConfigDict):
        resolved = copy.deepcopy(config)
    else:
        resolved = ml_collections.ConfigDict(config)
    with resolved.unlocked():
        for key, value in ENGINE_DEFAULTS.items():
            if key not in resolved:
                setattr(resolved, key, value)
    return resolved


def _shown_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative


def select_variant(
    variants: Mapping[str, Mapping[str, Any]], variant: str, config_file: str, also: str = ''
) -> Mapping[str, Any]:
    """The overrides of `variant` in a config file's table of variants.

    Raises ConfigError naming the file and the choices (plus `also`, a description
    of variants the table does not list) when there is no such variant.
    """
    if variant not in variants:
        choices = ', '.join(variants) + (f', or {also}' if also else '')
        raise ConfigError(
            f'unknown variant {variant!r} of {_shown_path(config_file)}; choose one of: {choices}'
        )
    return variants[variant]


def apply_overrides(
    config, overrides: Mapping[str, Any], *, new_keys: Collection[str] = ()
) -> ml_collections.ConfigDict:
    """A copy of `config` with each (dotted) key of `overrides` set, in order.

    `{'model.cell': 'gru'}` sets one field; `{'model': gpt_model()}` replaces the
    whole sub-config (a dict value becomes a ConfigDict), so later keys can refine
    it (`'model.scan_layers': False`). Values are copied, never shared with the
    table they came from, and take the field's type as ConfigDict does (an int
    for a float field becomes a float, a list for a tuple field a tuple).

    Every key must already exist, so a misspelt override is an error rather than
    a silent new field; a config file names in `new_keys` the dotted keys its
    variants add to the base. Raises ConfigError naming the key for an unknown
    key, a parent that is not a sub-config, or a value of the wrong type.
    """
    if isinstance(config, ml_collections.ConfigDict):
        result = copy.deepcopy(config)
    else:
        result = ml_collections.ConfigDict(config)
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        node = result
        for depth, parent in enumerate(parents):
            path = '.'.join(parents[: depth + 1])
            require(parent in node, path, f'no such sub-config (overriding {key})')
            node = node[parent]
            require(
                isinstance(node, ml_collections.ConfigDict),
                path,
                f'is not a sub-config, so {key} cannot be set',
                node,
            )
        if leaf not in node:
            require(
                key in new_keys, key, 'no such key' + _did_you_mean(leaf, node, key[: -len(leaf)])
            )
            with node.unlocked():
                node[leaf] = copy.deepcopy(value)
            continue
        try:
            node[leaf] = copy.deepcopy(value)
        except TypeError:
            raise ConfigError(
                f'config.{key}={value!r}: this {node.get_type(leaf).__name__} '
                f'field cannot hold a {type(value).__name__}'
            ) from None
    return result


def _did_you_mean(leaf: str, node: ml_collections.ConfigDict, prefix: str) -> str:
    match = difflib.get_close_matches(leaf, list(node.keys()), n=1)
    return f' (did you mean {prefix}{match[0]}?)' if match else ''


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_rates(node: ml_collections.ConfigDict, prefix: str) -> None:
    """Dropout and other probabilities anywhere in the tree must lie in [0, 1)."""
    for key, value in node.items():
        path = f'{prefix}{key}'
        if isinstance(value, ml_collections.ConfigDict):
            _check_rates(value, f'{path}.')
        elif (
            _is_number(value)
            and key != 'learning_rate'
            and ('dropout' in key or key.endswith('_rate') or key == 'label_smoothing')
        ):
            require(0 <= value < 1, path, 'must lie in [0, 1)', value)


def validate_config(config, num_devices: int | None = None) -> ml_collections.ConfigDict:
    """Checks the common keys; returns the resolved config. Raises ConfigError.

    `num_devices` (the global device count) adds the divisibility check of
    `batch_size` by `num_devices * grad_accum_steps`.
    """
    c = resolve_config(config)
    for key in REQUIRED_KEYS:
        require(key in c, key, 'is required')
    require(
        _is_int(c.batch_size) and c.batch_size > 0,
        'batch_size',
        'must be a positive integer (the global batch size)',
        c.batch_size,
    )
    require(
        _is_int(c.num_train_steps) and c.num_train_steps > 0,
        'num_train_steps',
        'must be a positive integer',
        c.num_train_steps,
    )
    require(_is_int(c.seed), 'seed', 'must be an integer', c.seed)
    require(
        c.optimizer in OPTIMIZERS,
        'optimizer',
        f'unknown optimizer; valid: {", ".join(OPTIMIZERS)}',
        c.optimizer,
    )
    require(
        c.schedule in SCHEDULES,
        'schedule',
        f'unknown schedule; valid: {", ".join(SCHEDULES)}',
        c.schedule,
    )
    require(
        _is_number(c.learning_rate) and c.learning_rate >= 0,
        'learning_rate',
        'must be a non-negative number',
        c.learning_rate,
    )
    require(
        _is_int(c.warmup_steps) and c.warmup_steps >= 0,
        'warmup_steps',
        'must be a non-negative integer',
        c.warmup_steps,
    )
    require(
        c.grad_clip_norm is None or (_is_number(c.grad_clip_norm) and c.grad_clip_norm >= 0),
        'grad_clip_norm',
        'must be a non-negative number (0 = off)',
        c.grad_clip_norm,
    )
    require(
        _is_number(c.weight_decay) and c.weight_decay >= 0,
        'weight_decay',
        'must be a non-negative number',
        c.weight_decay,
    )
    require(
        c.weight_decay == 0 or c.optimizer == 'adamw',
        'weight_decay',
        f'is only used by optimizer=adamw (got optimizer={c.optimizer!r}); set it to 0',
        c.weight_decay,
    )
    require(
        _is_number(c.min_lr_ratio) and 0 <= c.min_lr_ratio <= 1,
        'min_lr_ratio',
        'must lie in [0, 1]',
        c.min_lr_ratio,
    )
    for key in ('momentum', 'rmsprop_decay', 'adam_b1', 'adam_b2'):
        require(_is_number(c[key]) and 0 <= c[key] < 1, key, 'must lie in [0, 1)', c[key])
    for key in ('adam_eps', 'rmsprop_eps'):
        require(_is_number(c[key]) and c[key] > 0, key, 'must be positive', c[key])
    require(
        _is_int(c.grad_accum_steps) and c.grad_accum_steps >= 1,
        'grad_accum_steps',
        'must be a positive integer',
        c.grad_accum_steps,
    )
    for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
        require(
            _is_int(c[key]) and c[key] >= 0,
            key,
            'must be a non-negative integer (0 = only at the end)',
            c[key],
        )
    require(
        _is_int(c.keep_checkpoints) and c.keep_checkpoints >= 1,
        'keep_checkpoints',
        'must be a positive integer',
        c.keep_checkpoints,
    )
    require(
        _is_int(c.prefetch) and c.prefetch >= 0,
        'prefetch',
        'must be a non-negative integer (batches made ahead; 0 = none)',
        c.prefetch,
    )
    if c.schedule == 'rsqrt':
        d_model = c.model.get('d_model') if 'model' in c else None
        require(
            _is_int(d_model) and d_model > 0,
            'model.d_model',
            'schedule=rsqrt scales by d_model^-0.5 and needs a positive model.d_model',
            d_model,
        )
        require(
            c.warmup_steps > 0,
            'warmup_steps',
            'schedule=rsqrt needs warmup_steps > 0',
            c.warmup_steps,
        )
    compute_dtype(c.precision)  # raises ConfigError naming the choices
    _check_rates(c, '')
    from seqmodels.training.sharding import parse_mesh

    try:
        parse_mesh(c.mesh, num_devices)
    except ValueError as error:
        raise ConfigError(f'config.mesh={error}') from None
    if num_devices is not None:
        per_step = num_devices * c.grad_accum_steps
        require(
            c.batch_size % per_step == 0,
            'batch_size',
            f'must be divisible by the number of devices ({num_devices}) x '
            f'grad_accum_steps ({c.grad_accum_steps}) = {per_step}',
            c.batch_size,
        )
    return c


def parse_flags(argv: list[str], flag_values=None) -> list[str]:
    """absl flags parser that turns bad config flags into one clear line.

    Use as `app.run(main, flags_parser=parse_flags)`. Exits with status 1 and a
    one-line message for a config file that does not exist, an unknown variant
    (any ConfigError raised by the file's get_config), unknown `--config.KEY`s
    and unparsable values.
    """
    from absl import flags

    flag_values = flags.FLAGS if flag_values is None else flag_values
    # config_flags defers a missing file's error to the first use of the config,
    # which would be a traceback in the middle of the run.
    missing = _missing_config_file(argv, flag_values)
    if missing:
        _exit_with(missing)
    try:
        return flag_values(argv)
    except flags.Error as error:
        # config_flags re-raises get_config's error with its traceback as text,
        # and absl wraps that again; the original is at the end of the chain.
        cause = _original_error(error)
        if isinstance(cause, ConfigError):
            _exit_with(str(cause))
        sys.stderr.write(f'FATAL Flags parsing error: {error}\n')
    except (KeyError, AttributeError) as error:
        # config_flags surfaces a missing key as a KeyError/AttributeError whose
        # text is a repr of a repr; recover the key and the suggestion.
        text = str(error).replace('\\n', '\n').replace("\\'", "'")
        key = re.search(r"'([^'\n]+)'", text)
        hint = re.search(r'Did you mean "([^"]+)"', text)
        flag = next(
            (
                a.split('=')[0]
                for a in argv[1:]
                if key and a.split('=')[0].endswith('.' + key.group(1))
            ),
            None,
        )
        message = f'unknown config key {flag or (key and key.group(1)) or text}'
        if hint:
            message += f' (did you mean {hint.group(1)}?)'
        sys.stderr.write(f'FATAL Flags parsing error: {message}\n')
    sys.stderr.write('Pass --helpshort or --helpfull to see help on flags.\n')
    sys.exit(1)


def _exit_with(message: str) -> None:
    sys.stderr.write(f'FATAL Flags parsing error: {message}\n')
    sys.exit(1)


def _original_error(error: BaseException) -> BaseException:
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    return error


def _defines_get_config(directory: str, name: str) -> bool:
    """Whether configs/<name> is an experiment config (configs/claims.py, say, is not)."""
    try:
        with open(os.path.join(directory, name), encoding='utf-8') as f:
            return 'def get_config(' in f.read()
    except OSError:
        return False


def _missing_config_file(argv: list[str], flag_values) -> str | None:
    """The message for a config-file flag on `argv` whose file is absent, else None."""
    from ml_collections.config_flags import config_flags

    args = argv[1 : argv.index('--')] if '--' in argv else argv[1:]
    for i, arg in enumerate(args):
        match = re.fullmatch(r'--?([\w-]+)(?:=(.*))?', arg, re.DOTALL)
        if not match or match.group(1) not in flag_values:
            continue
        name, value = match.groups()
        if not isinstance(flag_values[name].parser, config_flags.ConfigFileFlagParser):
            continue
        if value is None:  # --config FILE
            value = args[i + 1] if i + 1 < len(args) else ''
        path = value.split(':', 1)[0]
        if os.path.isfile(path):
            continue
        if not path:
            return f'--{name} names no config file; pass --{name}=configs/<experiment>.py'
        problem = 'is a directory' if os.path.isdir(path) else 'does not exist'
        directory = os.path.dirname(path) or '.'
        if os.path.isdir(directory):
            names = sorted(
                f
                for f in os.listdir(directory)
                if f.endswith('.py') and not f.startswith('_') and _defines_get_config(directory, f)
            )
            fix = (
                f'the config files in {directory}/ are: {", ".join(names)}'
                if names
                else f'{directory}/ holds no config files'
            )
        else:
            fix = f'paths are relative to the working directory {os.getcwd()}'
        return f'--{name}={value}: config file {path} {problem}; {fix}'
    return None
