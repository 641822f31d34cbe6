r"""GPT: pre-train a subword language model, fine-tune it on a labelled task, evaluate,
predict and sample (Radford et al. 2018, 2019).

    # Train (pre-training or fine-tuning, by the config's dataset; running the same
    # command again resumes from WORKDIR/checkpoints):
    python -m experiments.gpt --config=configs/gpt.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Fine-tuned run: accuracy, per-class accuracy and confusion matrix on the test split
    # (else validation), WORKDIR/confusion_matrix.{png,csv}; pre-trained run: validation
    # loss and perplexity. Latest checkpoint, or --step=N:
    python -m experiments.gpt --mode=evaluate --workdir=DIR [--step=N]
    # Fine-tuned run: one label a line for each example line (the labelled format
    # without the label), stdin and stdout when the flags are omitted:
    python -m experiments.gpt --mode=predict --workdir=DIR [--input=FILE] [--output=FILE]
    # Stream a continuation of a prompt (KV cache; temperature 0 is greedy):
    python -m experiments.gpt --mode=sample --workdir=DIR --prompt='The' \
        [--num_tokens=200] [--temperature=0.8] [--top_k=K] [--top_p=P] [--seed=S]

The other modes read the run's own WORKDIR/config.json and WORKDIR/tokenizer.model, so
they need no --config.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from absl import flags, logging

from experiments import common
from seqmodels import evaluation, models, training
from seqmodels.tasks import gpt as gpt_tasks
from seqmodels.tasks import transfer
from seqmodels.data import gpt_inputs, labeled, text_corpus, tokenizers
from seqmodels.data.split_batches import SplitBatches
from seqmodels.inference import Sampler, predict_logits

_NUM_TOKENS = flags.DEFINE_integer('num_tokens', 200, 'sample: subword tokens to generate.')


def validate(config) -> None:
    """Every key of a GPT config, checked before anything is read or compiled."""
    common.validate(config, ('gpt',))
    transfer.check_config(config, 'gpt')
    require, m = training.require, config.model
    if transfer.is_finetuning(config):
        require(
            config.lm_coef >= 0,
            'lm_coef',
            'must be >= 0 (0 = no auxiliary LM loss)',
            config.lm_coef,
        )
        require(
            config.num_epochs >= 0,
            'num_epochs',
            'must be >= 0 (0 = num_train_steps decides)',
            config.num_epochs,
        )
    else:
        require(
            m.num_classes == 0,
            'model.num_classes',
            'must be 0 for pre-training (a fine-tuning run adds the head)',
            m.num_classes,
        )
        require(
            0 < config.val_fraction < 1, 'val_fraction', 'must lie in (0, 1)', config.val_fraction
        )
        require(config.sample_tokens >= 0, 'sample_tokens', 'must be >= 0', config.sample_tokens)
        require(
            config.num_epochs == 0,
            'num_epochs',
            'is for fine-tuning; pre-training runs num_train_steps',
            config.num_epochs,
        )


def build(config, workdir: str, restore: bool = True):
    """(model, task, labelled data or None, tokenizer) for a validated config."""
    if transfer.is_finetuning(config):
        return gpt_tasks.build_finetuning(config, workdir, restore)
    model, task = gpt_tasks.build_pretraining(config, workdir)
    return model, task, None, task.vocab.tokenizer


def train(config, workdir):
    validate(config)
    model, task, data, tokenizer = build(config, workdir)
    logging.info(
        'data: %s; %d subword pieces',
        data.describe() if data else task.data.description,
        tokenizer.vocab_size,
    )
    state = training.train_and_evaluate(config, workdir, task)
    if jax.process_index() != 0:
        return
    if data is None:
        print(f'\n--- sample after {config.num_train_steps} steps ---')
        generate(
            model,
            jax.device_get(state.params),
            tokenizer,
            config.sample_prompt,
            100,
            config.sample_temperature,
            None,
            None,
            0,
        )
        print('---')
        common.print_run_summary(workdir, 'gpt', 'sample')
        return
    result = evaluate(workdir)
    print(
        f'{result["split"]} accuracy after step {config.num_train_steps}: '
        f'{result["accuracy"]:.4f} ({result["count"]} examples)'
    )
    common.print_run_summary(workdir, 'gpt', 'evaluate')


def generate(model, params, tokenizer, prompt, num_tokens, temperature, top_k, top_p, seed):
    sys.stdout.write(prompt)
    Sampler(model, params, tokenizers.StreamingVocab(tokenizer)).generate(
        prompt, num_tokens, jax.random.key(seed), temperature, top_k, top_p, stream=sys.stdout
    )
    sys.stdout.write('\n')


def _inputs(batches):
    for batch in batches:
        yield {
            'inputs': {'tokens': batch['tokens'], 'last': batch['last']},
            'weights': batch['weights'],
            'labels': batch.get('labels', np.zeros(len(batch['weights']), np.int32)),
        }


def _logits(task, params, batches):
    return predict_logits(
        lambda p, inputs: task.logits(p, inputs)[1], params, _inputs(batches), 'inputs'
    )


def evaluate(workdir: str, step: int | None = None) -> dict:
    """Fine-tuned run: the test split's (else validation's) accuracy, per-class accuracy
    and confusion matrix (written to WORKDIR/confusion_matrix.{png,csv}). Pre-trained
    run: the validation loss and perplexity."""
    config = common.load_run_config(workdir, 'gpt')
    model, task, data, _ = build(config, workdir, restore=False)
    params = training.restore_params(workdir, step)
    if data is None:
        mesh = training.make_mesh()
        return training.evaluate(task, training.make_eval_step(task, mesh), params, mesh)
    split = next((s for s in ('test', 'validation') if s in data.splits), None)
    if split is None:
        raise common.UsageError(f'{data.name} has no test or validation split to evaluate')
    logits, labels = _logits(task, params, task.batches.eval_batches(split))
    title = f'{data.name} ({split})'
    return dict(
        evaluation.classification_report(logits, labels, data.class_names, workdir, title),
        split=split,
    )


def evaluate_mode(workdir):
    evaluation.print_evaluation(evaluate(workdir, common.STEP.value))


def predict(workdir: str, lines: list[str], source: str, step: int | None = None) -> list[str]:
    """The predicted class name of each example line (the labelled format, no label)."""
    config = common.load_run_config(workdir, 'gpt')
    if not transfer.is_finetuning(config):
        raise common.UsageError(
            f'{workdir} is a pre-training run: predict needs a '
            'fine-tuned one (sample continues text)'
        )
    model, task, data, tokenizer = build(config, workdir, restore=False)
    params = training.restore_params(workdir, step)
    examples = labeled.parse_lines(
        lines, config.task_type, with_labels=False, source=source, normalize=config.normalize
    )
    if not examples:
        return []
    encoded = gpt_inputs.encode(examples, config.task_type, tokenizer, config.seq_len)
    batches = SplitBatches({'input': encoded}, config.batch_size, 0)
    logits, _ = _logits(task, params, batches.eval_batches('input'))
    if config.task_type == 'multiple_choice':  # the option index, however many options
        return [str(i) for i in logits.argmax(-1)]
    return [data.class_names[i] for i in logits.argmax(-1)]


def predict_mode(workdir):
    source = common.INPUT.value or '<stdin>'
    lines = common.read_lines(common.INPUT.value)
    common.write_lines(predict(workdir, lines, source, common.STEP.value), common.OUTPUT.value)


def sample_mode(workdir):
    config = common.load_run_config(workdir, 'gpt')
    temperature, top_k, top_p = common.sampling_options(config, _NUM_TOKENS.value, 'num_tokens')
    tokenizer = tokenizers.SentencePieceTokenizer.load(os.path.join(workdir, transfer.TOKENIZER))
    model = models.from_config(config)
    params = training.restore_params(workdir, common.STEP.value)
    prompt = config.sample_prompt if common.PROMPT.value is None else common.PROMPT.value
    prompt = text_corpus.normalize_text(prompt, config.normalize)
    generate(
        model,
        params,
        tokenizer,
        prompt,
        _NUM_TOKENS.value,
        temperature,
        top_k,
        top_p,
        common.SEED.value,
    )


if __name__ == '__main__':
    common.run_driver(
        train,
        {'evaluate': evaluate_mode, 'predict': predict_mode, 'sample': sample_mode},
        'configs/gpt.py',
    )
