"""Shared test setup: graphc's own suite runs the quick ``graphc-ci`` Hypothesis profile unless
GRAPHC_HYPOTHESIS_PROFILE (or --graphc-profile) says otherwise. The profiles are
registered by graphc's pytest plugin."""

from __future__ import annotations

import os

from hypothesis import settings

import graphc.testing.pytest_plugin  # noqa: F401  (registers the profiles)

if not os.environ.get("GRAPHC_HYPOTHESIS_PROFILE"):
    settings.load_profile("graphc-ci")
