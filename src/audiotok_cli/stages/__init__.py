"""The stages: one library function each (expand, split, featurize, vocab, tokenize, prune, info),
talking only through the store. A stage never imports another stage."""
