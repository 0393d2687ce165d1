"""The LightningModule base every training stage shares, the frozen-peer mixin, and next-token
cross-entropy training (:class:`CausalLMModule`, teacher pretraining).

:class:`TrainModule` builds the optimizer from an :class:`~.config.OptimConfig` (one recipe for
every stage). :class:`FrozenPeerMixin` holds models that must not train (a KD teacher, an RPO
reference) outside the module's registered children: never in the state dict (Lightning
checkpoints stay trainee-only), never wrapped by DDP/FSDP for gradients, never seen by the
optimizer; they follow the module to its device and stay in eval mode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import lightning as L
import torch
from torch import nn

from .config import OptimConfig
from .optim import configure_optimizer


class TrainModule(L.LightningModule):
    """Base: subclasses name the attribute holding the module that trains (:attr:`trained`)."""

    trained: str = "model"

    def __init__(self, optim: Optional[OptimConfig] = None, total_steps: int = 100):
        super().__init__()
        self.optim_config = optim or OptimConfig()
        self.total_steps = total_steps

    def trained_module(self) -> nn.Module:
        return getattr(self, self.trained)

    def log_losses(self, out: Dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        """Log a step's losses as ``train/<name>`` (``loss`` on the progress bar); return the loss."""
        self.log_dict({f"train/{k}": v for k, v in out.items()}, batch_size=batch_size)
        self.log("loss", out["loss"].detach(), prog_bar=True, logger=False, batch_size=batch_size)
        return out["loss"]

    def record_settings(self, ignore: list[str]) -> None:
        """``save_hyperparameters`` of the caller's ``__init__`` with the optimizer as a plain dict
        (Lightning checkpoints are loaded as weights-only: no custom classes inside)."""
        self.save_hyperparameters(ignore=[*ignore, "optim"], frame=_caller_frame())
        self.hparams["optim"] = dataclasses.asdict(self.optim_config)

    def configure_optimizers(self) -> Any:
        return configure_optimizer(self.trained_module().named_parameters(), self.optim_config, self.total_steps)


def _caller_frame() -> Any:
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None and frame.f_back.f_back is not None
    return frame.f_back.f_back


class FrozenPeerMixin:
    """Frozen models kept outside the registered children; they follow the module's device."""

    device: torch.device

    def hold_frozen(self, name: str, model: nn.Module) -> None:
        """``self.<name> = model``, frozen, in eval mode, and deliberately not a registered submodule."""
        model.requires_grad_(False).eval()
        object.__setattr__(self, name, model)  # bypasses nn.Module.__setattr__: not a child
        self.__dict__.setdefault("_frozen_peer_names", []).append(name)

    def _sync_frozen_peers(self) -> None:
        for name in self.__dict__.get("_frozen_peer_names", []):
            model: nn.Module = self.__dict__[name]
            if next(model.parameters()).device != self.device:
                model.to(self.device)
            model.eval()

    def on_fit_start(self) -> None:
        self._sync_frozen_peers()

    def on_validation_start(self) -> None:
        self._sync_frozen_peers()


class CausalLMModule(TrainModule):
    """Next-token cross-entropy training of any HF causal LM.

    HF ``*ForCausalLM`` models shift ``labels`` themselves (``ForCausalLMLoss``: position t
    predicts token t+1; tested in ``tests/test_pretrain.py``), so ``labels=input_ids``.
    """

    def __init__(self, model: nn.Module, optim: Optional[OptimConfig] = None, total_steps: int = 1) -> None:
        super().__init__(optim, total_steps)
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of a batch of token rows."""
        return self.model(input_ids=input_ids, labels=input_ids, use_cache=False).loss

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch["input_ids"])
        n = batch["input_ids"].shape[0]
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False,
                 batch_size=n)
        return loss

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Every packed row has the same number of scored positions, so the batch-size-weighted
        # epoch mean Lightning computes is the exact per-token mean.
        loss = self(batch["input_ids"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=batch["input_ids"].shape[0])
        return loss
