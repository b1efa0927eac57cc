"""Evaluation: how well retrieval, the index and the whole pipeline do against ground truth.

A layer above `astroapp.pipeline` (it runs re-ranking and the demo), below the GUI and CLI:
`model_recall` (a retrieval model on held-out renders of the bundled world), `index_recall`
(a model + tile index on photos with known footprints), `demo_score` (the demo roll's
localizations against its truth.json).
"""
