"""Warm starts: pre-trained leaves copied exactly, the new head kept, mismatches named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmodels import training
from seqmodels.training import ConfigError


def tree(seed, head=False, mlm=False, width=3):
    rng = np.random.default_rng(seed)
    params = {
        'embed': {'embedding': rng.normal(size=(5, width)).astype(np.float32)},
        'decoder': {
            'layers_0': {
                'kernel': rng.normal(size=(width, width)).astype(np.float32),
                'bias': np.zeros(width, np.float32),
            }
        },
    }
    if head:
        params['head'] = {'kernel': rng.normal(size=(width, 2)).astype(np.float32)}
    if mlm:
        params['mlm_head'] = {'bias': rng.normal(size=5).astype(np.float32)}
    return jax.tree.map(jnp.asarray, params)


def test_pretrained_leaves_are_copied_exactly_and_the_head_stays_fresh():
    pretrained, fresh = tree(0, mlm=True), tree(1, head=True)
    loaded = training.load_pretrained(fresh, pretrained, new=('head',), unused=('mlm_head',))
    assert jax.tree.structure(loaded) == jax.tree.structure(fresh)
    np.testing.assert_array_equal(loaded['embed']['embedding'], pretrained['embed']['embedding'])
    np.testing.assert_array_equal(
        loaded['decoder']['layers_0']['kernel'], pretrained['decoder']['layers_0']['kernel']
    )
    np.testing.assert_array_equal(loaded['head']['kernel'], fresh['head']['kernel'])
    # Traceable, as a Task's init_params is.
    jitted = jax.jit(
        lambda f: training.load_pretrained(f, pretrained, new=('head',), unused=('mlm_head',))
    )(fresh)
    assert jax.tree.all(jax.tree.map(np.array_equal, jitted, loaded))


def test_mismatches_name_the_parameter():
    wider = tree(0)
    wider['decoder']['layers_0']['kernel'] = jnp.zeros((4, 4))
    with pytest.raises(
        ConfigError,
        match=r'decoder/layers_0/kernel is float32\[4, 4\] but the '
        r'fine-tuned model has float32\[3, 3\]',
    ):
        training.load_pretrained(tree(1, head=True), wider, new=('head',))
    with pytest.raises(
        ConfigError,
        match=r'no parameter head/kernel; only parameters under '
        r"\['classifier'\] may be new",
    ):
        training.load_pretrained(tree(1, head=True), tree(0), new=('classifier',))
    with pytest.raises(ConfigError, match=r'pre-trained parameter mlm_head/bias has no place'):
        training.load_pretrained(tree(1, head=True), tree(0, mlm=True), new=('head',))
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), tree(0))
    with pytest.raises(
        ConfigError,
        match=r'decoder/layers_0/bias is bfloat16\[3\] but the '
        r'fine-tuned model has float32',
    ):
        training.load_pretrained(tree(1), bf16)


def test_model_configs_must_agree_outside_the_head_and_dropout(tmp_path):
    pretrained = {'name': 'gpt', 'd_model': 64, 'num_layers': 2, 'num_classes': 0, 'dropout': 0.1}
    training.check_compatible(dict(pretrained, num_classes=2, dropout=0.2), pretrained, 'W')
    with pytest.raises(
        ConfigError,
        match=r'config.model.num_layers=4 differs from the '
        r'pre-trained model \(2 in W/config.json\).*'
        r'--config.model.num_layers=2',
    ):
        training.check_compatible(dict(pretrained, num_layers=4), pretrained, 'W/config.json')
    with pytest.raises(FileNotFoundError, match='config.json does not exist'):
        training.restore_pretrained(str(tmp_path))
