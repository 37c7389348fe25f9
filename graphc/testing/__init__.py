"""Testing helpers for graphc users and for graphc itself: Hypothesis strategies."""
