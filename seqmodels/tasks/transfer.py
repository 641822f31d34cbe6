"""From a pre-trained run to a fine-tuned one: what GPT and BERT runs share.

A fine-tuning run names its pre-trained run in `init_from`. It copies that run's
tokenizer (the text splits into the same pieces, the special tokens keep their ids),
must see the same text normalisation and build the same architecture, and with
`load_weights` (the default) starts from exactly the pre-trained parameters, only the
new head initialised fresh. `load_weights=False` keeps the tokenizer and architecture
but starts from random weights: the ablation that measures what pre-training brings.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence

from seqmodels import training
from seqmodels.data import labeled, text_corpus, tokenizers
from seqmodels.errors import require

TOKENIZER = 'tokenizer.model'  # in the workdir, with its record tokenizer.model.json


def is_finetuning(config) -> bool:
    """A labelled dataset fine-tunes; pre-training text pre-trains."""
    return labeled.is_labeled_dataset(config.dataset)


def check_config(config, family: str) -> None:
    """The keys GPT and BERT configs share, checked before anything is read."""
    m = config.model
    require(
        text_corpus.is_text_dataset(config.dataset) or is_finetuning(config),
        'dataset',
        "must be pre-training text ('python_docs', 'text:PATH', 'tfds:NAME') or labelled "
        "('python_docs_cloze', 'labeled:DIR')",
        config.dataset,
    )
    require(
        config.normalize in text_corpus.NORMALIZATIONS,
        'normalize',
        f'must be one of {", ".join(text_corpus.NORMALIZATIONS)}',
        config.normalize,
    )
    require(
        isinstance(config.seq_len, int) and 5 <= config.seq_len <= m.max_len,
        'seq_len',
        f'must be an integer in [5, model.max_len={m.max_len}]',
        config.seq_len,
    )
    require(
        isinstance(m.vocab_size, int) and m.vocab_size >= 0,
        'model.vocab_size',
        "must be a non-negative integer (0 = the tokenizer's size)",
        m.vocab_size,
    )
    require(
        isinstance(m.num_classes, int) and m.num_classes >= 0,
        'model.num_classes',
        'must be a non-negative integer (0 = from the data)',
        m.num_classes,
    )
    require(
        config.tokenizer_model_type in tokenizers.MODEL_TYPES,
        'tokenizer_model_type',
        f'must be one of {", ".join(tokenizers.MODEL_TYPES)}',
        config.tokenizer_model_type,
    )
    require(
        isinstance(config.tokenizer_vocab_size, int) and config.tokenizer_vocab_size >= 16,
        'tokenizer_vocab_size',
        'must be an integer >= 16',
        config.tokenizer_vocab_size,
    )
    require(
        config.num_eval_batches >= 0,
        'num_eval_batches',
        'must be >= 0 (0 = all)',
        config.num_eval_batches,
    )
    if not is_finetuning(config):
        require(
            not config.init_from,
            'init_from',
            'is for fine-tuning runs (a labelled '
            'dataset); a pre-training run resumes from its own workdir',
            config.init_from,
        )
        return
    require(
        config.task_type in labeled.TASK_TYPES,
        'task_type',
        f'must be one of {", ".join(labeled.TASK_TYPES)}',
        config.task_type,
    )
    require(
        config.load_weights or config.init_from,
        'load_weights',
        'False takes the tokenizer and architecture of init_from; set init_from',
        config.load_weights,
    )
    require(
        not config.init_from or os.path.isdir(os.path.expanduser(config.init_from)),
        'init_from',
        f'is not a directory (it names the workdir of a {family.upper()} pre-training run)',
        config.init_from,
    )


def tokenizer_for(
    config,
    workdir: str,
    sentences: Callable[[], Iterable[str]],
    special_tokens: Sequence[str],
    family: str,
) -> tokenizers.SentencePieceTokenizer:
    """WORKDIR/tokenizer.model: a copy of the pre-trained run's (fine-tuning from one),
    else reloaded, else trained on `sentences()` (the training text) with
    `special_tokens` reserved."""
    path = os.path.join(workdir, TOKENIZER)
    if not config.get('init_from'):
        return tokenizers.load_or_train_sentencepiece(
            path,
            sentences(),
            vocab_size=config.tokenizer_vocab_size,
            model_type=config.tokenizer_model_type,
            special_tokens=special_tokens,
        )
    source = os.path.join(os.path.expanduser(config.init_from), TOKENIZER)
    if not os.path.exists(source):
        raise FileNotFoundError(
            f'{source} does not exist: init_from must name the workdir '
            f'of a {family.upper()} pre-training run'
        )
    os.makedirs(workdir, exist_ok=True)
    for suffix in ('', '.json'):
        if os.path.exists(source + suffix) and not os.path.exists(path + suffix):
            # Every process of a multi-process run copies: each renames a whole file.
            fd, tmp = tempfile.mkstemp(dir=workdir, prefix='.tmp_')
            os.close(fd)
            shutil.copyfile(source + suffix, tmp)
            os.replace(tmp, path + suffix)
    return tokenizers.SentencePieceTokenizer.load(path)


def pretrained_params(config, family: str):
    """The parameters of the run `init_from` names (None without `load_weights`), its
    config checked against `config`; fills model.vocab_size from it when left at 0."""
    init_from = os.path.expanduser(config.init_from)
    source = os.path.join(config.init_from, 'config.json')
    pretrained = training.read_run_config(init_from, 'a finished training run')
    require(
        pretrained.model.name == family,
        'init_from',
        f'is not a {family.upper()} run (model.name={pretrained.model.name!r} in {source})',
        config.init_from,
    )
    require(
        not is_finetuning(pretrained),
        'init_from',
        f'is a fine-tuning run '
        f'(dataset={pretrained.dataset!r} in {source}); name a pre-training run',
        config.init_from,
    )
    require(
        pretrained.get('normalize') == config.normalize,
        'normalize',
        f"must be the pre-trained run's ({pretrained.get('normalize')!r} in {source}): "
        'both steps must see the same text',
        config.normalize,
    )
    with config.unlocked():
        config.model.vocab_size = config.model.vocab_size or pretrained.model.vocab_size
    training.check_compatible(config.model, pretrained.model, source)
    return training.restore_pretrained(init_from)[0] if config.load_weights else None
