"""Pipelines: what loads models, runs them over datasets and hands the saved results to the analyses.

:mod:`.compare` is ``beir-peft compare``'s (evaluate and cache every model on every dataset, then
:mod:`beir_peft.analysis.compare` reports on the saved runs).
"""
