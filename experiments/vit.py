r"""Image classification with a Vision Transformer: train, evaluate, look at attention.

    # Train (running the same command again resumes from WORKDIR/checkpoints):
    python -m experiments.vit --config=configs/vit.py[:VARIANT] --workdir=DIR \
        [--config.KEY=VALUE ...]
    # Top-1 accuracy of the latest checkpoint on the test split, and a confusion matrix
    # (WORKDIR/confusion_matrix.png, counts in WORKDIR/confusion_matrix.csv):
    python -m experiments.vit --mode=evaluate --workdir=DIR
    # Where the model looks: attention maps over the first N test images
    # (WORKDIR/attention/<i>_last_layer.png, or <i>_rollout.png):
    python -m experiments.vit --mode=attention --workdir=DIR [--num_images=8] [--rollout]

The attention map of a [class]-token model is, by default, the [class] token's attention
to the patches in the last layer, averaged over heads. With --rollout (always, for
pool='gap' models, which have no [class] token) it is attention rollout (Abnar &
Zuidema 2020): through every layer, so it shows which input patches the pooled
representation is mixed from.

The evaluate and attention modes read the run's own WORKDIR/config.json, so they need
no --config.
"""

from __future__ import annotations

import csv
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging

from experiments import common
from seqmodels import models, training
from seqmodels.data.images import DataError, ImageData, check_patch_size, make_image_data
from seqmodels.training import sharding as sharding_lib

_NUM_IMAGES = flags.DEFINE_integer('num_images', 4, 'attention: how many test images.')
_ROLLOUT = flags.DEFINE_bool('rollout', False, 'attention: attention rollout through all '
                             'layers instead of the last layer ([class] models; GAP models '
                             'always use rollout).')


# --------------------------------------------------------------------------- #
# Config checks that belong to this experiment (the engine checks its own keys).

def validate(config: ml_collections.ConfigDict) -> None:
    """Everything that can be checked without the data, before anything compiles."""
    training.validate_config(config, num_devices=jax.device_count())
    require = training.require
    m = config.model
    require(m.name == 'vit', 'model.name', "must be 'vit'", m.name)
    for key in ('patch_size', 'd_model', 'num_layers', 'num_heads', 'd_ff'):
        require(isinstance(m[key], int) and m[key] > 0, f'model.{key}',
                'must be a positive integer', m[key])
    for key in ('image_size', 'num_classes'):
        require(isinstance(m[key], int) and m[key] >= 0, f'model.{key}',
                'must be a non-negative integer (0 = from the data)', m[key])
    require(m.d_model % m.num_heads == 0, 'model.d_model',
            f'must be divisible by model.num_heads={m.num_heads}', m.d_model)
    require(m.pool in ('cls', 'gap'), 'model.pool', "must be 'cls' or 'gap'", m.pool)
    require(m.position_embedding in ('learned', 'sincos2d'), 'model.position_embedding',
            "must be 'learned' or 'sincos2d'", m.position_embedding)
    if m.use_position_embeddings and m.position_embedding == 'sincos2d':
        require(m.d_model % 4 == 0, 'model.d_model',
                'must be divisible by 4 for position_embedding=sincos2d (sin and cos of '
                'the row and of the column)', m.d_model)
    require(isinstance(config.random_crop_padding, int) and config.random_crop_padding >= 0,
            'random_crop_padding', 'must be a non-negative integer (0 = off)',
            config.random_crop_padding)
    require(config.num_eval_batches >= 0, 'num_eval_batches', 'must be >= 0 (0 = all)',
            config.num_eval_batches)
    if m.image_size:
        check_patch_size(m.image_size, m.patch_size)


def check_against_data(config: ml_collections.ConfigDict, data: ImageData) -> None:
    """Fills model.image_size / model.num_classes left at 0; otherwise they must match."""
    height, width, _ = data.image_shape
    if height != width:
        raise DataError(f"dataset '{config.dataset}' holds {height}x{width} images; the ViT "
                        'here takes square images (model.image_size)')
    check_patch_size((height, width), config.model.patch_size)
    for key, actual in (('image_size', height), ('num_classes', data.num_classes)):
        given = config.model[key]
        training.require(given in (0, actual), f'model.{key}',
                         f"does not match dataset '{config.dataset}' ({actual}); set it to "
                         f'{actual} or to 0 (= from the data)', given)
        with config.unlocked():
            config.model[key] = actual


# --------------------------------------------------------------------------- #
# The task the training engine runs.

class ViTTask:
    """Softmax classification; the training loss uses label smoothing, eval does not."""

    def __init__(self, config, model: models.ViT, data: ImageData):
        self.config, self.model, self.data = config, model, data

    def init_params(self, rng):
        images = jnp.zeros((1, *self.data.image_shape), jnp.float32)
        return self.model.init({'params': rng, 'dropout': rng}, images)['params']

    def loss_fn(self, params, batch, rng, deterministic):
        logits = self.model.apply({'params': params}, batch['images'],
                                  deterministic=deterministic, rngs={'dropout': rng})
        targets = optax.smooth_labels(
            jax.nn.one_hot(batch['labels'], logits.shape[-1]), self.config.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        accuracy = (logits.argmax(-1) == batch['labels']).mean()
        return loss, {'accuracy': accuracy, 'num_examples': batch['labels'].shape[0]}

    def train_batch(self, step, process_index, process_count):
        return self.data.train_batch(step, process_index, process_count)

    def eval_metrics(self, params, batch):
        logits = self.model.apply({'params': params}, batch['images'], deterministic=True)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
        correct = logits.argmax(-1) == batch['labels']
        w = batch['weights']
        return {'loss': ((nll * w).sum(), w.sum()), 'accuracy': ((correct * w).sum(), w.sum())}

    def eval_batches(self, process_index, process_count):
        return self.data.eval_batches(process_index, process_count,
                                      self.config.num_eval_batches or None)


# --------------------------------------------------------------------------- #
# Attention maps.

def attention_weights(model: models.ViT, params, images) -> jax.Array:
    """[num_layers, B, heads, T, T]: every layer's softmax attention (sown by the
    attention module into 'intermediates'), in layer order."""
    _, state = model.apply({'params': params}, images, deterministic=True,
                           mutable=['intermediates'])
    encoder = state['intermediates']['encoder']
    if 'layers' in encoder:  # scan_layers: already stacked on a leading layer axis
        return encoder['layers']['self_attention']['attention_weights'][0]
    return jnp.stack([encoder[f'layers_{i}']['self_attention']['attention_weights'][0]
                      for i in range(model.num_layers)])


def attention_rollout(weights) -> jax.Array:
    """Abnar & Zuidema 2020: [L, B, heads, T, T] -> [B, T, T].

    Each layer's attention is averaged over heads; the residual connection is accounted
    for by adding the identity and renormalising the rows; the layers are then composed,
    last layer leftmost: R = Â_L ··· Â_1. Row q of R says how much of token q's final
    state is mixed from each input token.
    """
    a = jnp.asarray(weights, jnp.float32).mean(axis=2)
    a = a + jnp.eye(a.shape[-1], dtype=a.dtype)
    a = a / a.sum(axis=-1, keepdims=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = jnp.einsum('bij,bjk->bik', layer, rollout)
    return rollout


@functools.partial(jax.jit, static_argnums=(0, 3))
def _patch_scores(model: models.ViT, params, images, rollout: bool):
    weights = attention_weights(model, params, images)
    if model.pool == 'cls' and not rollout:
        return weights[-1].mean(axis=1)[:, 0, 1:]
    r = attention_rollout(weights)
    return r[:, 0, 1:] if model.pool == 'cls' else r.mean(axis=1)


def patch_attention(model: models.ViT, params, images, rollout: bool = False) -> np.ndarray:
    """[B, grid, grid]: how much the representation the head reads attends to each patch.

    [class] models: the [class] token's row (of the last layer, or of the rollout).
    GAP models read the mean of all tokens, so their map is the mean row of the rollout.
    """
    g = model.grid_size
    return np.asarray(_patch_scores(model, params, images, bool(rollout))).reshape(-1, g, g)


# --------------------------------------------------------------------------- #
# Plots (matplotlib's Agg backend: files only, no display needed).

def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def plot_confusion_matrix(confusion: np.ndarray, class_names, path: str, title: str) -> str:
    plt = _pyplot()
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap='Blues')
    ax.set_xticks(range(n), class_names, rotation=45, ha='right')
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title(title)
    if n <= 30:
        threshold = confusion.max() / 2
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(confusion[i, j]), ha='center', va='center', fontsize=8,
                        color='white' if confusion[i, j] > threshold else 'black')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_attention(image: np.ndarray, scores: np.ndarray, path: str, title: str) -> str:
    """Three panels: the image; the patch-grid map upsampled to its pixels, with a colour
    bar of the attention weights; the map stretched to [min, max] over the image."""
    plt = _pyplot()
    lo, hi = image.min(), image.max()
    image = (image - lo) / max(hi - lo, 1e-8)
    shown = image[..., 0] if image.shape[-1] == 1 else image
    cmap = 'gray' if image.shape[-1] == 1 else None
    # Each patch's score covers its P x P pixels exactly (no smoothing across patches).
    p = image.shape[0] // scores.shape[0]
    heat = np.kron(scores, np.ones((p, p)))
    stretched = (heat - heat.min()) / max(heat.max() - heat.min(), 1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    axes[0].imshow(shown, cmap=cmap)
    bar = axes[1].imshow(heat, cmap='viridis')
    fig.colorbar(bar, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(shown, cmap=cmap)
    axes[2].imshow(stretched, cmap='jet', alpha=0.45, vmin=0.0, vmax=1.0)
    for ax, name in zip(axes, ('image', 'attention per patch', 'overlay')):
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- #
# Modes.

def build(config):
    """Data, model and task for `config` (validated); fills model.image_size and
    model.num_classes from the data."""
    data = make_image_data(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        data_dir=os.path.expanduser(config.data_dir),
        random_crop_padding=config.random_crop_padding, random_flip=config.random_flip)
    check_against_data(config, data)
    model = models.build_model(config.model)
    return data, model, ViTTask(config, model, data)


def train(config, workdir):
    validate(config)
    data, model, task = build(config)
    logging.info("data: '%s', %d train / %d test images of %s, %d classes", data.name,
                 data.num_train, data.num_test, data.image_shape, data.num_classes)
    training.train_and_evaluate(config, workdir, task)
    if jax.process_index() != 0:  # only the main process writes metrics and prints
        return
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        evals = [r for r in map(json.loads, f) if 'eval/accuracy' in r]
    if evals:
        print(f"test accuracy after step {evals[-1]['step']}: "
              f"{evals[-1]['eval/accuracy']:.4f} (loss {evals[-1]['eval/loss']:.4f})")
    print(f'checkpoints: {os.path.join(workdir, "checkpoints")}')
    print(f'metrics:     {os.path.join(workdir, "metrics.jsonl")} (TensorBoard: '
          f'tensorboard --logdir {workdir})')
    print(f'evaluate:    python -m experiments.vit --mode=evaluate --workdir={workdir}')


def predict(task: ViTTask, params) -> tuple[np.ndarray, np.ndarray]:
    """(logits [N, classes], labels [N]) over the test split (one process)."""
    mesh = training.make_mesh()
    replicated = sharding_lib.replicated(mesh)
    forward = jax.jit(
        lambda p, images: task.model.apply({'params': p}, images, deterministic=True),
        in_shardings=(replicated, sharding_lib.batch_sharding(mesh)), out_shardings=replicated)
    logits, labels = [], []
    for batch in task.data.eval_batches(0, 1):
        keep = batch['weights'] > 0
        out = forward(params, training.global_batch({'images': batch['images']}, mesh)['images'])
        logits.append(np.asarray(out)[keep])
        labels.append(batch['labels'][keep])
    return np.concatenate(logits), np.concatenate(labels)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """[true class, predicted class] counts."""
    return np.bincount(labels * num_classes + predictions,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def evaluate(workdir: str) -> dict:
    """Accuracy, loss and the confusion matrix of the latest checkpoint on the test split;
    writes WORKDIR/confusion_matrix.{png,csv}."""
    config = common.load_run_config(workdir, 'vit')
    data, model, task = build(config)
    params = training.restore_params(workdir)
    logits, labels = predict(task, params)
    predictions = logits.argmax(-1)
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    loss = float(-np.mean(np.take_along_axis(log_probs, labels[:, None], 1)))
    accuracy = float(np.mean(predictions == labels))
    confusion = confusion_matrix(labels, predictions, data.num_classes)
    png = os.path.join(workdir, 'confusion_matrix.png')
    plot_confusion_matrix(confusion, data.class_names, png,
                          f"{data.name}\ntop-1 accuracy {accuracy:.2%} "
                          f"on {len(labels)} test images")
    csv_path = os.path.join(workdir, 'confusion_matrix.csv')
    with open(csv_path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['true\\predicted', *data.class_names])
        for name, row in zip(data.class_names, confusion):
            writer.writerow([name, *row.tolist()])
    return {'accuracy': accuracy, 'loss': loss, 'confusion': confusion,
            'predictions': predictions, 'labels': labels, 'class_names': data.class_names,
            'png': png, 'csv': csv_path}


def draw_attention(workdir: str, num_images: int, rollout: bool = False) -> list[str]:
    """Attention maps over the first `num_images` test images:
    WORKDIR/attention/<i>_last_layer.png or <i>_rollout.png."""
    config = common.load_run_config(workdir, 'vit')
    data, model, task = build(config)
    params = training.restore_params(workdir)
    batch = next(data.eval_batches(0, 1))
    num_images = min(num_images, data.num_test, len(batch['labels']))
    images = batch['images'][:num_images]
    scores = patch_attention(model, params, images, rollout)
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
        paths.append(plot_attention(raw, scores[i], os.path.join(out_dir, f'{i}_{suffix}.png'),
                                    f'test image {i}: {label}, predicted {guess}\n({kind})'))
    return paths


def evaluate_mode(workdir):
    result = evaluate(workdir)
    print(json.dumps({'eval/accuracy': result['accuracy'], 'eval/loss': result['loss']},
                     sort_keys=True))
    print(f"confusion matrix: {result['png']} (counts: {result['csv']})")


def attention_mode(workdir):
    if _NUM_IMAGES.value <= 0:
        raise app.UsageError('--num_images must be positive')
    for path in draw_attention(workdir, _NUM_IMAGES.value, _ROLLOUT.value):
        print(path)


if __name__ == '__main__':
    common.run_driver({
        'train': lambda workdir: train(common.CONFIG.value, workdir),
        'evaluate': evaluate_mode,
        'attention': attention_mode,
    }, 'configs/vit.py:digits')
