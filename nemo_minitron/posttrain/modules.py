"""LightningModules of post-training: SFT-KD (top-k teacher targets) and RPO/DPO alignment.

Both follow ``nemo_minitron.distill.module``: AdamW (no decay on 1-D parameters) with linear
warmup + cosine decay, and a frozen model (RPO's reference) held outside the registered
submodules, so it is never in the state dict, the optimizer or a DDP/FSDP wrapper; it follows
the module's device and stays in eval mode.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from torch import nn

from nemo_minitron.distill.preference import PREFERENCE_LOSSES, preference_loss
from nemo_minitron.distill.topk import topk_kd_loss
from nemo_minitron.models.runtime import CPU_SSM_CHUNK, backbone_and_head, resolve_chunk_size, set_ssm_chunk_size  # noqa: F401
from nemo_minitron.training import cosine_with_warmup, make_adamw


class _OptimMixin:
    hparams: Any

    def _optimizers(self, model: nn.Module) -> Any:
        hp = self.hparams
        optimizer = make_adamw(model.named_parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = cosine_with_warmup(optimizer, hp.warmup_steps, hp.total_steps, hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def selected_logits(model: nn.Module, input_ids: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Logits ``[N, V]`` of the positions where ``select`` [B, S] is true (row-major order).

    Runs the backbone on every position but the LM head only where a loss needs it: with a
    32000-token vocabulary the head and the softmax dominate a small model's step, and only
    assistant tokens (a minority) are trained on. Equal to ``model(input_ids).logits[select]``.
    """
    select = select.bool()
    parts = backbone_and_head(model)
    if parts is None:
        return model(input_ids=input_ids, use_cache=False).logits[select].float()
    backbone, head = parts
    hidden = backbone(input_ids=input_ids, use_cache=False)[0]
    return head(hidden[select]).float()


def next_token_select(mask: torch.Tensor) -> torch.Tensor:
    """Logit positions predicting a masked token: ``out[:, t] = mask[:, t + 1]`` (last column 0)."""
    out = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    out[:, :-1] = mask[:, 1:] > 0
    return out


def response_token_logprobs(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the masked tokens (row-major, [N]) and each one's batch row [N].

    Summed per row this equals ``sequence_logprob(model(input_ids).logits, input_ids, mask)``.
    """
    select = next_token_select(mask)
    logits = selected_logits(model, input_ids, select)
    targets = input_ids[:, 1:][mask[:, 1:] > 0]
    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(select)[select]
    return token_lp, rows


def response_logprob(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of the masked (response) tokens, one value per sequence."""
    token_lp, rows = response_token_logprobs(model, input_ids, mask)
    return torch.zeros(input_ids.shape[0], dtype=token_lp.dtype, device=token_lp.device).index_add(0, rows, token_lp)


class SFTKDModule(_OptimMixin, L.LightningModule):
    """Loss = kd_weight * top-k KD (forward KL on the teacher's top-k ids) + sft_weight * CE,
    both averaged over assistant tokens only.

    Batches come from :func:`nemo_minitron.posttrain.topk_cache.topk_collate` (``input_ids``,
    ``loss_mask``, ``topk_ids/logits/lse``, ``kd_mask``); with ``kd_weight=0`` (plain SFT) a
    :func:`~nemo_minitron.data.chat.chat_collate` batch suffices.
    """

    def __init__(self, student: nn.Module, lr: float = 3e-4, min_lr_ratio: float = 0.1, warmup_steps: int = 10,
                 total_steps: int = 100, weight_decay: float = 0.01, kd_weight: float = 1.0,
                 sft_weight: float = 0.0, renormalize: bool = True):
        super().__init__()
        if kd_weight < 0 or sft_weight < 0 or kd_weight + sft_weight <= 0:
            raise ValueError(f"need kd_weight, sft_weight >= 0 and one of them > 0, got {kd_weight}, {sft_weight}")
        self.student = student
        self.save_hyperparameters(ignore=["student"])

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        ids, loss_mask = batch["input_ids"], batch["loss_mask"]
        predict = next_token_select(loss_mask)  # logit positions whose next token is trained on
        kd_mask = batch["kd_mask"].bool() if hp.kd_weight else torch.zeros_like(predict)
        select = predict | kd_mask
        if not predict.any():
            raise ValueError("the batch has no assistant token to train on")
        logits = selected_logits(self.student, ids, select)  # [N, V], only where a loss needs it
        sft = torch.nn.functional.cross_entropy(logits[predict[select]], ids[:, 1:][loss_mask[:, 1:] > 0])
        out = {"sft": sft.detach()}
        loss = hp.sft_weight * sft if hp.sft_weight else 0.0
        if hp.kd_weight:
            kd = topk_kd_loss(logits, batch["topk_ids"][select], batch["topk_logits"][select],
                              batch["topk_lse"][select], mask=kd_mask[select], renormalize=hp.renormalize)
            loss = loss + hp.kd_weight * kd
            out["kd"] = kd.detach()
        out["loss"] = loss
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        n = batch["input_ids"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"].detach(), prog_bar=True, logger=False, batch_size=n)
        return out["loss"]

    def configure_optimizers(self) -> Any:
        return self._optimizers(self.student)


def pad_pair_batch(chosen: torch.Tensor, rejected: torch.Tensor, pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad two [B, S1] / [B, S2] tensors to the same width."""
    width = max(chosen.shape[1], rejected.shape[1])

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad_value)

    return pad(chosen), pad(rejected)


class RPOModule(_OptimMixin, L.LightningModule):
    """Preference alignment of ``policy`` against a frozen ``reference`` copy.

    Per pair: summed response log-probs of chosen/rejected under policy and reference
    (:func:`response_logprob`, equal to ``sequence_logprob`` on full logits), then
    :func:`preference_loss` (``rpo_bwd_kl``, ``rpo_fwd_kl``,
    ``rpo_sq`` or ``dpo``), plus ``sft_weight`` x the policy's mean per-token NLL of the chosen
    response. Batch keys: ``chosen_ids``, ``chosen_mask``, ``rejected_ids``, ``rejected_mask``
    ([B, S], right padded; masks 1 on response tokens) and, for the RPO losses,
    ``reward_chosen`` / ``reward_rejected`` [B].
    """

    def __init__(self, policy: nn.Module, reference: nn.Module, loss_type: str = "rpo_bwd_kl", beta: float = 0.1,
                 eta: float = 1.0, sft_weight: float = 0.0, lr: float = 1e-5, min_lr_ratio: float = 0.1,
                 warmup_steps: int = 5, total_steps: int = 100, weight_decay: float = 0.0, pad_id: int = 0):
        super().__init__()
        if loss_type not in PREFERENCE_LOSSES:
            raise ValueError(f"loss_type={loss_type!r} must be one of {PREFERENCE_LOSSES}")
        if policy is reference:
            raise ValueError("the reference must be a separate frozen copy of the policy")
        self.policy = policy
        reference.requires_grad_(False).eval()
        object.__setattr__(self, "_reference", reference)  # deliberately not a registered submodule
        self.save_hyperparameters(ignore=["policy", "reference"])

    @property
    def reference(self) -> nn.Module:
        return self._reference

    def _sync_reference(self) -> None:
        if next(self.reference.parameters()).device != self.device:
            self.reference.to(self.device)
        self.reference.eval()

    def on_fit_start(self) -> None:
        self._sync_reference()

    def on_validation_start(self) -> None:
        self._sync_reference()

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        chosen_ids, rejected_ids = pad_pair_batch(batch["chosen_ids"], batch["rejected_ids"], hp.pad_id)
        chosen_mask, rejected_mask = pad_pair_batch(batch["chosen_mask"], batch["rejected_mask"], 0)
        n = chosen_ids.shape[0]
        ids, mask = torch.cat([chosen_ids, rejected_ids]), torch.cat([chosen_mask, rejected_mask])
        token_lp, rows = response_token_logprobs(self.policy, ids, mask)
        policy_lp = torch.zeros(2 * n, dtype=token_lp.dtype, device=ids.device).index_add(0, rows, token_lp)
        with torch.no_grad():
            ref_lp = response_logprob(self.reference, ids, mask)
        loss = preference_loss(policy_lp[:n], policy_lp[n:], ref_lp[:n], ref_lp[n:], loss_type=hp.loss_type,
                               beta=hp.beta, eta=hp.eta, reward_chosen=batch.get("reward_chosen"),
                               reward_rejected=batch.get("reward_rejected"))
        out = {"preference": loss.detach()}
        if hp.sft_weight:
            nll = -token_lp[rows < n].mean()  # mean per-token NLL of the chosen responses
            loss = loss + hp.sft_weight * nll
            out["sft_nll"] = nll.detach()
        margin = ((policy_lp[:n] - ref_lp[:n]) - (policy_lp[n:] - ref_lp[n:])).detach()
        out.update(loss=loss, margin=margin.mean(), reward_accuracy=(margin > 0).float().mean())
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        n = batch["chosen_ids"].shape[0]
        self.log_dict({f"train/{k}": v for k, v in out.items()}, batch_size=n)
        self.log("loss", out["loss"].detach(), prog_bar=True, logger=False, batch_size=n)
        return out["loss"]

    def configure_optimizers(self) -> Any:
        return self._optimizers(self.policy)


def preference_collate(items: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Batch of tokenized pairs (``chosen_ids``/``chosen_mask``/``rejected_ids``/``rejected_mask``
    lists, optional ``reward_chosen``/``reward_rejected`` floats), right padded."""
    from nemo_minitron.data.chat import pad_right

    batch = {
        "chosen_ids": pad_right([it["chosen_ids"] for it in items], pad_id),
        "chosen_mask": pad_right([it["chosen_mask"] for it in items], 0),
        "rejected_ids": pad_right([it["rejected_ids"] for it in items], pad_id),
        "rejected_mask": pad_right([it["rejected_mask"] for it in items], 0),
    }
    rewards: Optional[list[float]] = [it.get("reward_chosen") for it in items]
    if rewards is not None and all(r is not None for r in rewards):
        batch["reward_chosen"] = torch.tensor([it["reward_chosen"] for it in items], dtype=torch.float32)
        batch["reward_rejected"] = torch.tensor([it["reward_rejected"] for it in items], dtype=torch.float32)
    return batch
