"""A word-level tokenizer for the review grammar, built locally with ``tokenizers``.

One token per grammar word plus four special tokens. Encoding prepends ``<bos>``; generation stops
at ``<eos>``; ``<pad>`` is distinct from ``<eos>`` so that a sequence-classification model can find
the last real token of a padded batch. The result is a ``PreTrainedTokenizerFast`` that saves and
loads with ``save_pretrained`` / ``from_pretrained`` like any tokenizer on the hub.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from klcourse.world.grammar import REVIEWS, Grammar

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def build_tokenizer(grammar: Grammar = REVIEWS) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: ids 0–3 are ``<pad> <bos> <eos> <unk>``, then the grammar's words.

    Taught in notebook 03.
    """
    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *grammar.words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
    )
    tok.padding_side = "left"  # prompts are left-padded so generation continues from the end
    return tok
