"""Training and scoring: batches from the store, the model registry, the epoch loop, run folders,
evaluation and metrics."""
