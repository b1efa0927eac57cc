"""Localization pipeline: retrieval (candidate tiles) -> coregistration -> catalogue.

The retrieval stage lives in `astroapp.pipeline.retrieve` (`retrieve_candidates`).
"""
