"""A small, trainable decoder transformer in NumPy, with its BPE tokenizer."""

from lm.tokenizer import BPETokenizer
from lm.generate import GenerationResult, generate, stream
from lm.sampling import sample_token
