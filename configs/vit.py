r"""Vision Transformer image classification (Dosovitskiy et al. 2021, "An Image is Worth
16x16 Words: Transformers for Image Recognition at Scale").

    python -m experiments.vit --config=configs/vit.py[:VARIANT] --workdir=DIR

Variants (the part after the colon; `digits` when none is given):
  digits    the default: a 4-layer, 64-wide ViT with 2x2 patches on scikit-learn's 8x8
            handwritten digits (embedded, no download). Measured on 2 idle CPU cores:
            96.7% top-1 on the fixed 360-image test split, 41 s in all.
  small     a 4-layer, 64-wide ViT with 4x4 patches (49 tokens), global average pooling
            and fixed 2-D sin-cos positions, for 28x28 images: Fashion-MNIST from
            Debian's dataset-fashion-mnist (`idx:/usr/share/datasets/fashion-mnist`; any
            MNIST-format directory works: --config.dataset=idx:DIR). Random flips,
            label smoothing 0.1, AdamW with warmup + cosine, 15 epochs. Measured on 2 idle
            CPU cores: 90.2% top-1 on the 10,000 test images after its 7,200 steps, 22
            minutes in all (see the README).
  {ti,s,b,l,h}P
            the published sizes with P x P patches, P any divisor of 224 (b16, b32, l16,
            h14, s8, ...). Ti and S are DeiT's (Touvron et al. 2021, Table 1: 12 layers,
            D 192 / 384, 3 / 6 heads, MLP 4D); B, L and H are ViT's Table 1 (B 12 layers,
            D 768, MLP 3072, 12 heads, 86M parameters; L 24/1024/4096/16, 307M; H
            32/1280/5120/16, 632M). The optimisation is the paper's ImageNet recipe from
            scratch (§4.1, Appendix B.1, Table 3): 224 px, batch 4096, Adam(W) β1 0.9,
            β2 0.999, lr 3e-3 with 10k warmup steps then cosine decay, weight decay 0.3,
            dropout 0.1, 300 epochs, global gradient clipping at norm 1. The image
            pipeline does not resize, so point `dataset` at images of model.image_size
            pixels (and set model.image_size / model.num_classes to match your data).

`model.image_size` and `model.num_classes` must match the data; set them to 0 to have
them filled in from the data (--config.dataset=idx:DIR --config.model.image_size=0).
Any key can be overridden from the command line, e.g. --config.model.patch_size=4
--config.model.pool=gap --config.model.position_embedding=sincos2d.
"""

import re
from collections.abc import Mapping

import ml_collections

from seqmodels import training
from seqmodels.training.config import ConfigError, apply_overrides, select_variant

# Encoder sizes: (num_layers, d_model, num_heads, d_ff).
SIZES = {
    'ti': (12, 192, 3, 768),
    's': (12, 384, 6, 1536),
    'b': (12, 768, 12, 3072),
    'l': (24, 1024, 16, 4096),
    'h': (32, 1280, 16, 5120),
}

PAPER_IMAGE_SIZE = 224
FASHION_MNIST = 'idx:/usr/share/datasets/fashion-mnist'
DEFAULT_VARIANT = 'digits'


def vit_model(
    num_layers: int,
    d_model: int,
    num_heads: int,
    d_ff: int,
    patch_size: int,
    image_size: int = 0,
    num_classes: int = 0,
    num_channels: int = 0,
    dropout: float = 0.0,
) -> ml_collections.ConfigDict:
    """A `model` sub-config whose keys are exactly the ViT module's fields (0 for a size
    means: taken from the data)."""
    return ml_collections.ConfigDict(
        dict(
            name='vit',
            image_size=image_size,
            num_channels=num_channels,
            patch_size=patch_size,
            num_classes=num_classes,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            d_ff=d_ff,
            dropout=dropout,
            attention_dropout=0.0,
            pool='cls',
            use_position_embeddings=True,
            position_embedding='learned',
            # A typed placeholder, so that --config.model.representation_size=768 parses.
            representation_size=ml_collections.config_dict.placeholder(int),
            head_zero_init=True,
            layer_norm_epsilon=1e-6,
            scan_layers=False,
            remat='none',
        )
    )


def base_config() -> ml_collections.ConfigDict:
    """The `digits` variant; the others override it."""
    config = training.default_config()
    config.seed = 0

    # Data. `dataset`: digits (embedded), idx:DIR (MNIST format), tfds:NAME[/CONFIG].
    config.dataset = 'digits'
    config.data_dir = '~/.cache/seqmodels/tfds'
    config.random_crop_padding = 0  # pixels of black padding before a random crop
    config.random_flip = False  # left-right; wrong for digits, fine for clothes
    config.num_eval_batches = 0  # 0 = the whole test split

    config.label_smoothing = 0.0

    # Optimisation (engine keys, see seqmodels.training.config).
    config.optimizer = 'adamw'
    config.schedule = 'warmup_cosine'
    config.min_lr_ratio = 0.0
    config.grad_clip_norm = 1.0
    config.batch_size = 64
    config.num_train_steps = 1500
    config.learning_rate = 2e-3
    config.warmup_steps = 100
    config.weight_decay = 0.05
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500

    config.model = vit_model(
        num_layers=4, d_model=64, num_heads=4, d_ff=128, patch_size=2, image_size=8, num_classes=10
    )
    return config


VARIANTS = {
    'digits': {},
    'small': {
        'dataset': FASHION_MNIST,
        'random_flip': True,
        'label_smoothing': 0.1,
        # 4x4 patches: 7x7 patches are cheaper per image but topped out near 89% here (6
        # layers, 96 wide, 19-22 epochs, with or without random crops). Global average
        # pooling and fixed 2-D sin-cos positions as in Beyer et al. 2022 ("Better plain
        # ViT baselines"); with them this config reached 90.2% (README).
        'model.patch_size': 4,
        'model.image_size': 28,
        'model.pool': 'gap',
        'model.position_embedding': 'sincos2d',
        'batch_size': 128,
        'num_train_steps': 7200,  # 15.4 epochs of the 60,000 training images
        'learning_rate': 3e-3,
        'warmup_steps': 500,
        'log_every_steps': 100,
        'eval_every_steps': 1000,
        'checkpoint_every_steps': 1000,
    },
}
_PAPER_VARIANTS = (
    f'a size {"/".join(SIZES)} followed by a patch size dividing '
    f'{PAPER_IMAGE_SIZE} (e.g. b16, b32, l16, h14)'
)


def paper_variant(size: str, patch_size: int) -> dict:
    """The overrides of the published size `size` with `patch_size` patches (e.g. b16)."""
    num_layers, d_model, num_heads, d_ff = SIZES[size]
    return {
        'model': vit_model(
            num_layers,
            d_model,
            num_heads,
            d_ff,
            patch_size=patch_size,
            image_size=PAPER_IMAGE_SIZE,
            num_classes=1000,
            num_channels=3,
            dropout=0.1,
        ),
        'dataset': 'tfds:imagenet2012',
        'batch_size': 4096,
        'num_train_steps': 93_836,  # 300 epochs of ImageNet's 1,281,167 images
        'learning_rate': 3e-3,
        'warmup_steps': 10_000,
        'weight_decay': 0.3,
        'log_every_steps': 100,
        'eval_every_steps': 5000,
        'checkpoint_every_steps': 5000,
    }


def _variant_overrides(variant: str) -> Mapping:
    match = re.fullmatch(r'(ti|s|b|l|h)(\d+)', variant)
    if not match:
        return select_variant(VARIANTS, variant, __file__, also=_PAPER_VARIANTS)
    size, patch_size = match.group(1), int(match.group(2))
    if patch_size == 0 or PAPER_IMAGE_SIZE % patch_size:
        raise ConfigError(
            f'unknown variant {variant!r}: the patch size {patch_size} does not divide '
            f'the {PAPER_IMAGE_SIZE}-pixel images; use a divisor of {PAPER_IMAGE_SIZE} '
            f'(e.g. {size}16, {size}32) or override --config.model.patch_size'
        )
    return paper_variant(size, patch_size)


def get_config(variant: str = DEFAULT_VARIANT) -> ml_collections.ConfigDict:
    overrides = _variant_overrides(variant or DEFAULT_VARIANT)
    return apply_overrides(base_config(), overrides)


# --------------------------------------------------------------------------- #
# Sweeps (seqmodels.sweep; the README's "Sweeps" section):
#   python -m experiments.sweep --config=configs/vit.py[:VARIANT] --sweep=NAME \
#       --workdir=DIR [--parallel=N] --objective=eval/accuracy --direction=max


def get_sweep(name: str) -> list[dict]:
    """The trials (dicts of config overrides) of sweep `name`:

    patch_depth     patch size 1 / 2 / 4 x depth 2 / 4 / 8 on the 8x8 digits (the
                    default variant): 64, 16 or 4 tokens; 9 runs of under a minute
    patch_depth_28  patch size 4 / 7 / 14 x depth 2 / 4 / 8 for 28x28 images
                    (--config=configs/vit.py:small): 49, 16 or 4 tokens; 9 runs
    """
    from seqmodels import sweep as sw

    depths = sw.axis('model.num_layers', [2, 4, 8])
    sweeps = {
        'patch_depth': sw.product(sw.axis('model.patch_size', [1, 2, 4]), depths),
        'patch_depth_28': sw.product(sw.axis('model.patch_size', [4, 7, 14]), depths),
    }
    if name not in sweeps:
        raise ValueError(f'unknown vit sweep {name!r}; choose one of {", ".join(sweeps)}')
    return sweeps[name]
