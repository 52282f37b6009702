"""Training: batches from the store, the model registry, the epoch loop and its tasks (classification,
masked tokens, masked units), run folders and their names, the metrics the loop scores with."""
