r"""Reproduce papers' claims: run what each claim needs, check it against the paper's
number, store its outcome, and regenerate RESULTS.md.

    python -m experiments.reproduce --list
    python -m experiments.reproduce --claim=nanogpt_shakespeare --scale=ci
    python -m experiments.reproduce --claim=all --scale=full --workdir=runs/reproduce
    python -m experiments.reproduce --mode=report      # RESULTS.md from the stored outcomes

Claims. Each claim is one entry of the registry (configs/claims.py, or --claims):
the citation and the paper's numbers, the runs (a driver config and overrides, a
trial list for several runs), the numbers read from them and numeric checks (a band
for an absolute number, a direction with a margin for a trend). --claim takes a name,
a comma-separated list, or `all`.

Scales. `ci`: each claim in seconds to a minute, with checks that fit that budget
(the test suite runs it for several claims); `full`: the claim itself, at the budget
its note states (up to about an hour of CPU per run here).

Runs. Each claim's runs are sweeps (seqmodels.sweep) in
WORKDIR/<claim>/<scale>/<run>/, launched here or on SLURM with the sweep's
--executor / --parallel / --slurm_* flags; a rerun skips finished runs and resumes
the others from their checkpoints, so `--claim=all --scale=full` may be spread over
several sessions.

Outcomes. RESULTS_DIR/<claim>.<scale>.json holds each claim's outcome on its own:
PASS, FAIL (a check missed; reported, not hidden) or ERROR (a run failed or a number
could not be read), the numbers, the checks, the exact commands, the wall time, the
machine and the code's commit. After every claim, RESULTS.md is regenerated from all
stored outcomes: running one claim never drops the others.

Exit status: 0 when every claim asked for passed, 1 when one failed or could not be
measured, 75 when stopped by a signal (rerun to resume), 2 on a bad command line.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from experiments import common
from seqmodels import training
from seqmodels.reproduce import report
from seqmodels.reproduce.claim import SCALES, check_registry
from seqmodels.reproduce.runner import ERROR, PASS, project_root, run_claim
from seqmodels.sweep import cli, launcher, runner
from seqmodels.sweep.cli import log
from seqmodels.sweep.declare import SweepError

_CLAIM = flags.DEFINE_string(
    'claim', None, 'The claim(s) to run: a name from --list, NAME,NAME,... or all.'
)
_SCALE = flags.DEFINE_enum('scale', 'ci', list(SCALES), 'ci: a minute a claim; full: the claim.')
_LIST = flags.DEFINE_bool('list', False, 'Print the claims (name, scale budgets, title) and exit.')
_CLAIMS = flags.DEFINE_string(
    'claims', None, 'The registry: a Python file defining CLAIMS (default configs/claims.py).'
)
_RESULTS_DIR = flags.DEFINE_string(
    'results_dir', None, 'Where the outcome files live (default results/ in the project).'
)
_RESULTS_MD = flags.DEFINE_string(
    'results_md', None, 'The RESULTS.md to regenerate (default RESULTS.md in the project).'
)

_MODES = ('train', 'report')


def load_claims(path: str) -> list:
    claims = getattr(launcher.config_module(path), 'CLAIMS', None)
    if not isinstance(claims, (list, tuple)):
        raise SweepError(f'{path} defines no CLAIMS list')
    try:
        check_registry(claims, path)
    except ValueError as e:
        raise SweepError(str(e)) from None
    return list(claims)


def selected(claims: list, spec: str | None) -> list:
    if not spec:
        raise common.UsageError('--claim=NAME|NAME,NAME|all is required (see --list)')
    if spec == 'all':
        return claims
    by_name = {c.name: c for c in claims}
    unknown = [n for n in spec.split(',') if n not in by_name]
    if unknown:
        raise common.UsageError(
            f'--claim: no claim {", ".join(unknown)}; the claims are {", ".join(by_name)}'
        )
    return [by_name[n] for n in spec.split(',')]


def main(argv):
    try:
        _main(argv)
    except common.UsageError as e:
        log(f'error: {e}')
        sys.exit(2)


def _main(argv):
    if len(argv) > 1:
        raise common.UsageError(f'unexpected arguments: {argv[1:]}')
    if common.MODE.value not in _MODES:
        raise common.UsageError(
            f'--mode={common.MODE.value}: choose train (run the claims, the '
            'default) or report (regenerate RESULTS.md)'
        )
    root = project_root()
    claims_path = _CLAIMS.value or os.path.join(root, 'configs', 'claims.py')
    results_dir = os.path.abspath(_RESULTS_DIR.value or os.path.join(root, 'results'))
    results_md = os.path.abspath(_RESULTS_MD.value or os.path.join(root, 'RESULTS.md'))
    try:
        claims = load_claims(claims_path)
    except SweepError as e:
        log(f'error: {e}')
        sys.exit(1)
    if _LIST.value:
        for claim in claims:
            print(f'{claim.name:28s} {claim.title}')
        return
    if common.MODE.value == 'report':
        report.write_results_md(results_md, claims, results_dir)
        log(f'wrote {results_md}')
        return
    chosen = selected(claims, _CLAIM.value)
    workdir = os.path.abspath(os.path.expanduser(common.WORKDIR.value or 'runs/reproduce'))
    verdicts = {}
    status = 0
    for claim in chosen:
        try:
            status, outcome = run_claim(
                claim,
                _SCALE.value,
                workdir,
                results_dir,
                lambda name: cli.make_executor(name, log),
                log=log,
                root=root,
            )
        except SweepError as e:
            log(f'error: {claim.name}: {e}')
            verdicts[claim.name] = ERROR
            continue
        if status == runner.EXIT_PREEMPTED:
            break
        verdicts[claim.name] = outcome['verdict']
        report.write_results_md(results_md, claims, results_dir)
    for name, verdict in verdicts.items():
        log(f'{name}: {verdict}')
    if status == runner.EXIT_PREEMPTED:
        log('stopped; rerun the same command to resume')
        sys.exit(status)
    log(f'wrote {results_md}')
    sys.exit(0 if all(v == PASS for v in verdicts.values()) else 1)


if __name__ == '__main__':
    app.run(main, flags_parser=training.parse_flags)
