"""seqmodels: sequence models in JAX/Flax, from the Elman RNN to GPT, BERT and ViT.

`seqmodels.nn` holds the building blocks, `seqmodels.models` the model families built
from them, `seqmodels.training` the one training engine, `seqmodels.data` the input
pipelines and `seqmodels.decoding` greedy, sampling and beam-search decoding.
"""

__version__ = '0.1.0'
