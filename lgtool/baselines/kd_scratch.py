"""The kd-scratch baseline: scratch's start (the same weights), trained with the ancestor distilling into it."""

from __future__ import annotations

from lgtool.baselines import scratch

DISTILS = True
RACE_ORDER = 40  # last: distilled (teacher forwards on top of its steps), and from timm's init
REFERENCE = False
POLICIES = scratch.POLICIES
policies, start, expand_args = scratch.policies, scratch.start, scratch.expand_args
