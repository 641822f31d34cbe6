"""Model families, each a composition of the blocks in `seqmodels.nn`.

A config's `model` sub-config names its family in `model.name`; the other keys are the
family's constructor fields, so `build_model(config.model)` is all a driver needs.
Every family module also defines `example_inputs(model, batch_size)`, the smallest
arguments that `model.init` accepts, which `seqmodels.summary` traces with
`jax.eval_shape`.
"""

from types import ModuleType

from seqmodels.models import bert, gpt, rnn_lm, seq2seq, transformer, vit
from seqmodels.models.bert import BERT
from seqmodels.models.gpt import GPT
from seqmodels.models.rnn_lm import RNNLM
from seqmodels.models.seq2seq import RNNSeq2Seq
from seqmodels.models.transformer import Transformer
from seqmodels.models.vit import ViT

# model.name -> (module class, the file that defines its `example_inputs`).
FAMILIES: dict[str, tuple[type, ModuleType]] = {
    "rnn_lm": (RNNLM, rnn_lm),
    "seq2seq": (RNNSeq2Seq, seq2seq),
    "transformer": (Transformer, transformer),
    "gpt": (GPT, gpt),
    "bert": (BERT, bert),
    "vit": (ViT, vit),
}


def build_model(model_config):
    """Returns the flax module described by a `model` sub-config (a ConfigDict or dict)."""
    fields = dict(model_config)
    name = fields.pop("name", None)
    if name not in FAMILIES:
        raise ValueError(
            f"config key model.name={name!r} is not a model family; "
            f"choose one of {sorted(FAMILIES)}"
        )
    cls, _ = FAMILIES[name]
    known = set(cls.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"config keys {', '.join('model.' + k for k in unknown)} are not fields of "
            f"{cls.__name__}; its fields are {sorted(known)}"
        )
    return cls(**fields)


def example_inputs(model_config, model, batch_size: int = 1):
    """The smallest arguments for `model.init`, from the family's `example_inputs`."""
    _, module = FAMILIES[model_config["name"]]
    return module.example_inputs(model, batch_size)


__all__ = ["BERT", "GPT", "RNNLM", "RNNSeq2Seq", "Transformer", "ViT", "FAMILIES",
           "build_model", "example_inputs"]
