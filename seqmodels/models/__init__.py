"""Model families, each a composition of the blocks in `seqmodels.nn`.

A config's `model` sub-config names its family in `model.name`; the other keys are the
family's constructor fields but `dtype`, which the experiment config's `precision`
sets (`seqmodels.precision`), so `from_config(config)` is all a driver needs.
Every family module also defines `example_inputs(model, batch_size)`, the smallest
arguments that `model.init` accepts, which `seqmodels.summary` traces with
`jax.eval_shape`.
"""

from types import ModuleType

from seqmodels.errors import require
from seqmodels.precision import DEFAULT_PRECISION, compute_dtype
from seqmodels.models import bert, gpt, rnn_lm, seq2seq, sequence_rnn, transformer, vit
from seqmodels.models.bert import BERT
from seqmodels.models.gpt import GPT
from seqmodels.models.rnn_lm import RNNLM
from seqmodels.models.seq2seq import RNNSeq2Seq
from seqmodels.models.sequence_rnn import SequenceRNN
from seqmodels.models.transformer import Transformer
from seqmodels.models.vit import ViT
from seqmodels.nn.recurrent import CELLS, DROPOUT_KINDS
from seqmodels.nn.transformer import ACTIVATIONS, NORMS, REMAT_POLICIES

# model.name -> (module class, the file that defines its `example_inputs`).
FAMILIES: dict[str, tuple[type, ModuleType]] = {
    'rnn_lm': (RNNLM, rnn_lm),
    'sequence_rnn': (SequenceRNN, sequence_rnn),
    'seq2seq': (RNNSeq2Seq, seq2seq),
    'transformer': (Transformer, transformer),
    'gpt': (GPT, gpt),
    'bert': (BERT, bert),
    'vit': (ViT, vit),
}


# Fields a model sub-config does not set: `dtype` comes from config.precision.
_NOT_KEYS = {'parent', 'name', 'dtype'}


def from_config(config):
    """The model of an experiment config: `config.model` computing in `config.precision`
    (float32 for a run's config.json written before the key existed)."""
    return build_model(config.model, config.get('precision', DEFAULT_PRECISION))


def build_model(model_config, precision: str = DEFAULT_PRECISION):
    """Returns the flax module described by a `model` sub-config (a ConfigDict or dict),
    computing in `precision` ('f32' or 'bf16', `seqmodels.precision`)."""
    dtype = compute_dtype(precision)
    fields = dict(model_config)
    name = fields.pop('name', None)
    if name not in FAMILIES:
        raise ValueError(
            f'config key model.name={name!r} is not a model family; '
            f'choose one of {sorted(FAMILIES)}'
        )
    cls, _ = FAMILIES[name]
    known = set(cls.__dataclass_fields__) - _NOT_KEYS
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f'config keys {", ".join("model." + k for k in unknown)} are not fields of '
            f'{cls.__name__}; its fields are {sorted(known)}'
        )
    return cls(**fields, dtype=dtype)


def check_config(model_config) -> None:
    """Checks a `model` sub-config before anything is built or compiled; raises
    ConfigError naming the key. Each check applies to every family that has the key,
    so a new family gets them by naming its fields as the others do."""
    m = dict(model_config)
    name = m.get('name')
    require(
        name in FAMILIES,
        'model.name',
        f'is not a model family; choose one of {", ".join(sorted(FAMILIES))}',
        name,
    )
    require('dtype' not in m, 'model.dtype', 'is set by config.precision (f32 or bf16)')
    cls, _ = FAMILIES[name]
    unknown = sorted(set(m) - {'name'} - (set(cls.__dataclass_fields__) - _NOT_KEYS))
    require(
        not unknown,
        'model',
        f'{", ".join("model." + k for k in unknown)} '
        f'{"is not a field" if len(unknown) == 1 else "are not fields"} of {cls.__name__}',
    )
    for key in (
        'd_model',
        'num_heads',
        'd_ff',
        'num_layers',
        'num_encoder_layers',
        'num_decoder_layers',
        'hidden_size',
        'embed_dim',
        'patch_size',
        'max_len',
    ):
        if key in m:
            require(
                isinstance(m[key], int) and m[key] > 0,
                f'model.{key}',
                'must be a positive integer',
                m[key],
            )
    if 'key_size' in m:
        require(
            isinstance(m['key_size'], int) and m['key_size'] >= 0,
            'model.key_size',
            'must be a non-negative integer (0: d_model // num_heads)',
            m['key_size'],
        )
    # A key_size of its own frees each head's width from d_model / num_heads.
    if 'num_heads' in m and 'd_model' in m and not m.get('key_size'):
        require(
            m['d_model'] % m['num_heads'] == 0,
            'model.d_model',
            f'must be divisible by model.num_heads={m["num_heads"]}'
            + (' (or set model.key_size, the width d_k of each head)' if 'key_size' in m else ''),
            m['d_model'],
        )
    if 'cell' in m:
        require(m['cell'] in CELLS, 'model.cell', f'must be one of {", ".join(CELLS)}', m['cell'])
    if 'dropout_kind' in m:
        require(
            m['dropout_kind'] in DROPOUT_KINDS,
            'model.dropout_kind',
            f'must be one of {", ".join(DROPOUT_KINDS)}',
            m['dropout_kind'],
        )
    if 'readout' in m:
        require(
            m['readout'] in sequence_rnn.READOUTS,
            'model.readout',
            f'must be one of {", ".join(sequence_rnn.READOUTS)}',
            m['readout'],
        )
    if 'remat' in m:
        require(
            m['remat'] in REMAT_POLICIES,
            'model.remat',
            f'must be one of {", ".join(REMAT_POLICIES)}',
            m['remat'],
        )
    if 'norm' in m:
        require(m['norm'] in NORMS, 'model.norm', f'must be one of {", ".join(NORMS)}', m['norm'])
    if 'activation' in m:
        require(
            m['activation'] in ACTIVATIONS,
            'model.activation',
            f'must be one of {", ".join(ACTIVATIONS)}',
            m['activation'],
        )
    if name == 'transformer':
        position = m.get('position_embedding', 'sinusoidal')
        require(
            position in transformer.POSITION_EMBEDDINGS,
            'model.position_embedding',
            f'must be one of {", ".join(transformer.POSITION_EMBEDDINGS)}',
            position,
        )
        if position == 'sinusoidal' and isinstance(m.get('d_model'), int):
            require(
                m['d_model'] % 2 == 0,
                'model.d_model',
                'must be even for position_embedding=sinusoidal (sin and cos pairs)',
                m['d_model'],
            )
    if name == 'vit':
        require(
            m.get('pool', 'cls') in vit.POOLS,
            'model.pool',
            f'must be one of {", ".join(vit.POOLS)}',
            m.get('pool'),
        )
        position = m.get('position_embedding', 'learned')
        require(
            position in vit.POSITION_EMBEDDINGS,
            'model.position_embedding',
            f'must be one of {", ".join(vit.POSITION_EMBEDDINGS)}',
            position,
        )
        if m.get('use_position_embeddings', True) and position == 'sincos2d':
            require(
                m['d_model'] % 4 == 0,
                'model.d_model',
                'must be divisible by 4 for '
                'position_embedding=sincos2d (sin and cos of the row and of the column)',
                m['d_model'],
            )


def example_inputs(model_config, model, batch_size: int = 1):
    """The smallest arguments for `model.init`, from the family's `example_inputs`."""
    _, module = FAMILIES[model_config['name']]
    return module.example_inputs(model, batch_size)


def init_params(model_config, model, rng):
    """Fresh parameters of `model` (as a Task's `init_params` returns them)."""
    inputs = example_inputs(model_config, model)
    return model.init({'params': rng, 'dropout': rng}, *inputs)['params']


__all__ = [
    'BERT',
    'GPT',
    'RNNLM',
    'RNNSeq2Seq',
    'SequenceRNN',
    'Transformer',
    'ViT',
    'FAMILIES',
    'build_model',
    'check_config',
    'from_config',
    'example_inputs',
    'init_params',
]
