"""A tiny Qwen3-shaped causal LM with a ChatML tokenizer, built from scratch in seconds.

Random weights: it generates noise, which is what the loop's format-error path needs.
The server runs it when no model is configured, so a fresh machine can run the whole path.
Loadable with `AutoModelForCausalLM` / `AutoTokenizer` and servable by `transformers serve`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
VOCAB_SIZE = 1024

_CORPUS = [
    "import torch\nimport torch.nn as nn\nimport triton\nimport triton.language as tl\n",
    "class ModelNew(nn.Module):\n    def __init__(self):\n        super().__init__()\n\n"
    "    def forward(self, x):\n        return x\n",
    "@triton.jit\ndef relu_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):\n"
    "    pid = tl.program_id(0)\n    offs = pid * BLOCK + tl.arange(0, BLOCK)\n"
    "    mask = offs < n\n    x = tl.load(x_ptr + offs, mask=mask)\n"
    "    tl.store(y_ptr + offs, tl.maximum(x, 0.0), mask=mask)\n",
    "def get_inputs():\n    return [torch.randn(16, 16)]\n\n"
    "def get_init_inputs():\n    return []\n",
    "You write custom Triton kernels to replace the PyTorch operators in the given "
    "architecture to get speedups. Return the improved implementation as a single python "
    "code block named ModelNew. The server feedback for your last implementation: status, "
    "error, speedup, runtime, correctness, compiled.\n```python\n```\n",
    '{\n  "status": "correct",\n  "speedup": 1.5,\n  "error": null\n}\n',
]


def _corpus() -> list[str]:
    texts = list(_CORPUS)
    root = Path(__file__).resolve().parents[1] / "refine"
    texts += [p.read_text() for p in sorted(root.rglob("*.py"))[:20]]
    texts += [p.read_text() for p in sorted(root.rglob("*.txt"))]
    return texts


def build_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert isinstance(token_id, int)
    return token_id


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write tokenizer, config and random weights to `path`; return it."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    eos_ids = [_token_id(tokenizer, t) for t in ("<|im_end|>", "<|endoftext|>")]
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=eos_ids[1],
        eos_token_id=eos_ids,
        pad_token_id=eos_ids[1],
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids, pad_token_id=eos_ids[1], do_sample=True, temperature=1.0, top_p=0.95
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


if __name__ == "__main__":
    print(build_tiny_model(Path(sys.argv[1])))
