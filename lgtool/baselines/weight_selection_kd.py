"""The weight-selection+kd baseline: weight selection's start (the same cut), trained with the ancestor distilling
into it."""

from __future__ import annotations

from lgtool.baselines import weight_selection

DISTILS = True
RACE_ORDER = 30
REFERENCE = False
POLICIES = weight_selection.POLICIES
policies, start, expand_args = weight_selection.policies, weight_selection.start, weight_selection.expand_args
