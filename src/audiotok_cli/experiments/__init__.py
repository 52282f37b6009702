"""Experiments that chain stages and training: k-fold cross-validation (`cv.py`)."""
