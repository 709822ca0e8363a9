"""Build a tiny random-weight Llama model + offline BPE tokenizer for vLLM tests.

Usage: python make_tiny_llama.py OUTDIR      (OUTDIR defaults to ./tiny-llama)

Run it with the Python of the real-vLLM virtual environment (the one that
scripts/setup-real-vllm.sh creates, which calls this script itself): it needs
torch (CPU), transformers and tokenizers, which that venv has and the
project's own environment does not. No network is used.

What it writes (about 2.4 MB, in a few seconds):
- a byte-level BPE tokenizer (vocab 1024, specials <unk> <s> </s> <pad>) trained
  on docstrings of a few stdlib modules, with a minimal chat template;
- a LlamaForCausalLM with random weights (seed 0): 2 layers, hidden 128,
  4 heads => head size 32 (vLLM's CPU attention backend accepts head sizes
  32, 64, 80, 96, ... only), max_position_embeddings 4096, float32,
  saved as safetensors.
"""

import argparse
import collections
import json
import os
import re
import sys
import textwrap

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}"
    "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_corpus() -> list[str]:
    """Docstrings of a few stdlib modules: always present, offline."""
    return [
        d
        for m in (argparse, collections, json, os, re, textwrap)
        for d in [m.__doc__] + [getattr(m, n).__doc__ for n in dir(m)]
        if isinstance(d, str)
    ]


def build_tokenizer(corpus: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any input string can be encoded, no <unk> needed)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=1024,
            special_tokens=SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=4096,
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def build_model(hf_tok: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """2 layers, hidden 128, 4 heads => head_dim 32; random init."""
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(cfg)


def main(argv: list[str]) -> int:
    out = argv[1] if len(argv) > 1 else "tiny-llama"
    torch.manual_seed(0)
    hf_tok = build_tokenizer(build_corpus())
    hf_tok.save_pretrained(out)
    model = build_model(hf_tok)
    model.save_pretrained(out, safe_serialization=True)
    print(
        "saved",
        out,
        "vocab",
        len(hf_tok),
        "params",
        sum(p.numel() for p in model.parameters()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
