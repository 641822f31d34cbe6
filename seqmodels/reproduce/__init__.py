"""Reproducing papers' claims: each claim is data (configs/claims.py), run through the
sweep launcher, checked numerically, stored as one outcome file, and gathered into
RESULTS.md. The command is `python -m experiments.reproduce`."""

from seqmodels.reproduce.claim import (
    SCALES,
    Above,
    Band,
    Below,
    Claim,
    Lower,
    Results,
    Run,
    RunDir,
    Within,
    finals,
    steps_to_reach,
)

__all__ = [
    'SCALES',
    'Above',
    'Band',
    'Below',
    'Claim',
    'Lower',
    'Results',
    'Run',
    'RunDir',
    'Within',
    'finals',
    'steps_to_reach',
]
