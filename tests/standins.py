"""Stand-ins for real hub models, built in seconds with no download, with the pitfalls real ones have.

* **Policy**: a 2-layer Llama (the architecture of Llama and Qwen2 up to details) over a byte-level
  BPE tokenizer trained on a few hundred lines. Like GPT-2's, the tokenizer has no pad token (the
  course pads with eos), and its eos is ``<|endoftext|>``, while the model's generation config ends
  responses with ``<|end|>``, as chat models end a turn. The generation config also asks for
  ``top_k`` and a repetition penalty, which would make ``generate`` sample from another
  distribution than the model's. A few hundred Adam steps teach it the lines, each ending in
  ``<|end|>``, so that some responses end before the length limit and others are cut off.
* **Reward and gold models**: randomly initialised BERTs (2 and 3 layers) with one output, over a
  WordPiece tokenizer of another vocabulary; an encoder pools its first token.
* **Prompts**: a text file of lines of 2–12 of the policy's tokens.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer, Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

WORDS = (
    "the film movie plot cast was is a an very really quite good bad great dull slow fun and but "
    "with its story acting score ending music long short dark bright scene actors director"
).split()
END = "<|end|>"
EOS = "<|endoftext|>"
#: The sizes of both Llama stand-ins (the policy and the reward model over its tokens).
LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    """``n`` lines of 3–14 words from :data:`WORDS`."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def build_policy(folder: Path, lines: list[str]) -> Path:
    """The Llama stand-in and its tokenizer in ``folder`` (see the module docstring)."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=300, min_frequency=1, special_tokens=[EOS, END])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(bpe.to_str()), eos_token=EOS)
    end = tokenizer.convert_tokens_to_ids(END)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **LLAMA,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    ids = [tokenizer(line)["input_ids"] + [end] for line in lines]
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        batch = [ids[(step * 16 + i) % len(ids)] for i in range(16)]
        width = max(map(len, batch))
        x = torch.tensor([row + [end] * (width - len(row)) for row in batch])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch])
        labels = x.masked_fill(mask == 0, -100)
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.generation_config = GenerationConfig(
        eos_token_id=[end], top_k=3, repetition_penalty=2.0, do_sample=True, max_length=20
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_reader(folder: Path, lines: list[str], layers: int, seed: int, labels: int = 1) -> Path:
    """A randomly initialised BERT with ``labels`` outputs and its WordPiece tokenizer, in ``folder``."""
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator([line.upper() for line in lines], vocab_size=120, min_frequency=1)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(wordpiece._tokenizer.to_str()),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=labels,
        )
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_decoder_reader(folder: Path, policy: Path) -> Path:
    """A randomly initialised Llama reward model (a ``score`` head, one output) over the policy's own
    tokenizer, in ``folder``: the kind of reward model the value model can start from."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(policy)
    torch.manual_seed(3)
    model = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=len(tokenizer),
            **LLAMA,
            num_labels=1,
            pad_token_id=tokenizer.eos_token_id,
        )
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build(root: Path) -> dict[str, Path]:
    """Every stand-in under ``root``: ``policy``, ``reward``, ``gold``, ``classifier`` (two outputs),
    ``decoder_reward`` (over the policy's tokens) and ``prompts`` (a .txt file of 60 prompts of 2–12
    of the policy's tokens)."""
    lines = corpus()
    policy = build_policy(root / "policy", lines)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(policy)
    rng = random.Random(1)
    prompts = []
    while len(prompts) < 60:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        if 2 <= len(tokenizer(text)["input_ids"]) <= 12:
            prompts.append(text)
    (root / "prompts.txt").write_text("\n".join(prompts))
    return {
        "policy": policy,
        "reward": build_reader(root / "reward", lines, layers=2, seed=1),
        "gold": build_reader(root / "gold", lines, layers=3, seed=2),
        "classifier": build_reader(root / "classifier", lines, layers=2, seed=4, labels=2),
        "decoder_reward": build_decoder_reader(root / "decoder-reward", policy),
        "prompts": root / "prompts.txt",
    }
