r"""Image classification with a Vision Transformer: train, evaluate, look at attention.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.vit --config=configs/vit.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Top-1 accuracy of the latest checkpoint (or --step=N) on the test split, and a
    # confusion matrix (WORKDIR/confusion_matrix.png, counts in confusion_matrix.csv):
    python -m experiments.vit --mode=evaluate --workdir=DIR [--step=N]
    # Where the model looks: attention maps over the first N test images
    # (WORKDIR/attention/<i>_last_layer.png, or <i>_rollout.png):
    python -m experiments.vit --mode=attention --workdir=DIR [--num_images=8] [--rollout] \
        [--step=N]

The attention map of a [class]-token model is, by default, the [class] token's attention
to the patches in the last layer, averaged over heads. With --rollout (always, for
pool='gap' models, which have no [class] token) it is attention rollout (Abnar &
Zuidema 2020): through every layer, so it shows which input patches the pooled
representation is mixed from.

The evaluate and attention modes read the run's own WORKDIR/config.json, so they need
no --config.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from experiments import common
from seqmodels import analysis, evaluation, models, plots, training
from seqmodels.data.images import DataError, ImageData, check_patch_size, make_image_data
from seqmodels.inference import predict_logits
from seqmodels.tasks.vit import ViTTask

_NUM_IMAGES = flags.DEFINE_integer('num_images', 4, 'attention: how many test images.')
_ROLLOUT = flags.DEFINE_bool(
    'rollout',
    False,
    'attention: attention rollout through all '
    'layers instead of the last layer ([class] models; GAP models '
    'always use rollout).',
)


def validate(config: ml_collections.ConfigDict) -> None:
    """Everything that can be checked without the data, before anything compiles."""
    common.validate(config, ('vit',))
    require = training.require
    m = config.model
    for key in ('image_size', 'num_classes', 'num_channels'):
        require(
            isinstance(m.get(key, 0), int) and m.get(key, 0) >= 0,
            f'model.{key}',
            'must be a non-negative integer (0 = from the data)',
            m.get(key),
        )
    require(
        isinstance(config.random_crop_padding, int) and config.random_crop_padding >= 0,
        'random_crop_padding',
        'must be a non-negative integer (0 = off)',
        config.random_crop_padding,
    )
    require(
        config.num_eval_batches >= 0,
        'num_eval_batches',
        'must be >= 0 (0 = all)',
        config.num_eval_batches,
    )
    if m.image_size:
        check_patch_size(m.image_size, m.patch_size)


def check_against_data(config: ml_collections.ConfigDict, data: ImageData) -> None:
    """Fills model.image_size, num_classes and num_channels left at 0; otherwise they must
    match the data."""
    height, width, _ = data.image_shape
    if height != width:
        raise DataError(
            f"dataset '{config.dataset}' holds {height}x{width} images; the ViT "
            'here takes square images (model.image_size)'
        )
    check_patch_size((height, width), config.model.patch_size)
    for key, actual in (
        ('image_size', height),
        ('num_classes', data.num_classes),
        ('num_channels', data.image_shape[-1]),
    ):
        given = config.model.get(key, 0)  # runs from before num_channels have none
        training.require(
            given in (0, actual),
            f'model.{key}',
            f"does not match dataset '{config.dataset}' ({actual}); set it to "
            f'{actual} or to 0 (= from the data)',
            given,
        )
        with config.unlocked():
            config.model[key] = actual


# --------------------------------------------------------------------------- #
# Modes.


def build(config):
    """Data, model and task for `config` (validated); fills model.image_size and
    model.num_classes from the data."""
    data = make_image_data(
        config.dataset,
        batch_size=config.batch_size,
        seed=config.seed,
        data_dir=os.path.expanduser(config.data_dir),
        random_crop_padding=config.random_crop_padding,
        random_flip=config.random_flip,
    )
    check_against_data(config, data)
    model = models.from_config(config)
    return data, model, ViTTask(config, model, data)


def train(config, workdir):
    validate(config)
    data, model, task = build(config)
    logging.info(
        "data: '%s', %d train / %d test images of %s, %d classes",
        data.name,
        data.num_train,
        data.num_test,
        data.image_shape,
        data.num_classes,
    )
    training.train_and_evaluate(config, workdir, task)
    if jax.process_index() != 0:  # only the main process writes metrics and prints
        return
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        evals = [r for r in map(json.loads, f) if 'eval/accuracy' in r]
    if evals:
        print(
            f'test accuracy after step {evals[-1]["step"]}: '
            f'{evals[-1]["eval/accuracy"]:.4f} (loss {evals[-1]["eval/loss"]:.4f})'
        )
    common.print_run_summary(workdir, 'vit', 'evaluate')


def evaluate(workdir: str, step: int | None = None) -> dict:
    """Accuracy, loss and the confusion matrix of the latest checkpoint on the test split;
    writes WORKDIR/confusion_matrix.{png,csv}."""
    config = common.load_run_config(workdir, 'vit')
    data, model, task = build(config)
    params = training.restore_params(workdir, step)
    logits, labels = predict_logits(
        lambda p, images: model.apply({'params': p}, images, deterministic=True),
        params,
        data.eval_batches(0, 1),
        'images',
    )
    return evaluation.classification_report(
        logits, labels, data.class_names, workdir, f'{data.name} (test)'
    )


def draw_attention(
    workdir: str, num_images: int, rollout: bool = False, step: int | None = None
) -> list[str]:
    """Attention maps over the first `num_images` test images:
    WORKDIR/attention/<i>_last_layer.png or <i>_rollout.png."""
    config = common.load_run_config(workdir, 'vit')
    data, model, task = build(config)
    params = training.restore_params(workdir, step)
    batch = next(data.eval_batches(0, 1))
    num_images = min(num_images, data.num_test, len(batch['labels']))
    images = batch['images'][:num_images]
    scores = analysis.patch_attention(model, params, images, rollout)
    predictions = np.asarray(jax.jit(model.apply)({'params': params}, images)).argmax(-1)
    use_rollout = rollout or model.pool == 'gap'
    kind = 'attention rollout' if use_rollout else 'last-layer [class] attention'
    suffix = 'rollout' if use_rollout else 'last_layer'
    out_dir = os.path.join(workdir, 'attention')
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(num_images):
        label = data.class_names[batch['labels'][i]]
        guess = data.class_names[predictions[i]]
        raw = images[i] * data.std + data.mean  # the pixels as stored
        path = os.path.join(out_dir, f'{i}_{suffix}.png')
        paths.append(
            plots.plot_attention(
                raw, scores[i], path, f'test image {i}: {label}, predicted {guess}\n({kind})'
            )
        )
    return paths


def evaluate_mode(workdir):
    evaluation.print_evaluation(evaluate(workdir, common.STEP.value), split='test')


def attention_mode(workdir):
    if _NUM_IMAGES.value <= 0:
        raise common.UsageError(f'--num_images must be positive, got {_NUM_IMAGES.value}')
    for path in draw_attention(workdir, _NUM_IMAGES.value, _ROLLOUT.value, common.STEP.value):
        print(path)


if __name__ == '__main__':
    common.run_driver(
        train, {'evaluate': evaluate_mode, 'attention': attention_mode}, 'configs/vit.py:digits'
    )
