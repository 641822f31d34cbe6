r"""Vision Transformer image classification.

Source: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", Table 1 (ViT-Base 12 layers, D 768, MLP 3072, 12 heads, 86M
parameters; ViT-Large 24/1024/4096/16, 307M) and the DeiT sizes Ti and S (Touvron et
al. 2021, Table 1: 12 layers; D 192 / 384, 3 / 6 heads, MLP 4·D). Training from
scratch on ImageNet (§4.1, Appendix B.1, Table 3): 224 px, batch 4096, Adam (β1 0.9,
β2 0.999), lr 3e-3 with 10k warmup steps then cosine decay, weight decay 0.3, dropout
0.1, 300 epochs, global gradient clipping at norm 1.

Variants: ti16, s16, b16, l16 (patch size 16, 224 px, 1,000 classes).

  python -m experiments.vit --config=configs/vit.py:b16 --workdir=DIR
"""

import ml_collections

VARIANTS = {
    'ti16': {'d_model': 192, 'num_layers': 12, 'num_heads': 3, 'd_ff': 768, 'dropout': 0.1},
    's16': {'d_model': 384, 'num_layers': 12, 'num_heads': 6, 'd_ff': 1536, 'dropout': 0.1},
    'b16': {'d_model': 768, 'num_layers': 12, 'num_heads': 12, 'd_ff': 3072, 'dropout': 0.1},
    'l16': {'d_model': 1024, 'num_layers': 24, 'num_heads': 16, 'd_ff': 4096, 'dropout': 0.1},
}


def get_config(variant: str = 'b16') -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r}; choose one of {sorted(VARIANTS)}')
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 4096
    config.num_train_steps = 93_000  # 300 ImageNet epochs at batch 4096
    config.learning_rate = 3e-3
    config.warmup_steps = 10_000
    config.grad_clip_norm = 1.0
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 5000
    # Placeholder until the image data pipeline lands.
    config.dataset = 'tfds:imagenet2012'

    config.model = ml_collections.ConfigDict()
    config.model.name = 'vit'
    config.model.image_size = 224
    config.model.patch_size = 16
    config.model.num_classes = 1000
    config.model.attention_dropout = 0.0
    config.model.pool = 'cls'
    config.model.use_position_embeddings = True
    config.model.position_embedding = 'learned'
    # ml_collections needs a typed placeholder to allow --config.model.representation_size=768.
    config.model.representation_size = ml_collections.config_dict.placeholder(int)
    config.model.head_zero_init = True
    config.model.layer_norm_epsilon = 1e-6
    config.model.scan_layers = False
    config.model.update(VARIANTS[variant])
    return config
