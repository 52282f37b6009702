"""The tokenizer room: what turns frames into token ids. `Tokenizer` (tokenizer.py) holds the whole
recipe in one object; `quantizers.py` the quantizers and their registry; `merges.py` byte-pair
merges of id sequences (HF `tokenizers`); `ids.py` the id scheme the token models read. Nothing is
imported here: a token model reads `ids.py` without loading faiss or `tokenizers`."""
