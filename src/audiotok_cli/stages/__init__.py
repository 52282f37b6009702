"""The stages: one library function each (expand, import, split, featurize, vocab, tokenize, prune,
info, inspect, export-tokens, verify), talking only through the store. A stage never imports another
stage."""
