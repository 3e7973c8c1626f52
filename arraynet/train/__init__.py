"""Training: the recipe, the step, the epoch loop, callbacks, run folders and checkpoints,
and the one place that sets up a run (`arraynet.train.setup`)."""
