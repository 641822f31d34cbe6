"""The translation experiment: loss, decoding adapters, learning, BLEU, the driver's modes."""

import json
import math
import os
import subprocess
import sys
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import translation as translation_config
from experiments import translation
from seqmodels import evaluation, inference, losses, models, training
from seqmodels.data.tokenizers import BOS_ID, EOS_ID, PAD_ID
from seqmodels.data.translation import assemble_batch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- #
# Loss.


def test_label_smoothed_cross_entropy_matches_the_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7))
    targets = rng.integers(0, 7, size=(2, 3))
    smoothing = 0.1
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    q = np.full(logits.shape, smoothing / 6)  # the V - 1 other tokens share the mass
    np.put_along_axis(q, targets[..., None], 1 - smoothing, axis=-1)
    expected = -(q * log_p).sum(-1)
    got = losses.label_smoothed_cross_entropy(
        jnp.asarray(logits, jnp.float32), jnp.asarray(targets), smoothing
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    nll = losses.label_smoothed_cross_entropy(
        jnp.asarray(logits, jnp.float32), jnp.asarray(targets), 0.0
    )
    np.testing.assert_allclose(
        nll, -np.take_along_axis(log_p, targets[..., None], -1)[..., 0], rtol=1e-5
    )


# --------------------------------------------------------------------------- #
# Decoding through the adapters, on random weights.

VOCAB = 12


def random_model(family):
    if family == 'transformer':
        model = models.Transformer(
            VOCAB,
            VOCAB,
            d_model=16,
            num_heads=2,
            d_ff=32,
            num_encoder_layers=1,
            num_decoder_layers=2,
            dropout=0.0,
            max_len=32,
        )
        inputs = (jnp.ones((1, 4), jnp.int32),) * 2
    else:
        model = models.RNNSeq2Seq(VOCAB, VOCAB, embed_dim=8, hidden_size=16, cell='lstm')
        tokens = jnp.ones((1, 4), jnp.int32)
        inputs = (tokens, jnp.full((1,), 4, jnp.int32), tokens)
    params = jax.jit(model.init)(jax.random.key(7), *inputs)['params']
    # Random weights give near-uniform outputs; sharpen them so argmax has no near-ties.
    return model, jax.tree.map(lambda x: 3 * x, params)


def teacher_forced_logits(model, params, src, src_lengths, tokens):
    tgt_in = jnp.concatenate([jnp.full((len(tokens), 1), BOS_ID), tokens[:, :-1]], axis=1)
    if isinstance(model, models.Transformer):
        return model.apply({'params': params}, src, tgt_in)
    return model.apply({'params': params}, src, src_lengths, tgt_in)


@pytest.mark.parametrize('family', ['transformer', 'rnn'])
def test_beam_of_one_is_greedy_and_greedy_is_the_full_forward_argmax(family):
    model, params = random_model(family)
    rng = np.random.default_rng(1)
    src_lengths = np.array([2, 5, 3, 6], np.int32)
    src = np.zeros((4, 6), np.int32)
    for row, n in enumerate(src_lengths):
        src[row, : n - 1] = rng.integers(4, VOCAB, n - 1)
        src[row, n - 1] = EOS_ID
    extra, max_decode_len = 3, 9

    @jax.jit  # one compilation for all three
    def run(p, s, n):
        kwargs = dict(max_decode_extra=extra, max_decode_len=max_decode_len)
        greedy = inference.decode(model, p, s, n, search='greedy', **kwargs)
        beam = inference.decode(model, p, s, n, search='beam', beam_size=1, alpha=0.0, **kwargs)
        return greedy, beam, teacher_forced_logits(model, p, s, n, greedy).argmax(-1)

    greedy, beam, best = map(np.asarray, run(params, src, src_lengths))
    np.testing.assert_array_equal(beam, greedy)

    # Output length: at most input length + extra tokens, EOS included, then padding.
    limit = np.minimum(src_lengths + extra, max_decode_len)
    positions = np.arange(max_decode_len)[None]
    assert np.all(greedy[positions >= limit[:, None]] == PAD_ID)
    has_eos = (greedy == EOS_ID).any(1)
    lengths = np.where(has_eos, (greedy == EOS_ID).argmax(1) + 1, limit)
    assert np.all(lengths <= limit)
    assert not has_eos.all(), 'expected a row cut by its limit (no EOS drawn)'

    # The cache / carry adapter reproduces the teacher-forced pass: each generated
    # token is the argmax given the prefix, up to EOS (or a generated PAD, which the
    # teacher-forced pass would mask).
    for row in range(len(src)):
        for t in range(lengths[row]):
            assert best[row, t] == greedy[row, t], (row, t)
            if greedy[row, t] in (EOS_ID, PAD_ID):
                break


# --------------------------------------------------------------------------- #
# A tiny Transformer learns to copy and to reverse, through the engine.

NUM_SYMBOLS, FIRST = 10, 4
COPY, REVERSE = FIRST + NUM_SYMBOLS, FIRST + NUM_SYMBOLS + 1
TOY_VOCAB, TOY_LEN = REVERSE + 1, 8


def copy_reverse_pairs(rng, n):
    """Source: a task token, then 2-6 symbols; target: the symbols, or reversed."""
    pairs = []
    for _ in range(n):
        x = rng.integers(FIRST, FIRST + NUM_SYMBOLS, rng.integers(2, 7))
        reverse = bool(rng.integers(2))
        pairs.append(
            (np.concatenate([[REVERSE if reverse else COPY], x]), x[::-1] if reverse else x)
        )
    return pairs


class CopyReverseData:
    split_stems = {'train': 'train', 'validation': '', 'test': ''}

    def __init__(self, batch_size):
        self.batch_size = batch_size

    def train_batch(self, step, process_index, process_count):
        del process_index, process_count
        pairs = copy_reverse_pairs(np.random.default_rng([1, step]), self.batch_size)
        return assemble_batch([s for s, _ in pairs], [t for _, t in pairs], TOY_LEN)


def test_tiny_transformer_learns_to_copy_and_reverse(tmp_path):
    config = translation_config.get_config('tiny')
    config.model.update(
        src_vocab_size=TOY_VOCAB,
        tgt_vocab_size=TOY_VOCAB,
        d_model=64,
        num_heads=4,
        d_ff=128,
        max_len=16,
    )
    config.update(
        batch_size=64,
        num_train_steps=700,
        label_smoothing=0.0,
        schedule='warmup_cosine',
        learning_rate=3e-3,
        warmup_steps=20,
        log_every_steps=100,
        eval_every_steps=0,
        checkpoint_every_steps=0,
    )
    model = models.build_model(config.model)
    task = translation.TranslationTask(config, model, CopyReverseData(config.batch_size))
    state = training.train_and_evaluate(config, str(tmp_path / 'run'), task)

    test = copy_reverse_pairs(np.random.default_rng(123), 400)
    batch = assemble_batch([s for s, _ in test], [t for _, t in test], TOY_LEN)
    decode = jax.jit(
        lambda p, s, n: inference.decode(
            model, p, s, n, search='greedy', max_decode_extra=2, max_decode_len=10
        )
    )
    out = np.asarray(decode(jax.device_get(state.params), batch['src'], batch['src_lengths']))
    exact = np.array(
        [list(out[i, : len(t) + 1]) == list(t) + [EOS_ID] for i, (_, t) in enumerate(test)]
    )
    is_copy = np.array([s[0] == COPY for s, _ in test])
    assert exact[is_copy].mean() >= 0.99, exact[is_copy].mean()
    assert exact[~is_copy].mean() >= 0.99, exact[~is_copy].mean()
    # Not learnable by ignoring the task token: half the reversals differ from copies.
    assert sum(list(t) != list(s[1:]) for s, t in test if s[0] == REVERSE) > 150


# --------------------------------------------------------------------------- #
# BLEU.


def reference_bleu(hypotheses, references, max_n=4):
    """Papineni et al. 2002 corpus BLEU on whitespace tokens, in float64."""
    matches, totals = np.zeros(max_n), np.zeros(max_n)
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * brevity * math.exp(np.mean(np.log(matches / totals)))


def test_bleu_is_sacrebleu_corpus_bleu():
    references = [
        'the cat sat on the mat today',
        'a dog runs in the green park',
        'we like to eat fresh bread',
    ]
    score, signature = evaluation.corpus_bleu(references, references)
    assert score == pytest.approx(100.0)
    assert 'tok:13a' in signature and 'nrefs:1' in signature
    hypotheses = ['the cat sat on a mat today', 'a dog runs in the park', 'we like to eat bread']
    score, _ = evaluation.corpus_bleu(hypotheses, references)
    assert score == pytest.approx(reference_bleu(hypotheses, references), rel=1e-6)
    assert 0 < score < 100


# --------------------------------------------------------------------------- #
# The driver end to end on a tiny parallel:DIR.

COLORS = [
    ('red', 'rote'),
    ('green', 'grüne'),
    ('blue', 'blaue'),
    ('black', 'schwarze'),
    ('white', 'weiße'),
]
ANIMALS = [('cat', 'Katze'), ('cow', 'Kuh'), ('duck', 'Ente'), ('mouse', 'Maus'), ('goat', 'Ziege')]
VERBS = [('sleeps', 'schläft'), ('eats', 'frisst'), ('runs', 'läuft')]


def write_parallel_dir(root, sizes=(48, 8, 8)):
    pairs = [
        (f'the {c} {a} {v} .', f'die {c_de} {a_de} {v_de} .')
        for c, c_de in COLORS
        for a, a_de in ANIMALS
        for v, v_de in VERBS
    ]
    # Every other pair is longer, so that batches fall in two length buckets.
    pairs = [
        (e, d) if i % 2 else (e[:-1] + 'in the old barn .', d[:-1] + 'in der alten Scheune .')
        for i, (e, d) in enumerate(pairs)
    ]
    np.random.default_rng(0).shuffle(pairs)
    start = 0
    for split, n in zip(('train', 'val', 'test'), sizes):
        chunk = pairs[start : start + n]
        start += n
        (root / f'{split}.en').write_text(''.join(e + '\n' for e, _ in chunk), 'utf-8')
        (root / f'{split}.de').write_text(''.join(d + '\n' for _, d in chunk), 'utf-8')
    return root


def tiny_config(data_dir, variant='tiny'):
    config = translation_config.get_config(variant)
    config.dataset = f'parallel:{data_dir}'
    config.vocab_size = 60
    config.max_source_length = config.max_target_length = 40
    config.bucket_boundaries = (20, 40)
    config.max_decode_extra = 2
    return config


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp('translation')
    (root / 'corpus').mkdir()
    data_dir = write_parallel_dir(root / 'corpus')
    workdir = str(root / 'run')
    config = tiny_config(data_dir)
    # Enough steps for non-empty translations (steps are cheap; compiling is not).
    config.update(
        num_train_steps=40, log_every_steps=20, eval_every_steps=20, checkpoint_every_steps=20
    )
    data = translation.translation_data.load(config, None)
    # Training sees two batch shapes: the engine compiles one step per length bucket.
    assert len({data.train_batch(step)['src'].shape for step in range(4)}) == 2
    translation.train(config, workdir)
    return workdir, data_dir


def test_training_logs_bleu_and_evaluate_writes_hypotheses(trained_workdir):
    workdir, data_dir = trained_workdir
    records = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
    assert [r['step'] for r in records] == [20, 40]
    for record in records:
        assert {
            'eval/bleu',
            'eval/loss',
            'eval/accuracy',
            'train/loss',
            'perf/tokens_per_sec',
        } <= set(record)
    resolved = json.load(open(os.path.join(workdir, 'config.json')))
    # eval/bleu is sacreBLEU of the greedy translations of the first num_eval_examples
    # validation lines by the parameters of that step.
    config = translation.common.load_run_config(workdir, 'translation')
    data, model, _ = translation.build(config, workdir)
    translator = inference.Translator.from_config(
        config, model, data.source_tokenizer, data.target_tokenizer
    )
    sources = data.sources('validation')[: config.num_eval_examples]
    references = data.references('validation')[: config.num_eval_examples]
    for record in records:
        params = training.restore_params(workdir, record['step'])
        hypotheses, _ = translator.translate(params, sources, 1)
        assert record['eval/bleu'] == pytest.approx(
            evaluation.corpus_bleu(hypotheses, references)[0], abs=1e-9
        )
    assert resolved['model']['src_vocab_size'] == resolved['model']['tgt_vocab_size'] <= 60

    result = translation.evaluate(workdir, 'test', beam_size=2)
    path = os.path.join(workdir, 'test.hyp.de')
    assert result['hypotheses'] == path
    hypotheses = open(path, encoding='utf-8').read().split('\n')
    assert len(hypotheses) == 8 + 1 and hypotheses[-1] == ''
    references = (data_dir / 'test.de').read_text('utf-8').splitlines()
    # The reported score is sacreBLEU of the written file against the references.
    assert result['bleu'] == pytest.approx(evaluation.corpus_bleu(hypotheses[:-1], references)[0])
    assert result['beam2/bleu'] == result['bleu']
    assert {'greedy/bleu', 'greedy/sentences_per_sec', 'beam2/sentences_per_sec'} <= set(result)
    assert result['signature'].startswith('nrefs:1|')


def test_translate_keeps_the_output_line_aligned(trained_workdir, tmp_path):
    workdir, _ = trained_workdir
    lines = ['the red cat sleeps .', '', 'the blue duck runs .', '   ', '', 'the black cow eats .']
    source = tmp_path / 'in.en'
    source.write_text('\n'.join(lines) + '\n', 'utf-8')
    output = tmp_path / 'out.de'
    translation.translate(workdir, str(source), str(output), beam_size=1)
    out = output.read_text('utf-8').split('\n')
    assert out[-1] == '' and len(out) - 1 == len(lines)
    for line, translated in zip(lines, out):
        assert (translated == '') == (line.strip() == ''), (line, translated)
    # Each line's translation is the one it gets alone (no shifting between lines).
    alone = tmp_path / 'alone.en'
    alone.write_text('the black cow eats .\n', 'utf-8')
    assert translation.translate(workdir, str(alone), str(tmp_path / 'alone.de'), beam_size=1) == [
        out[5]
    ]
    # --step picks an earlier checkpoint; a step that was not saved names the saved ones.
    assert (
        len(
            translation.translate(
                workdir, str(alone), str(tmp_path / 'early.de'), beam_size=1, step=20
            )
        )
        == 1
    )
    with pytest.raises(FileNotFoundError, match='saved steps: 20, 40'):
        translation.translate(workdir, str(alone), None, beam_size=1, step=30)


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path):
    data_dir = write_parallel_dir(tmp_path)
    (tmp_path / 'val.de').write_text('nur eine Zeile\n', 'utf-8')
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'experiments.translation',
            '--config=configs/translation.py:tiny',
            f'--workdir={tmp_path / "run"}',
            f'--config.dataset=parallel:{data_dir}',
            '--config.vocab_size=60',
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, JAX_PLATFORMS='cpu'),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / 'val.en') in message and '8 lines' in message
    assert str(tmp_path / 'val.de') in message and '1 lines' in message
    assert 'Traceback' not in result.stderr


# --------------------------------------------------------------------------- #
# Config and task wiring.


def test_config_checks_name_the_key(tmp_path):
    config = translation_config.get_config('small')
    config.joint_vocab = False
    with pytest.raises(training.ConfigError, match='model.share_embeddings'):
        translation.validate(config)
    config = translation_config.get_config('small')
    config.max_source_length = 300
    with pytest.raises(training.ConfigError, match='model.max_len'):
        translation.validate(config)
    config = translation_config.get_config('small')
    config.scheduled_sampling = 'linear'
    with pytest.raises(training.ConfigError, match='scheduled_sampling'):
        translation.validate(config)
    config = translation_config.get_config('rnn_attention')
    config.eval_decoding = 'sampling'
    with pytest.raises(training.ConfigError, match='eval_decoding'):
        translation.validate(config)


def test_every_variant_validates_and_builds():
    for variant in translation_config.VARIANTS:
        config = translation_config.get_config(variant)
        translation.validate(config)
        model = models.build_model(config.model)
        fields = {k: v for k, v in config.model.items() if k != 'name'}
        assert {k: getattr(model, k) for k in fields} == fields, variant
    assert translation_config.get_config('').model.d_model == 256
    multi30k = translation_config.get_config('multi30k_small')
    assert (multi30k.source_lang, multi30k.target_lang, multi30k.test_split) == (
        'de',
        'en',
        'test_2016_flickr',
    )
    rnn = translation_config.get_config('multi30k_rnn_attention')
    assert (rnn.dataset, rnn.source_lang, rnn.bucket_boundaries) == (
        multi30k.dataset,
        'de',
        multi30k.bucket_boundaries,
    )
    assert rnn.model.to_dict() == translation_config.get_config('rnn_attention').model.to_dict()
    with pytest.raises(training.ConfigError, match='unknown variant'):
        translation_config.get_config('huge')


def test_rnn_scheduled_sampling_with_eps_one_is_teacher_forcing():
    config = translation_config.get_config('tiny_rnn')
    config.update(scheduled_sampling='linear', ss_k=1.0, ss_c=0.0)
    config.model.update(src_vocab_size=TOY_VOCAB, tgt_vocab_size=TOY_VOCAB)
    model = models.build_model(config.model)
    config.ss_c = 1.0  # eps(step) = max(0, 1 - step): 1 at step 0, 0 from step 1 on
    task = translation.TranslationTask(config, model, CopyReverseData(4))
    batch = task.train_batch(0, 0, 1)
    params = jax.jit(task.init_params)(jax.random.key(0))
    loss_fn = jax.jit(task.loss_fn, static_argnames='deterministic')
    rng = jax.random.key(1)
    # The engine hands loss_fn the step; eps(0) = 1 takes the scheduled path with every
    # coin picking the truth, which is teacher forcing.
    forced, _ = loss_fn(params, batch, rng, deterministic=True, step=0)
    scheduled, aux = loss_fn(params, batch, rng, deterministic=False, step=0)
    np.testing.assert_allclose(scheduled, forced, rtol=1e-5)
    assert aux['num_tokens'] == batch['weights'].sum()
    own, _ = loss_fn(params, batch, rng, deterministic=False, step=5)  # eps = 0
    assert abs(float(own) - float(forced)) > 1e-4
