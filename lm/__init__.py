"""A small, trainable decoder transformer in NumPy, with its BPE tokenizer."""

from lm.tokenizer import BPETokenizer
