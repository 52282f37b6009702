"""The tokenizer room: what turns frames into token ids. `Tokenizer` (tokenizer.py) holds the whole
recipe in one object; `quantizers.py` the quantizers and their registry; `merges.py` byte-pair
merges of id sequences (HF `tokenizers`); `ids.py` the id scheme the token models read."""

from audiotok_cli.tokenizer.quantizers import QUANTIZERS, parse_quantizer, quantizer_tag
from audiotok_cli.tokenizer.tokenizer import PAD_TOKEN, Tokenizer

__all__ = ["PAD_TOKEN", "QUANTIZERS", "Tokenizer", "parse_quantizer", "quantizer_tag"]
