"""A tiny random-weight llama-architecture GGUF (~0.3 MB) for fast unit tests of model loading.

Written with the ``gguf`` package: a 2-layer llama with a SentencePiece-style vocabulary (byte
fallback, Latin and Cyrillic letters) and a chat template, so llama-cpp-python loads it, applies
the template in ``create_chat_completion`` and streams tokens in milliseconds. The output is
gibberish by design; it tests code paths, not dialog quality. Weights come from a fixed seed, and
the end-of-sequence token is pushed far down so a completion always runs to ``max_tokens``.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

import numpy as np

CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

_N_EMBD = 64
_N_HEAD = 4
_N_HEAD_KV = 2
_N_FF = 128
_N_LAYER = 2
_lock = threading.Lock()
_path: str | None = None


def _vocab() -> tuple[list[str], list[float], list[int]]:
    from gguf import TokenType

    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("а"), ord("я") + 1)]
    pieces = ["▁", ".", ",", "!", "?", "<", ">", "|"] + letters + ["▁" + ch for ch in letters]
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(path: str, seed: int = 0) -> str:
    """Write the model to ``path`` (deterministic for a seed) and return the path."""
    import gguf

    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = _N_EMBD // _N_HEAD
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("voiceai-tiny-test-llama")
    writer.add_context_length(2048)
    writer.add_embedding_length(_N_EMBD)
    writer.add_block_count(_N_LAYER)
    writer.add_feed_forward_length(_N_FF)
    writer.add_head_count(_N_HEAD)
    writer.add_head_count_kv(_N_HEAD_KV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    # Dimension 0 of every embedding is a large constant that survives the (small) layers; the
    # output rows of EOS and raw bytes weigh it negatively, so generation emits letters until
    # max_tokens instead of stopping at random or printing broken UTF-8.
    embd = rand(n_vocab, _N_EMBD, scale=0.5)
    embd[:, 0] = 4.0
    out = rand(n_vocab, _N_EMBD, scale=1.0)
    out[:, 0] = 0.0
    out[2, 0] = -8.0
    out[3:259, 0] = -3.0
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", out)
    kv_dim = _N_HEAD_KV * head_dim
    for i in range(_N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(_N_EMBD, _N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(kv_dim, _N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(kv_dim, _N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(_N_EMBD, _N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(_N_FF, _N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(_N_FF, _N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(_N_EMBD, _N_FF))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_gguf_path() -> str:
    """The model written once per process (test session) into a temporary folder, removed at exit."""
    global _path
    with _lock:
        if _path is None or not os.path.exists(_path):
            folder = tempfile.mkdtemp(prefix="voiceai-tiny-gguf-")
            atexit.register(shutil.rmtree, folder, True)
            _path = write_tiny_gguf(os.path.join(folder, "tiny-llama.gguf"))
        return _path
