"""The SFT-KD teacher pass: per token, the teacher's top-k ids and logits plus the full log-sum-exp.

Run once before training (NeMo-Aligner's SFT-KD does the same): the student then trains
against the cached targets without the teacher in memory. For each sequence the cache holds
the positions whose next token is trained on (``loss_mask[t + 1] == 1``: the assistant tokens),
or every position with ``only_masked=False``. With k=100 and fp16 logits one position costs
602 bytes (int32 ids, fp16 logits, fp32 lse) instead of 2 x vocab bytes for full logits.

Layout of ``cache_dir``::

    index.json                 fingerprint, k, dtype, shard list (rewritten after every shard)
    shard-00000.safetensors    ids [T, k] int32, logits [T, k], lse [T] f32, positions [T] int32,
    shard-00001.safetensors    offsets [n + 1] int64 (rows of sequence i: offsets[i]:offsets[i+1])

A shard covers a fixed range of ``shard_size`` sequences and is written atomically, so a
rerun after an interruption skips the shards already listed in the index. The fingerprint
hashes the teacher (weights), the token ids and masks, k, dtype and layout; a cache built for
anything else is refused rather than silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from nemo_minitron.atomic import atomic_file, write_text_atomic
from nemo_minitron.data.chat import pad_right
from nemo_minitron.losses.topk import topk_teacher
from nemo_minitron.losses.logprobs import selected_logits

INDEX_FILE = "index.json"
CACHE_VERSION = 1
LOGITS_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
PathLike = Union[str, "os.PathLike[str]"]
Sequences = Sequence[dict[str, Sequence[int]]]  # items with "input_ids" and "loss_mask"


class CacheMismatchError(ValueError):
    """``cache_dir`` holds a cache for another teacher, data or setting."""


# --------------------------------------------------------------------------- fingerprints
def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's parameter names, shapes, dtypes and bytes (in-memory teachers)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_fingerprint(path: PathLike) -> str:
    """sha256 of a checkpoint folder's ``config.json`` and weight files (full content)."""
    folder = Path(path)
    h = hashlib.sha256()
    files = sorted([folder / "config.json", *folder.glob("*.safetensors"), *folder.glob("*.bin")])
    for f in files:
        if not f.is_file():
            continue
        h.update(f.name.encode())
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def data_fingerprint(sequences: Sequences) -> str:
    h = hashlib.sha256()
    for item in sequences:
        h.update(torch.as_tensor(list(item["input_ids"]), dtype=torch.int64).numpy().tobytes())
        h.update(b"|")
        h.update(torch.as_tensor(list(item["loss_mask"]), dtype=torch.int8).numpy().tobytes())
        h.update(b"#")
    return h.hexdigest()


def _positions(mask: Sequence[int], length: int, only_masked: bool) -> list[int]:
    """Logit positions to cache: t predicts token t+1."""
    if only_masked:
        return [t for t in range(length - 1) if mask[t + 1]]
    return list(range(length - 1))


# --------------------------------------------------------------------------- writing
def _write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1))


@torch.no_grad()
def _teacher_shard(teacher: nn.Module, items: Sequences, k: int, only_masked: bool, batch_size: int,
                   logits_dtype: torch.dtype, pad_id: int, bar: Any) -> dict[str, torch.Tensor]:
    device = next(teacher.parameters()).device
    ids_out, logits_out, lse_out, pos_out, counts = [], [], [], [], []
    for lo in range(0, len(items), batch_size):
        chunk = items[lo:lo + batch_size]
        batch = pad_right([list(it["input_ids"]) for it in chunk], pad_id).to(device)
        select = torch.zeros(batch.shape, dtype=torch.bool, device=device)
        row_positions = []
        for row, it in enumerate(chunk):
            pos = _positions(it["loss_mask"], len(it["input_ids"]), only_masked)
            select[row, pos] = True
            row_positions.append(pos)
        logits = selected_logits(teacher, batch, select)  # [N, V] in row-major order of `select`
        top_ids, top_vals, lse = topk_teacher(logits, k)
        lo_row = 0
        for pos in row_positions:
            hi_row = lo_row + len(pos)
            ids_out.append(top_ids[lo_row:hi_row].to(torch.int32).cpu())
            logits_out.append(top_vals[lo_row:hi_row].to(logits_dtype).cpu())
            lse_out.append(lse[lo_row:hi_row].float().cpu())
            pos_out.append(torch.as_tensor(pos, dtype=torch.int32))
            counts.append(len(pos))
            lo_row = hi_row
        if bar is not None:
            bar.update(len(chunk))
    offsets = torch.zeros(len(items) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.as_tensor(counts, dtype=torch.int64), 0)
    return {"ids": torch.cat(ids_out).contiguous(), "logits": torch.cat(logits_out).contiguous(),
            "lse": torch.cat(lse_out).contiguous(), "positions": torch.cat(pos_out).contiguous(), "offsets": offsets}


def build_topk_cache(teacher: nn.Module, sequences: Sequences, cache_dir: PathLike, k: int = 100,
                     shard_size: int = 256, batch_size: int = 8, logits_dtype: str = "float16",
                     only_masked: bool = True, teacher_fingerprint: Optional[str] = None, pad_id: int = 0,
                     overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run ``teacher`` over ``sequences`` and cache its top-k targets in ``cache_dir`` (resumable).

    Returns the index (also in ``cache_dir/index.json``) with ``"built_shards"`` (shards computed
    by this call) and ``"skipped_shards"`` (already present). ``teacher_fingerprint`` identifies
    the teacher (:func:`checkpoint_fingerprint` of its folder); by default the parameters are
    hashed. A cache with another fingerprint raises :class:`CacheMismatchError` unless
    ``overwrite=True`` (then its shards are deleted and rebuilt).
    """
    from safetensors.torch import save_file

    if logits_dtype not in LOGITS_DTYPES:
        raise ValueError(f"logits_dtype={logits_dtype!r} must be one of {sorted(LOGITS_DTYPES)}")
    vocab = teacher.config.vocab_size
    if not 0 < k <= vocab:
        raise ValueError(f"topk={k} must be in [1, vocab_size={vocab}]")
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be >= 1")
    if not sequences:
        raise ValueError("no sequences to run the teacher on")
    for i, item in enumerate(sequences):
        if len(item["input_ids"]) != len(item["loss_mask"]):
            raise ValueError(f"sequence {i}: input_ids and loss_mask lengths differ")
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    setting = {"k": k, "logits_dtype": logits_dtype, "only_masked": only_masked, "shard_size": shard_size,
               "num_sequences": len(sequences)}
    fingerprint = hashlib.sha256(json.dumps({
        "version": CACHE_VERSION, "teacher": teacher_fingerprint or model_fingerprint(teacher),
        "data": data_fingerprint(sequences), **setting}, sort_keys=True).encode()).hexdigest()
    index_path = folder / INDEX_FILE
    done: dict[int, dict[str, Any]] = {}
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        if old.get("fingerprint") != fingerprint:
            if not overwrite:
                raise CacheMismatchError(
                    f"{folder} holds a top-k cache for another teacher/data/setting (fingerprint "
                    f"{str(old.get('fingerprint'))[:12]} != {fingerprint[:12]}); "
                    "use another cache_dir or overwrite=True")
            for shard in old.get("shards", []):
                (folder / shard["file"]).unlink(missing_ok=True)
        else:
            done = {s["shard"]: s for s in old.get("shards", []) if (folder / s["file"]).is_file()}
    num_shards = (len(sequences) + shard_size - 1) // shard_size
    index: dict[str, Any] = {"version": CACHE_VERSION, "fingerprint": fingerprint, **setting,
                             "num_shards": num_shards, "shards": [done[i] for i in sorted(done)], "complete": False}
    _write_json_atomic(index_path, index)
    todo = [i for i in range(num_shards) if i not in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        remaining = sum(min(shard_size, len(sequences) - i * shard_size) for i in todo)
        bar = tqdm(total=remaining, desc=f"teacher top-{k}", unit="seq")
    was_training = teacher.training
    teacher.eval()
    start = time.perf_counter()
    try:
        for i in todo:
            lo, hi = i * shard_size, min(len(sequences), (i + 1) * shard_size)
            tensors = _teacher_shard(teacher, sequences[lo:hi], k, only_masked, batch_size,
                                     LOGITS_DTYPES[logits_dtype], pad_id, bar)
            name = f"shard-{i:05d}.safetensors"
            with atomic_file(folder / name) as tmp:
                save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint})
            done[i] = {"shard": i, "file": name, "start": lo, "end": hi, "positions": int(tensors["lse"].numel())}
            index["shards"] = [done[j] for j in sorted(done)]
            _write_json_atomic(index_path, index)
    finally:
        if bar is not None:
            bar.close()
        teacher.train(was_training)
    index["complete"] = len(done) == num_shards
    index["positions"] = sum(s["positions"] for s in index["shards"])
    index["bytes"] = sum((folder / s["file"]).stat().st_size for s in index["shards"])
    _write_json_atomic(index_path, index)
    return {**index, "built_shards": todo, "skipped_shards": sorted(set(done) - set(todo)),
            "seconds": round(time.perf_counter() - start, 2)}


# --------------------------------------------------------------------------- reading
class TopKDataset(torch.utils.data.Dataset):
    """The sequences with their cached teacher targets, aligned per token.

    Item: ``input_ids``, ``loss_mask`` (lists) and ``topk_positions`` [n] (logit positions),
    ``topk_ids`` [n, k] (int64), ``topk_logits`` [n, k] (float32), ``topk_lse`` [n]. Raises
    when the cache is incomplete or was built for other sequences.
    """

    def __init__(self, cache_dir: PathLike, sequences: Sequences):
        from safetensors.torch import load_file

        folder = Path(cache_dir)
        index_path = folder / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} not found: build the cache with build_topk_cache first")
        self.index = json.loads(index_path.read_text())
        if not self.index.get("complete"):
            raise ValueError(f"the top-k cache in {folder} is incomplete: rerun build_topk_cache to finish it")
        if self.index["num_sequences"] != len(sequences):
            raise CacheMismatchError(f"cache has {self.index['num_sequences']} sequences, got {len(sequences)}")
        self.sequences = sequences
        self.k = int(self.index["k"])
        self.only_masked = bool(self.index["only_masked"])
        self._shards = {}
        self._where: list[tuple[int, int]] = []
        for shard in self.index["shards"]:
            tensors = load_file(str(folder / shard["file"]))
            self._shards[shard["shard"]] = tensors
            for j in range(shard["end"] - shard["start"]):
                self._where.append((shard["shard"], j))
        if len(self._where) != len(sequences):
            raise CacheMismatchError(f"cache covers {len(self._where)} sequences, expected {len(sequences)}")

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict[str, Any]:
        shard, j = self._where[i]
        t = self._shards[shard]
        lo, hi = int(t["offsets"][j]), int(t["offsets"][j + 1])
        item = self.sequences[i]
        positions = t["positions"][lo:hi].long()
        expected = _positions(item["loss_mask"], len(item["input_ids"]), self.only_masked)
        if positions.tolist() != expected:
            raise CacheMismatchError(f"sequence {i}: cached positions do not match its loss mask (stale cache?)")
        return {"input_ids": item["input_ids"], "loss_mask": item["loss_mask"], "topk_positions": positions,
                "topk_ids": t["ids"][lo:hi].long(), "topk_logits": t["logits"][lo:hi].float(),
                "topk_lse": t["lse"][lo:hi].float()}


def topk_collate(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded chat batch plus dense per-position targets ``topk_ids/logits`` [B, S, k],
    ``topk_lse`` [B, S] and ``kd_mask`` [B, S] (1 where a target exists; logit positions)."""
    from nemo_minitron.data.chat import chat_collate

    batch = chat_collate(items, pad_id)
    bsz, width = batch["input_ids"].shape
    k = items[0]["topk_ids"].shape[-1] if items[0]["topk_ids"].ndim == 2 else 1
    ids = torch.zeros((bsz, width, k), dtype=torch.long)
    logits = torch.zeros((bsz, width, k), dtype=torch.float32)
    lse = torch.zeros((bsz, width), dtype=torch.float32)
    kd_mask = torch.zeros((bsz, width), dtype=torch.float32)
    for b, it in enumerate(items):
        pos = it["topk_positions"]
        ids[b, pos], logits[b, pos], lse[b, pos] = it["topk_ids"], it["topk_logits"], it["topk_lse"]
        kd_mask[b, pos] = 1.0
    batch.update(topk_ids=ids, topk_logits=logits, topk_lse=lse, kd_mask=kd_mask)
    return batch
