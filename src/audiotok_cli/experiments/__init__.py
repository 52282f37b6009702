"""What chains stages and training: k-fold cross-validation (`cv.py`), sets of seeds (`repeats.py`),
verify of the store and the run folders together (`verify.py`)."""
