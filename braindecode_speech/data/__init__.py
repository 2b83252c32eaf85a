"""From a study on disk to the windows a model sees.

``studies/`` (adapters: recordings and validated events) → ``preprocessing`` (cached arrays on
the brain's clock) → ``splits`` (sentences, blocks, leak-free train/valid/test) → ``windows``
(the window table) → ``dataset`` (scaled ``[C, T]`` brain and ``[F, T]`` speech windows) →
``batches`` (whole batches gathered at once, prepared ahead of the model).
``study``, ``events``, ``stimuli`` and ``cache`` are the shared vocabulary of those steps.
"""
