"""Building blocks shared by every model family.

Recurrent: `ElmanCell`, `LSTMCell`, `LayerNormLSTMCell`, `GRUCell`, the `RNN` scan
(per-sequence lengths, reverse), `Bidirectional`, `DeepRNN`, variational dropout
(`SequenceDropout`), `Highway`. Attention: `dot_product_attention`,
`MultiHeadAttention` (self/cross, decode cache), `AdditiveAttention`, masks.
Positions: sinusoidal and learned. Transformer: `FeedForward`, `EncoderBlock`,
`DecoderBlock`, `Encoder`, `Decoder` (post- or pre-norm, optional scan over layers).
"""

from seqmodels.nn.additive_attention import AdditiveAttention
from seqmodels.nn.attention import (
    MultiHeadAttention,
    dot_product_attention,
    dot_product_attention_weights,
    init_kv_cache,
)
from seqmodels.nn.highway import Highway
from seqmodels.nn.masks import causal_mask, combine_masks, key_padding_mask, padding_mask
from seqmodels.nn.position import (
    LearnedPositionEmbedding,
    SinusoidalPositionEncoding,
    sincos_2d_position_encoding,
    sinusoidal_position_encoding,
)
from seqmodels.nn.recurrent import (
    RNN,
    Bidirectional,
    DeepRNN,
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    SequenceDropout,
    make_cell,
)
from seqmodels.nn.transformer import Decoder, DecoderBlock, Encoder, EncoderBlock, FeedForward

__all__ = [
    'AdditiveAttention',
    'Bidirectional',
    'DeepRNN',
    'Decoder',
    'DecoderBlock',
    'ElmanCell',
    'Encoder',
    'EncoderBlock',
    'FeedForward',
    'GRUCell',
    'Highway',
    'LSTMCell',
    'LayerNormLSTMCell',
    'LearnedPositionEmbedding',
    'MultiHeadAttention',
    'RNN',
    'SequenceDropout',
    'SinusoidalPositionEncoding',
    'causal_mask',
    'combine_masks',
    'dot_product_attention',
    'dot_product_attention_weights',
    'init_kv_cache',
    'key_padding_mask',
    'make_cell',
    'padding_mask',
    'sincos_2d_position_encoding',
    'sinusoidal_position_encoding',
]
