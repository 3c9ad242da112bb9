"""A user's own torch encoder plugged in by import path (``tests.tiny_bundle:factory``)."""

from __future__ import annotations

import torch
from torch import nn

from tasks.kinds.inference_models import ModelBundle


class _Block(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.lin = nn.Linear(h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.lin(x))


class TinyEncoder(nn.Module):
    def __init__(self, vocab: int = 257, h: int = 16, n_layers: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(vocab, h)
        self.layers = nn.ModuleList([_Block(h) for _ in range(n_layers)])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(input_ids)
        for block in self.layers:
            x = block(x)
        return x


class TinyBundle(ModelBundle):
    """Byte-level tokenizer, 4 residual blocks, mean pooling."""

    name = "tiny"

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        ids = [list(t.encode())[:max_length] for t in texts]
        n = max(len(i) for i in ids)
        out = torch.zeros(len(ids), n, dtype=torch.long)
        mask = torch.zeros(len(ids), n, dtype=torch.long)
        for r, row in enumerate(ids):
            out[r, : len(row)] = torch.tensor(row) + 1
            mask[r, : len(row)] = 1
        return {"input_ids": out, "attention_mask": mask}

    def build(self, attention: str) -> nn.Module:
        return TinyEncoder().eval()

    def embed(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(batch["input_ids"])
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        assert isinstance(model, TinyEncoder)
        return model.layers

    def with_layers(self, model: nn.Module, keep: list[int]) -> nn.Module:
        assert isinstance(model, TinyEncoder)
        out = TinyEncoder()
        out.load_state_dict(model.state_dict())
        out.layers = nn.ModuleList([out.layers[i] for i in keep])
        return out.eval()


def factory() -> ModelBundle:
    return TinyBundle()


def not_a_bundle() -> object:
    return object()
