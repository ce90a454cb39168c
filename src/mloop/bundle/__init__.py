"""The model bundle: what travels with a registered model so that it can be served and monitored alone.

``format`` writes and reads the bundle files, ``profile`` is the training data's ``ReferenceProfile``,
``loaded`` is a bundle loaded for prediction (``LoadedModel``). Nothing here talks to MLflow's
tracking or registry: fetching a ``models:/`` URI is ``mloop.registry.fetch``.
"""
