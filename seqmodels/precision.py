"""Mixed precision: the `precision` key of an experiment config and the dtype it names.

'f32' computes everything in float32. 'bf16' (Micikevicius et al. 2018, with bfloat16's
float32 exponent range, so no loss scaling) runs the matmuls and the activations
between them in bfloat16. Either way the parameters, and so the gradients and the
optimizer state, are float32: modules take the compute `dtype` and keep flax's default
`param_dtype` (float32), and the attention softmax, LayerNorm statistics, logits and
losses are computed in float32.

`seqmodels.models.build_model` maps the key onto each family's `dtype` field; the
training loop picks the peak rate that MFU divides by from the same dtype.
"""

from __future__ import annotations

import jax.numpy as jnp

from seqmodels.errors import require

PRECISIONS = {'f32': jnp.float32, 'bf16': jnp.bfloat16}
DEFAULT_PRECISION = 'f32'


def compute_dtype(precision: str):
    """The dtype of `precision`; ConfigError naming config.precision and the choices."""
    require(
        precision in PRECISIONS,
        'precision',
        f'must be one of {", ".join(repr(p) for p in PRECISIONS)}',
        precision,
    )
    return PRECISIONS[precision]
