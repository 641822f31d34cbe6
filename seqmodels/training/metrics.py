"""Where a run reports: metrics.jsonl, TensorBoard, samples.txt, the terminal.

Only process 0 writes files; every process may call the methods. On resume the
records of metrics.jsonl past the restored step are dropped (they came from
steps that are trained again), so the file has one record per logged step.
TensorBoard event files are append-only: re-trained steps appear twice there.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from absl import logging

METRICS_FILE = 'metrics.jsonl'
CONFIG_FILE = 'config.json'
SAMPLES_FILE = 'samples.txt'


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)  # JSON has no nan/inf


class MetricWriter:
    """Appends one JSON object per logged step and mirrors scalars to TensorBoard."""

    def __init__(self, workdir: str, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self.workdir = workdir
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._path = os.path.join(workdir, METRICS_FILE)
        self._drop_records_after(resume_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(logdir=workdir)

    def _drop_records_after(self, step: int) -> None:
        if not os.path.exists(self._path):
            return
        kept = []
        with open(self._path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if record.get('step', 0) <= step:
                    kept.append(line if line.endswith('\n') else line + '\n')
        tmp = self._path + '.tmp'
        with open(tmp, 'w') as f:
            f.writelines(kept)
        os.replace(tmp, self._path)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        record = {'step': int(step)}
        record.update({k: _plain(v) for k, v in scalars.items()})
        with open(self._path, 'a') as f:
            f.write(json.dumps(record) + '\n')
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), int(step))
        self._tb.flush()

    def write_texts(self, step: int, texts: dict) -> None:
        if not self.enabled or not texts:
            return
        with open(os.path.join(self.workdir, SAMPLES_FILE), 'a') as f:
            f.writelines(f'=== step {step} {name} ===\n{text}\n' for name, text in texts.items())
        for name, text in texts.items():
            self._tb.add_text(name, text, int(step))
        self._tb.flush()

    def write_config(self, config) -> None:
        if not self.enabled:
            return
        with open(os.path.join(self.workdir, CONFIG_FILE), 'w') as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class Progress:
    """A tqdm bar with ETA and loss on a terminal, plain log lines otherwise.

    On a terminal (`stream`, default sys.stderr, is a TTY) each evaluation is
    printed as one line above the bar; elsewhere every record is logged.
    """

    def __init__(self, total: int, initial: int, enabled: bool = True, stream=None):
        self.total = total
        self.enabled = enabled
        self._bar = None
        self._stream = sys.stderr if stream is None else stream
        self._start_step = initial
        self._start_time = time.time()
        if enabled and self._stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit='step', dynamic_ncols=True, file=self._stream
            )

    def update(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def report(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        loss = scalars.get('train/loss')
        if self._bar is not None:
            if loss is not None:
                self._bar.set_postfix(loss=f'{loss:.4f}', refresh=False)
            evals = ' '.join(
                f'{k}={_number(v)}' for k, v in scalars.items() if k.startswith('eval/')
            )
            if evals:
                self._bar.write(f'step {step}: {evals}', file=self._stream)
            return
        elapsed = time.time() - self._start_time
        done = step - self._start_step
        eta = elapsed / done * (self.total - step) if done > 0 else float('nan')
        shown = ', '.join(f'{k}={_number(v)}' for k, v in scalars.items())
        logging.info('step %d/%d (ETA %s): %s', step, self.total, _duration(eta), shown)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            logging.info('%s', text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _number(value: float) -> str:
    return f'{value:.5g}'


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return '?'
    seconds = int(seconds)
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def read_run_config(workdir: str, what: str = 'a training run'):
    """The resolved config a run wrote to WORKDIR/config.json (`MetricWriter.write_config`);
    FileNotFoundError naming the file when there is none."""
    import ml_collections

    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path} does not exist: is {workdir} the workdir of {what}?')
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))
