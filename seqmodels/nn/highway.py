"""Highway layer (Srivastava, Greff & Schmidhuber 2015, "Highway Networks")."""

from typing import Callable

import jax
import flax.linen as nn


class Highway(nn.Module):
    """y = T(x) * H(x) + (1 - T(x)) * x, with T(x) = sigmoid(W_T x + b_T).

    H(x) = activation(W_H x + b_H). The transform-gate bias b_T starts negative
    (`transform_gate_bias`; the paper suggests -1 to -3) so that a fresh layer mostly
    carries its input through, which is what lets deep stacks train. The carry term
    needs the output width to equal the input width; `features`, if given, must match.
    """

    features: int | None = None
    transform_gate_bias: float = -2.0
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        if self.features is not None and self.features != features:
            raise ValueError(
                f'Highway keeps the width of its input ({features}); got features={self.features}'
            )
        h = self.activation(nn.Dense(features, name='H')(x))
        t = jax.nn.sigmoid(
            nn.Dense(
                features, bias_init=nn.initializers.constant(self.transform_gate_bias), name='T'
            )(x)
        )
        return t * h + (1.0 - t) * x
