"""Fitting a model to brain/speech windows: ``losses`` (CLIP, MSE), ``steps`` (one
optimisation step, plain or memory-lean), ``trainer`` (epochs, early stopping, checkpoints) and
``distributed`` (several processes)."""
