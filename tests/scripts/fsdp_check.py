"""FSDP against data parallelism on 8 host devices, and checkpoints across meshes.

    python tests/scripts/fsdp_check.py --workdir DIR --out RESULT.json

Trains the toy task twice on 8 devices (mesh 'data:-1' and 'data:2,fsdp:4'), then
restores the FSDP run's last checkpoint onto a data:4 x fsdp:2 mesh and onto one
device. Writes JSON: each run's metrics records, the bytes of the FSDP state that
device 0 holds and the total, and for each restore whether every array equals the
saved one bitwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
from train_toy import ToyTask, toy_config  # noqa: E402

from seqmodels import training  # noqa: E402
from seqmodels.training import sharding  # noqa: E402


def _records(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def _device0_bytes(tree) -> tuple[int, int]:
    """(bytes of the leaves' shards on device 0, bytes of the whole leaves)."""
    device = jax.devices()[0]
    held = total = 0
    for x in jax.tree.leaves(tree):
        total += x.nbytes
        held += sum(s.data.nbytes for s in x.addressable_shards if s.device == device)
    return held, total


def _restored_equal(workdir, state, spec, devices) -> bool:
    """Restores the latest checkpoint onto a mesh of `spec` over `devices`; True when
    every array equals `state`'s bitwise and is laid out as that mesh says."""
    mesh = sharding.make_mesh(devices, spec)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    shardings = sharding.state_shardings(shapes, mesh)
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    checkpointer = training.Checkpointer(workdir)
    try:
        restored = checkpointer.restore(abstract)
    finally:
        checkpointer.close()
    same_layout = all(
        r.sharding == sh for r, sh in zip(jax.tree.leaves(restored), jax.tree.leaves(shardings))
    )
    same_values = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state))
    )
    return bool(same_layout and same_values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    assert jax.device_count() == 8, jax.devices()
    overrides = dict(
        num_train_steps=12,
        log_every_steps=1,
        eval_every_steps=6,
        checkpoint_every_steps=6,
        prefetch=2,
    )
    result = {}
    for name, spec in (('data', 'data:-1'), ('fsdp', 'data:2,fsdp:4')):
        config = toy_config(**overrides, mesh=spec)
        workdir = os.path.join(args.workdir, name)
        state = training.train_and_evaluate(config, workdir, ToyTask(config))
        result[name] = _records(workdir)
    held, total = _device0_bytes((state.params, state.opt_state))
    result['fsdp_device0_bytes'], result['fsdp_total_bytes'] = held, total
    workdir = os.path.join(args.workdir, 'fsdp')
    result['restore_data4_fsdp2'] = _restored_equal(workdir, state, 'data:4,fsdp:2', jax.devices())
    result['restore_one_device'] = _restored_equal(workdir, state, 'data:-1', jax.devices()[:1])
    with open(args.out, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main()
