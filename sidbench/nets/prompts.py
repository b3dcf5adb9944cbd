"""Prompts to text embeddings: a tokenizer plus a frozen text encoder, with the empty prompt cached.

Stable Diffusion uses CLIP's BPE tokenizer (padded to 77, truncated) and CLIPTextModel's last hidden
state; the digits-t2i teacher uses the same CLIPTextModel class, small, with a word-level tokenizer
over its fixed vocabulary (`WordTokenizer`: a few dozen words need no BPE). Either way a batch of
prompts is tokenised and encoded in one call, and the empty prompt "" (the unconditional branch of
classifier-free guidance) is encoded once and reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from sidbench.errors import ConfigError

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+")


class WordTokenizer:
    """Lower-cased alphanumeric words -> ids: <bos> words <eos>, padded with <pad> to `max_length`.

    Unknown words map to <unk>; longer prompts are truncated with <eos> kept (as CLIP's tokenizer does).
    """

    def __init__(self, vocab: Sequence[str], max_length: int):
        words = list(vocab)
        if len(set(words)) != len(words) or any(w in SPECIAL or not _WORD.fullmatch(w) for w in words):
            raise ConfigError("a word vocabulary must list distinct lower-case alphanumeric words")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
            raise ConfigError(f"max_length must be a whole number >= 3, got {max_length!r}")
        self.vocab = words
        self.max_length = max_length
        self.ids = {w: i for i, w in enumerate([*SPECIAL, *words])}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> WordTokenizer:
        if not isinstance(spec, Mapping) or spec.get("kind") != "words":
            raise ConfigError(f"unknown tokenizer spec {spec!r}", hint="expected {'kind': 'words', ...}")
        missing = [k for k in ("vocab", "max_length") if k not in spec]
        if missing or isinstance(spec["vocab"], str) or not isinstance(spec["vocab"], Sequence):
            raise ConfigError(f"tokenizer spec {dict(spec)!r} needs 'vocab' (a list of words) and "
                              "'max_length'",
                              hint="e.g. {'kind': 'words', 'vocab': ['a', 'cat'], 'max_length': 10}")
        return cls(spec["vocab"], spec["max_length"])

    def spec(self) -> dict[str, Any]:
        return {"kind": "words", "vocab": list(self.vocab), "max_length": self.max_length}

    @property
    def vocab_size(self) -> int:
        return len(self.ids)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in prompts:
            words = [self.ids.get(w, self.ids["<unk>"]) for w in _WORD.findall(str(text).lower())]
            body = words[: self.max_length - 2]
            row = [self.ids["<bos>"], *body, self.ids["<eos>"]]
            rows.append(row + [self.ids["<pad>"]] * (self.max_length - len(row)))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), self.max_length)


def clip_tokenize(tokenizer: Any) -> Callable[[Sequence[str]], torch.Tensor]:
    """A transformers CLIPTokenizer as prompts -> ids [b, model_max_length] (padded, truncated)."""
    def tokenize(prompts: Sequence[str]) -> torch.Tensor:
        out = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt")
        return out.input_ids
    return tokenize


class PromptEncoder(torch.nn.Module):
    """Frozen text encoder + tokenizer: `encode(prompts) -> [b, L, D]`, `empty(b)` cached."""

    def __init__(self, text_encoder: torch.nn.Module, tokenize: Callable[[Sequence[str]], torch.Tensor],
                 description: str = "", freeze: bool = True):
        super().__init__()
        # freeze=False: a view of a text encoder that is still training (evaluating a teacher run)
        self.text_encoder = text_encoder.eval().requires_grad_(False) if freeze else text_encoder
        self.tokenize = tokenize
        self.description = description
        self._empty: torch.Tensor | None = None
        self.calls = 0  # encoder calls (tests: once per batch)

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Last hidden states [b, L, D] (float32) of the prompts, one encoder call."""
        if isinstance(prompts, str):
            raise ConfigError("encode() takes a list of prompts, not one string")
        ids = self.tokenize(list(prompts)).to(self.device)
        self.calls += 1
        return self.text_encoder(ids)[0].to(torch.float32)

    def empty(self, batch: int = 1) -> torch.Tensor:
        """The empty prompt's embedding [batch, L, D], encoded once."""
        if self._empty is None or self._empty.device != self.device:
            self._empty = self.encode([""])
        return self._empty.expand(batch, *self._empty.shape[1:])

    def forward(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode(prompts)
