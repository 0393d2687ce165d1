"""Post-training (paper 4.3): preference and top-k KD losses by hand, the top-k cache, chat
masking, the task generator, the long-context builder, generation, and tiny end-to-end stages.

The stage tests use a 2.1M-parameter NemotronH with the real 32000-token tokenizer and run a
few optimizer steps each; everything is offline and on CPU.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from conftest import STAGE_ARCH, TINY_ARCH, make_model, save_teacher_and_student
from nemo_minitron.data import load_default_tokenizer
from nemo_minitron.data.chat import (CHAT_TEMPLATE, ChatDataset, chat_collate, load_chat_jsonl, load_preference_jsonl,
                                     render_conversation, tokenize_conversation, tokenize_prompt,
                                     tokenize_segments, with_chat_template)
from nemo_minitron.data.instruct_tasks import (KEYS, ROUND_TASKS, TASKS, VALUES, WORDS, eval_sets,
                                               generate_tasks, is_correct, round_records)
from nemo_minitron.data.long_context import build_long_dataset, long_range_eval_set
from nemo_minitron.losses import kd_loss_reference, preference_loss, sequence_logprob, topk_kd_loss, topk_teacher
from nemo_minitron.posttrain.topk_cache import CacheMismatchError, TopKDataset, build_topk_cache, topk_collate


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return with_chat_template(load_default_tokenizer())


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bern_kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


# =========================================================================== preference losses by hand
# One pair: policy log-probs chosen -1, rejected -3; reference -2 and -2; beta 0.5, eta 2, rewards 1 / 0.
#   a = 0.5 * ((-1 - -2) - (-3 - -2)) = 0.5 * (1 + 1) = 1        b = 2 * (1 - 0) = 2
#   dpo        = -ln sigmoid(1) = ln(1 + e^-1)                   = 0.3132617
#   rpo_sq     = (1 - 2)^2                                       = 1
#   rpo_bwd_kl = KL(Bern(s(2)) || Bern(s(1))), s(2) = 0.8807971, s(1) = 0.7310586
#              = 0.8807971 ln(0.8807971/0.7310586) + 0.1192029 ln(0.1192029/0.2689414)
#              = 0.1641222 - 0.0969914 = 0.0671308
#   rpo_fwd_kl = KL(Bern(s(1)) || Bern(s(2)))
#              = 0.7310586 ln(0.7310586/0.8807971) + 0.2689414 ln(0.2689414/0.1192029)
#              = -0.1362208 + 0.2188286 = 0.0826077
PAIR = dict(policy_chosen=torch.tensor([-1.0]), policy_rejected=torch.tensor([-3.0]),
            ref_chosen=torch.tensor([-2.0]), ref_rejected=torch.tensor([-2.0]),
            reward_chosen=torch.tensor([1.0]), reward_rejected=torch.tensor([0.0]))
HAND = {"dpo": 0.3132617, "rpo_sq": 1.0, "rpo_bwd_kl": 0.0671308, "rpo_fwd_kl": 0.0826077}


def test_hand_numbers_follow_from_the_formulas():
    assert HAND["dpo"] == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-7)
    assert HAND["rpo_bwd_kl"] == pytest.approx(_bern_kl(_sigmoid(2.0), _sigmoid(1.0)), abs=1e-7)
    assert HAND["rpo_fwd_kl"] == pytest.approx(_bern_kl(_sigmoid(1.0), _sigmoid(2.0)), abs=1e-7)


@pytest.mark.parametrize("loss_type", sorted(HAND))
def test_preference_losses_match_hand_computation(loss_type):
    loss = preference_loss(**PAIR, loss_type=loss_type, beta=0.5, eta=2.0)
    assert loss.item() == pytest.approx(HAND[loss_type], abs=1e-6)


def test_preference_loss_is_the_mean_over_pairs_and_dpo_ignores_rewards():
    two = {k: torch.cat([v, torch.tensor([0.0])]) for k, v in PAIR.items()}  # 2nd pair: a = 0, b = 0
    for loss_type in ("rpo_sq", "rpo_bwd_kl", "rpo_fwd_kl"):
        assert preference_loss(**two, loss_type=loss_type, beta=0.5, eta=2.0).item() == \
            pytest.approx(HAND[loss_type] / 2, abs=1e-6)
    no_rewards = {k: v for k, v in PAIR.items() if not k.startswith("reward")}
    assert preference_loss(**no_rewards, loss_type="dpo", beta=0.5).item() == pytest.approx(HAND["dpo"], abs=1e-6)
    with pytest.raises(ValueError, match="reward_chosen"):
        preference_loss(**no_rewards, loss_type="rpo_sq")
    with pytest.raises(ValueError, match="loss_type"):
        preference_loss(**PAIR, loss_type="ipo")


@pytest.mark.parametrize("loss_type", ["rpo_sq", "rpo_bwd_kl", "rpo_fwd_kl"])
def test_rpo_losses_are_exactly_zero_when_a_equals_b(loss_type):
    # pair 1: a = 0.25 * ((0 - -4) - (-1 - -1)) = 1   and b = 0.5 * (3 - 1) = 1
    # pair 2: a = 0.25 * ((-2 - -3) - (-4 - -3)) = 0.5 and b = 0.5 * (0.5 - -0.5) = 0.5
    pair = dict(policy_chosen=torch.tensor([0.0, -2.0]), policy_rejected=torch.tensor([-1.0, -4.0]),
                ref_chosen=torch.tensor([-4.0, -3.0]), ref_rejected=torch.tensor([-1.0, -3.0]),
                reward_chosen=torch.tensor([3.0, 0.5]), reward_rejected=torch.tensor([1.0, -0.5]))
    loss = preference_loss(**pair, loss_type=loss_type, beta=0.25, eta=0.5)
    assert abs(loss.item()) < 1e-7


def test_rpo_gradient_pulls_a_toward_b():
    pc = torch.tensor([-1.0], requires_grad=True)
    for loss_type in ("rpo_sq", "rpo_bwd_kl", "rpo_fwd_kl"):
        pc.grad = None
        kw = {**PAIR, "policy_chosen": pc}
        preference_loss(**kw, loss_type=loss_type, beta=0.5, eta=2.0).backward()
        assert pc.grad.item() < 0  # a = 1 < b = 2: raising log pi(chosen) lowers the loss


def test_sequence_logprob_sums_masked_response_tokens():
    # vocab 2, logits (ln 3, 0) -> p = (3/4, 1/4); tokens [0, 1, 0]; response = positions 1 and 2
    logits = torch.tensor([[[math.log(3.0), 0.0]] * 3])
    ids = torch.tensor([[0, 1, 0]])
    lp = sequence_logprob(logits, ids, torch.tensor([[0, 1, 1]]))
    assert lp.item() == pytest.approx(math.log(1 / 4) + math.log(3 / 4), abs=1e-6)
    lp_last = sequence_logprob(logits, ids, torch.tensor([[0, 0, 1]]))
    assert lp_last.item() == pytest.approx(math.log(3 / 4), abs=1e-6)


# =========================================================================== top-k KD by hand
# Vocabulary of 4, k = 2. Teacher logits ln(4, 2, 1, 1): p_t = (4, 2, 1, 1)/8, top-2 ids (0, 1), lse = ln 8.
# Student logits ln(1, 1, 2, 4): p_s = (1, 1, 2, 4)/8.
#   renormalised over {0, 1}: p_t = (2/3, 1/3), p_s = (1/2, 1/2)
#       KL = 2/3 ln(4/3) + 1/3 ln(2/3) = 0.1917880 - 0.1351550 = 0.0566330
#   not renormalised: true p_t = (1/2, 1/4), full-vocab p_s = (1/8, 1/8)
#       KL terms = 1/2 ln 4 + 1/4 ln 2 = 0.6931472 + 0.1732868 = 0.8664340
T_LOGITS = torch.log(torch.tensor([[4.0, 2.0, 1.0, 1.0]]))
S_LOGITS = torch.log(torch.tensor([[1.0, 1.0, 2.0, 4.0]]))


def test_topk_teacher_ids_logits_and_lse():
    ids, vals, lse = topk_teacher(T_LOGITS, 2)
    assert ids.tolist() == [[0, 1]]
    torch.testing.assert_close(vals, torch.log(torch.tensor([[4.0, 2.0]])))
    assert lse.item() == pytest.approx(math.log(8.0), abs=1e-6)
    with pytest.raises(ValueError, match="k="):
        topk_teacher(T_LOGITS, 5)


@pytest.mark.parametrize("renormalize,hand", [(True, 0.0566330), (False, 0.8664340)])
def test_topk_kd_loss_matches_hand_computation(renormalize, hand):
    ids, vals, lse = topk_teacher(T_LOGITS, 2)
    loss = topk_kd_loss(S_LOGITS, ids, vals, lse, renormalize=renormalize)
    assert loss.item() == pytest.approx(hand, abs=1e-6)
    # a second, masked-out token with a huge loss does not count
    s2 = torch.stack([S_LOGITS[0], torch.tensor([9.0, -9.0, 0.0, 0.0])])[None]
    t_ids, t_vals, t_lse = topk_teacher(torch.stack([T_LOGITS[0], torch.tensor([-9.0, 9.0, 0.0, 0.0])])[None], 2)
    masked = topk_kd_loss(s2, t_ids, t_vals, t_lse, mask=torch.tensor([[1, 0]]), renormalize=renormalize)
    assert masked.item() == pytest.approx(hand, abs=1e-6)


@pytest.mark.parametrize("renormalize", [True, False])
def test_topk_kd_with_k_equal_vocab_is_the_full_kl(renormalize):
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(2, 5, 11, generator=gen), torch.randn(2, 5, 11, generator=gen)
    ids, vals, lse = topk_teacher(teacher, 11)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]])
    full = kd_loss_reference(student, teacher, mask, direction="forward")
    torch.testing.assert_close(topk_kd_loss(student, ids, vals, lse, mask, renormalize=renormalize), full,
                               atol=1e-6, rtol=1e-5)


def test_topk_kd_errors():
    ids, vals, lse = topk_teacher(T_LOGITS, 2)
    with pytest.raises(ValueError, match="teacher_lse"):
        topk_kd_loss(S_LOGITS, ids, vals, None, renormalize=False)
    with pytest.raises(ValueError, match="no token"):
        topk_kd_loss(S_LOGITS, ids, vals, lse, mask=torch.tensor([0]))


# =========================================================================== logits only where a loss needs them
@pytest.mark.parametrize("arch_name", ["nemotron_h", "mamba2"])
def test_selected_logits_and_response_logprob_equal_the_full_computation(arch_name):
    from conftest import TINY_MAMBA2_ARCH

    from nemo_minitron.losses import response_logprob, selected_logits, shifted_cross_entropy
    from nemo_minitron.train import SFTKDModule

    model = make_model(TINY_ARCH if arch_name == "nemotron_h" else TINY_MAMBA2_ARCH)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (3, 12), generator=gen)
    mask = (torch.rand(3, 12, generator=gen) > 0.5).long()
    mask[:, 0] = 0
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        select = torch.rand(3, 12, generator=gen) > 0.3
        torch.testing.assert_close(selected_logits(model, ids, select), full[select], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(response_logprob(model, ids, mask), sequence_logprob(full, ids, mask),
                                   atol=1e-5, rtol=1e-5)
        sft = SFTKDModule(model, kd_weight=0.0, sft_weight=1.0)._losses({"input_ids": ids, "loss_mask": mask})
        torch.testing.assert_close(sft["sft"], shifted_cross_entropy(full, ids, mask), atol=1e-5, rtol=1e-5)


def test_ssm_chunk_size_changes_speed_not_results():
    from nemo_minitron.models.runtime import set_ssm_chunk_size

    model = make_model(TINY_ARCH)
    ids = torch.randint(3, 1000, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=False).logits
        assert set_ssm_chunk_size(model, 8) == TINY_ARCH.count("M")
        torch.testing.assert_close(model(input_ids=ids, use_cache=False).logits, ref, atol=1e-5, rtol=1e-5)
    assert model.config.chunk_size != 8  # runtime only: a saved checkpoint keeps its own
    assert set_ssm_chunk_size(model, None) == 0


# =========================================================================== top-k cache
def _sequences(n: int, vocab: int, seed: int = 0) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(6, 14)
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        mask = [0] * (length // 2) + [1] * (length - length // 2)
        out.append({"input_ids": ids, "loss_mask": mask})
    return out


class _FailingTeacher(torch.nn.Module):
    """Wraps a model; raises on forward call number ``fail_at`` (simulates a killed teacher pass)."""

    def __init__(self, model, fail_at: int):
        super().__init__()
        self.model, self.fail_at, self.calls = model, fail_at, 0
        self.config = model.config

    def forward(self, **kw):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        return self.model(**kw)


def test_topk_cache_round_trip_matches_recomputed_teacher(tmp_path):
    teacher = make_model(TINY_ARCH)
    seqs = _sequences(5, TINY_ARCH.vocab_size)
    info = build_topk_cache(teacher, seqs, tmp_path / "c", k=7, shard_size=2, batch_size=2, logits_dtype="float32",
                            progress=False)
    assert info["complete"] and info["num_shards"] == 3 and info["built_shards"] == [0, 1, 2]
    assert info["positions"] == sum(sum(s["loss_mask"][1:]) for s in seqs)
    ds = TopKDataset(tmp_path / "c", seqs)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            full = teacher(input_ids=torch.tensor([s["input_ids"]]), use_cache=False).logits[0]
            pos = [t for t in range(len(s["input_ids"]) - 1) if s["loss_mask"][t + 1]]
            ids, vals, lse = topk_teacher(full[pos], 7)
            item = ds[i]
            assert item["topk_positions"].tolist() == pos
            assert torch.equal(item["topk_ids"], ids)
            torch.testing.assert_close(item["topk_logits"], vals, atol=2e-5, rtol=1e-5)
            torch.testing.assert_close(item["topk_lse"], lse, atol=2e-5, rtol=1e-5)


def test_topk_cache_fp16_logits_are_close(tmp_path):
    teacher = make_model(TINY_ARCH)
    seqs = _sequences(3, TINY_ARCH.vocab_size, seed=1)
    build_topk_cache(teacher, seqs, tmp_path, k=4, progress=False)
    a = TopKDataset(tmp_path, seqs)[0]
    with torch.no_grad():
        full = teacher(input_ids=torch.tensor([seqs[0]["input_ids"]]), use_cache=False).logits[0]
    _, vals, _ = topk_teacher(full[a["topk_positions"]], 4)
    torch.testing.assert_close(a["topk_logits"], vals, atol=1e-2, rtol=1e-3)


def test_topk_cache_resumes_and_refuses_a_stale_cache(tmp_path):
    teacher = make_model(TINY_ARCH)
    seqs = _sequences(6, TINY_ARCH.vocab_size)
    kw = dict(k=5, shard_size=2, batch_size=2, progress=False, teacher_fingerprint="teacher-A")
    with pytest.raises(KeyboardInterrupt):  # killed during the 3rd shard (one forward per shard)
        build_topk_cache(_FailingTeacher(teacher, fail_at=3), seqs, tmp_path, **kw)
    index = json.loads((tmp_path / "index.json").read_text())
    assert not index["complete"] and [s["shard"] for s in index["shards"]] == [0, 1]
    with pytest.raises(ValueError, match="incomplete"):
        TopKDataset(tmp_path, seqs)
    resumed = build_topk_cache(teacher, seqs, tmp_path, **kw)
    assert resumed["built_shards"] == [2] and resumed["skipped_shards"] == [0, 1] and resumed["complete"]
    again = build_topk_cache(teacher, seqs, tmp_path, **kw)
    assert again["built_shards"] == []
    fresh = build_topk_cache(teacher, seqs, tmp_path / "fresh", **kw)
    for i in range(len(seqs)):  # the resumed cache equals an uninterrupted one
        a, b = TopKDataset(tmp_path, seqs)[i], TopKDataset(tmp_path / "fresh", seqs)[i]
        assert torch.equal(a["topk_ids"], b["topk_ids"]) and torch.equal(a["topk_logits"], b["topk_logits"])
    assert fresh["fingerprint"] == again["fingerprint"]
    with pytest.raises(CacheMismatchError, match="another teacher"):
        build_topk_cache(teacher, seqs, tmp_path, **{**kw, "teacher_fingerprint": "teacher-B"})
    with pytest.raises(CacheMismatchError):
        build_topk_cache(teacher, seqs[:5], tmp_path, **kw)
    rebuilt = build_topk_cache(teacher, seqs, tmp_path, **{**kw, "teacher_fingerprint": "teacher-B"}, overwrite=True)
    assert rebuilt["built_shards"] == [0, 1, 2]


def test_kd_on_cached_targets_is_aligned(tmp_path):
    """Student == teacher gives zero top-k KD only if cached targets sit at the right positions."""
    from nemo_minitron.train import SFTKDModule

    teacher = make_model(TINY_ARCH)
    seqs = _sequences(4, TINY_ARCH.vocab_size, seed=3)
    build_topk_cache(teacher, seqs, tmp_path, k=10, logits_dtype="float32", progress=False)
    batch = topk_collate([TopKDataset(tmp_path, seqs)[i] for i in range(4)], pad_id=0)
    assert batch["kd_mask"].sum().item() == sum(sum(s["loss_mask"][1:]) for s in seqs)
    same = SFTKDModule(make_model(TINY_ARCH), kd_weight=1.0, sft_weight=0.5)
    out = same._losses(batch)
    assert out["kd"].item() < 1e-5
    shifted = {**batch, **{k: torch.roll(batch[k], 1, dims=1) for k in ("topk_ids", "topk_logits", "topk_lse",
                                                                           "kd_mask")}}
    assert same._losses(shifted)["kd"].item() > 1e-3  # the same targets one position off do not match
    other = SFTKDModule(make_model(TINY_ARCH, seed=5, perturb_seed=9))
    assert other._losses(batch)["kd"].item() > 1e-3


# =========================================================================== chat format and masking
CONV = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "Reverse these words: cat sun door"},
    {"role": "assistant", "content": "door sun cat"},
]


def _spans(mask: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_assistant_only_mask_decodes_to_exactly_the_assistant_text(tok):
    ids, mask = tokenize_conversation(tok, CONV)
    assert len(ids) == len(mask) and ids[0] == tok.bos_token_id
    spans = _spans(mask)
    assistant = [m["content"] for m in CONV if m["role"] == "assistant"]
    assert len(spans) == len(assistant)
    for (lo, hi), text in zip(spans, assistant):
        assert ids[hi - 1] == tok.eos_token_id  # the EOS ending the turn is trained on
        assert tok.decode(ids[lo:hi - 1]) == text
        assert tok.decode(ids[lo:hi], skip_special_tokens=True) == text
    masked_text = [tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=True)]
    assert masked_text == ["5 door sun cat"]
    # every system/user token (and every header) has mask 0
    tc = tokenize_segments(tok, CONV)
    for msg, (lo, hi) in zip(CONV, tc.content_spans):
        if msg["role"] != "assistant":
            assert tok.decode(ids[lo:hi]) == msg["content"] and not any(mask[lo:hi])
    assert sum(mask) == sum(hi - lo for lo, hi in spans)


def test_template_text_tokenizer_copy_and_prompt_prefix(tok, tmp_path):
    shared = load_default_tokenizer()
    assert shared.chat_template is None and shared.padding_side == "left"  # the cached object is untouched
    assert tok.padding_side == "right"
    text = tok.apply_chat_template(CONV, tokenize=False)
    assert text == render_conversation(CONV)
    assert text.startswith("<s><|system|>\nYou are a helpful assistant.\n<|user|>\n")
    assert text.endswith("door sun cat</s>")
    gen = tok.apply_chat_template(CONV[:2], tokenize=False, add_generation_prompt=True)
    assert gen == render_conversation(CONV[:2], add_generation_prompt=True) and gen.endswith("<|assistant|>\n")
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True).chat_template == CHAT_TEMPLATE
    ids, _ = tokenize_conversation(tok, CONV)
    prompt = tokenize_prompt(tok, CONV[:4])
    assert ids[:len(prompt)] == prompt  # generation sees exactly what training saw


def test_truncation_and_right_padding(tok):
    ids, mask = tokenize_conversation(tok, CONV, max_len=12)
    assert len(ids) == 12 and len(mask) == 12
    ds = ChatDataset([CONV, CONV[:3]], tok, max_len=64)
    batch = chat_collate([ds[0], ds[1]], pad_id=tok.pad_token_id)
    short = len(ds[1]["input_ids"])
    assert batch["input_ids"].shape[1] == len(ds[0]["input_ids"])
    assert (batch["input_ids"][1, short:] == tok.pad_token_id).all()
    assert batch["attention_mask"][1].sum() == short and batch["loss_mask"][1, short:].sum() == 0
    assert batch["input_ids"][1, :short].tolist() == ds[1]["input_ids"]
    cut = ChatDataset([CONV[:3]], tok, max_len=64)
    with pytest.raises(ValueError, match="max_len"):
        ChatDataset([CONV], tok, max_len=5)
    assert cut.num_dropped == 0


@pytest.mark.parametrize("line,message", [
    ('{"messages": [{"role": "bot", "content": "hi"}]}', "role 'bot'"),
    ('{"messages": [{"role": "user"}]}', "has no 'content'"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant turn"),
    ('{"messages": "hello"}', "must be a list"),
    ('{"messages": []}', "is empty"),
    ('{"messages": [{"role": "assistant", "content": 3}]}', "must be a string"),
    ('{"text": "no messages"}', "no 'messages'"),
    ('{"messages": [', "invalid JSON"),
    ('[1, 2]', "expected a JSON object"),
])
def test_malformed_chat_jsonl_names_file_and_line(tmp_path, line, message):
    good = json.dumps({"messages": CONV})
    path = tmp_path / "chat.jsonl"
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(ValueError, match=message) as err:
        load_chat_jsonl(path)
    assert f"{path}:3:" in str(err.value)


def test_chat_and_preference_files_load(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": CONV, "id": 7}) + "\n")
    assert load_chat_jsonl(path) == [{"messages": CONV, "id": 7}]
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"prompt": "What is 1 + 1?", "chosen": "2", "rejected": "3", "reward_chosen": 1,
                                "reward_rejected": 0}) + "\n"
                    + json.dumps({"prompt": CONV[:2], "chosen": "5", "rejected": "6"}) + "\n"
                    + json.dumps({"prompt": CONV[:2], "chosen": "5", "rejected": "6", "reward_chosen": 1}) + "\n")
    with pytest.raises(ValueError, match=f"{pref}:3: give both"):
        load_preference_jsonl(pref)
    pref.write_text("\n".join(pref.read_text().splitlines()[:2]) + "\n")
    pairs = load_preference_jsonl(pref)
    assert pairs[0].prompt == [{"role": "user", "content": "What is 1 + 1?"}] and pairs[0].reward_chosen == 1.0
    assert pairs[1].prompt == CONV[:2] and pairs[1].reward_chosen is None


# =========================================================================== instruction tasks
def test_task_words_are_single_tokens():
    base = load_default_tokenizer()
    for w in KEYS + VALUES + WORDS:
        assert len(base(w, add_special_tokens=False)["input_ids"]) == 1, w


def test_generator_is_deterministic_per_seed_and_splits_are_disjoint():
    a, b, c = round_records(1, 30, seed=0), round_records(1, 30, seed=0), round_records(1, 30, seed=1)
    assert a == b and a != c
    assert {r["task"] for r in a} == set(ROUND_TASKS[1])
    assert {r["task"] for r in round_records(2, 9)} == set(ROUND_TASKS[2])
    evals = eval_sets(15, seed=0)
    assert set(evals) == set(TASKS) and all(len(v) == 15 for v in evals.values())
    assert evals == eval_sets(15, seed=0)
    train_prompts = {r["messages"][-2]["content"] for r in generate_tasks(TASKS, 600, seed=0)}
    for task, recs in evals.items():
        for r in recs:
            assert r["messages"][-2]["content"] not in train_prompts
            assert r["task"] == task and is_correct(task, r["answer"], r["answer"])
    # arithmetic: an evaluated problem is trained on only in the other wording
    train_arith = {r["messages"][-2]["content"] for r in generate_tasks(("arithmetic",), 400, seed=3)}
    for r in evals["arithmetic"]:
        assert r["messages"][-2]["content"] not in train_arith


def test_task_answers_are_what_the_prompt_asks():
    for r in generate_tasks(TASKS, 50, seed=5):
        q, ans = r["messages"][-2]["content"], r["answer"]
        if r["task"] == "copy":
            assert q.endswith(ans)
        elif r["task"] == "reverse":
            assert q.split(": ")[1].split() == ans.split()[::-1]
        elif r["task"] == "arithmetic":
            expr = q.replace("What is ", "").replace("Compute ", "").rstrip("?.")
            assert eval(expr) == int(ans)  # noqa: S307 - digits and +/- only
        elif r["task"] == "kv_recall":
            key = q.split("value of ")[1].rstrip("?")
            assert f"{key}={ans}" in q
        else:
            assert f" is {ans}." in q and "secret" in q


@pytest.mark.parametrize("task,prediction,answer,ok", [
    ("arithmetic", "9", "9", True), ("arithmetic", " 9.", "9", True), ("arithmetic", "09", "9", True),
    ("arithmetic", "19", "9", False), ("arithmetic", "9 apples", "9", False), ("arithmetic", "", "9", False),
    ("copy", "Cat  sun door", "cat sun door", True), ("copy", "cat, sun, door.", "cat sun door", True),
    ("copy", "cat door sun", "cat sun door", False), ("reverse", "door sun", "door sun cat", False),
    ("kv_recall", "blue", "blue", True), ("kv_recall", "blue red", "blue", False), ("fact", "42", "42", True),
    ("fact", "lake", "hill", False), ("long_kv_recall", "Gold", "gold", True), ("copy", None, "a", False),
])
def test_checker(task, prediction, answer, ok):
    assert is_correct(task, prediction, answer) is ok


def test_checker_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        is_correct("poetry", "x", "x")


# =========================================================================== long context
@pytest.mark.parametrize("min_len,max_len,distance", [(200, 300, 150), (600, 900, 500)])
def test_long_context_places_evidence_far_before_the_question(tok, min_len, max_len, distance):
    samples = build_long_dataset(tok, 4, min_len, max_len, seed=0, min_distance=distance)
    again = build_long_dataset(tok, 4, min_len, max_len, seed=0, min_distance=distance)
    assert again[0].messages == samples[0].messages
    for s in samples:
        assert min_len - 40 <= len(s.input_ids) <= s.target_len <= max_len
        assert s.question_span[0] - s.evidence_span[1] == s.distance >= distance
        evidence = tok.decode(s.input_ids[slice(*s.evidence_span)])
        assert f"{s.key}={s.answer}" in evidence and evidence.startswith("Remember:")
        assert tok.decode(s.input_ids[slice(*s.question_span)]) == f"What is the value of {s.key}?"
        assert tok.decode(s.input_ids[slice(*s.answer_span)]) == s.answer
        assert s.loss_mask[s.answer_span[0]] == 1 and not any(s.loss_mask[slice(*s.evidence_span)])
        # the key is asked about only at the end: no filler turn repeats the fact
        middle = tok.decode(s.input_ids[s.evidence_span[1]:s.question_span[0]])
        assert f"{s.key}={s.answer}" not in middle
        assert (s.input_ids, s.loss_mask) == tuple(tokenize_conversation(tok, s.messages))
    with pytest.raises(ValueError, match="too short"):
        build_long_dataset(tok, 1, 10, 12)


def test_long_range_eval_records(tok):
    recs = long_range_eval_set(tok, 3, 300, 400)
    assert all(r["task"] == "long_kv_recall" and r["distance"] >= 150 for r in recs)
    assert all(r["messages"][-1]["content"] == r["answer"] for r in recs)


# =========================================================================== generation
def test_batched_left_padded_generation_equals_one_by_one(tok):
    from nemo_minitron.posttrain.generate import generate_ids

    model = make_model(STAGE_ARCH, seed=0, perturb_seed=1)
    prompts = [tokenize_prompt(tok, r["messages"][:-1]) for r in generate_tasks(("copy", "arithmetic"), 4, seed=0)]
    assert len({len(p) for p in prompts}) > 1
    kw = dict(eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=5)
    batched = generate_ids(model, prompts, batch_size=4, **kw)
    single = [generate_ids(model, [p], batch_size=1, **kw)[0] for p in prompts]
    assert batched == single
    s1 = generate_ids(model, prompts, temperature=1.0, seed=3, **kw)
    assert s1 == generate_ids(model, prompts, temperature=1.0, seed=3, **kw)


def test_answer_nll_scores_only_the_final_answer_and_its_eos(tok):
    from nemo_minitron.posttrain.generate import answer_nll

    model = make_model(STAGE_ARCH, seed=0, perturb_seed=1)
    rec = {"messages": CONV, "answer": "door sun cat", "task": "reverse"}
    ids, _ = tokenize_conversation(tok, CONV)
    lo, hi = tokenize_segments(tok, CONV).content_spans[-1]
    assert hi == len(ids) - 1 and ids[hi] == tok.eos_token_id
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float(), -1)
    hand = -sum(lp[t - 1, ids[t]].item() for t in range(lo, hi + 1)) / (hi + 1 - lo)
    assert answer_nll(model, tok, [rec, rec], batch_size=2) == pytest.approx(hand, rel=1e-5)


def test_preference_pairs_from_scored_samples():
    from nemo_minitron.posttrain.pairs import make_preference_pairs

    recs = generate_tasks(("arithmetic",), 3, seed=0)
    right = [r["answer"] for r in recs]
    samples = [[right[0], "x", right[0]], [right[1]] * 3, ["x", "y", "z"]]
    pairs, stats = make_preference_pairs(recs, samples)
    assert len(pairs) == 1 and pairs[0].chosen == right[0] and pairs[0].rejected == "x"
    assert pairs[0].prompt == recs[0]["messages"][:-1] and (pairs[0].reward_chosen, pairs[0].reward_rejected) == (1, 0)
    assert stats["prompts_all_correct"] == 1 and stats["prompts_all_wrong"] == 1
    assert stats["sample_accuracy"] == pytest.approx(5 / 9)
    # gold_chosen: the all-wrong prompt gets the reference answer as chosen; all-right still has no contrast.
    pairs, stats = make_preference_pairs(recs, samples, gold_chosen=True)
    assert len(pairs) == 2 and pairs[1].chosen == right[2] and pairs[1].rejected in {"x", "y", "z"}
    assert stats["prompts_all_wrong"] == 1 and stats["pairs"] == 2


# =========================================================================== end-to-end stages
TRAIN = dict(max_steps=3, micro_batch_size=2, global_batch_size=2, progress=False, seed=0)
WARMUP = 1


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    return save_teacher_and_student(tmp_path_factory.mktemp("posttrain"))


def _reloads(path: Path, summary_file: str) -> dict:
    from nemo_minitron.models import load_model, load_tokenizer

    model = load_model(path)
    assert model.config.hidden_size == STAGE_ARCH.hidden_size
    assert load_tokenizer(path).chat_template == CHAT_TEMPLATE
    return json.loads((path / summary_file).read_text())


def test_instruct_teacher_then_sft_kd_end_to_end_and_resume(ckpts):
    from safetensors.torch import load_file

    from nemo_minitron.stages.instruct_sft import InstructSFTOptim, InstructSFTTrain, instruct_sft
    from nemo_minitron.stages.sft_kd import SFTKDOptim, SFTKDTrain, sft_kd

    root = ckpts["root"]
    instruct_sft(str(ckpts["teacher"]), str(root / "instruct"), num_train=8,
                 train=InstructSFTTrain(seq_length=96, **TRAIN), optim=InstructSFTOptim(warmup_steps=WARMUP))
    assert _reloads(root / "instruct", "sft_summary.json")["steps"] == 3
    assert not (root / "instruct.work").exists()  # a finished stage removes its work folder
    # keep_work: the rerun below reuses the top-k cache and the Lightning checkpoint of the work folder
    kw = dict(num_train=6, topk=16, train=SFTKDTrain(seq_length=96, keep_work=True, **TRAIN),
              optim=SFTKDOptim(warmup_steps=WARMUP))
    summary = sft_kd(str(root / "instruct"), str(ckpts["student"]), str(root / "kd1"), round=1, sft_weight=0.5, **kw)
    saved = _reloads(root / "kd1", "sft_kd_summary.json")
    assert saved["steps"] == 3 and saved["finished"] and saved["topk_cache"]["k"] == 16
    assert summary["topk_cache"]["built_shards"] == [0] and math.isfinite(summary["loss_last"])
    assert not torch.equal(load_file(str(root / "kd1" / "model.safetensors"))["lm_head.weight"],
                           load_file(str(ckpts["student"] / "model.safetensors"))["lm_head.weight"])
    # a rerun into the same work dir reuses the cache and the finished Lightning checkpoint
    again = sft_kd(str(root / "instruct"), str(ckpts["student"]), str(root / "kd1"), round=1, sft_weight=0.5, **kw)
    assert again["topk_cache"]["skipped_shards"] == [0] and again["topk_cache"]["built_shards"] == []
    assert again["resumed_from"] is not None and again["resumed_from_step"] == 3


def test_post_training_stages_refuse_old_argument_names(ckpts, tmp_path):
    from nemo_minitron.stages.long_context import long_context
    from nemo_minitron.stages.renames import RenamedArgumentError
    from nemo_minitron.stages.rpo import rpo
    from nemo_minitron.stages.sft_kd import sft_kd

    with pytest.raises(RenamedArgumentError, match="'lr' was renamed to 'optim.lr'"):
        rpo(str(ckpts["student"]), str(tmp_path / "r"), lr=1e-3)
    with pytest.raises(RenamedArgumentError, match="'seq_length' was renamed to 'train.seq_length'"):
        sft_kd(str(ckpts["teacher"]), str(ckpts["student"]), str(tmp_path / "s"), seq_length=96)
    with pytest.raises(RenamedArgumentError, match="'max_steps' was renamed to 'train.max_steps'"):
        long_context(str(ckpts["student"]), str(tmp_path / "l"), min_len=10, max_len=20, max_steps=2)
    assert not any(tmp_path.iterdir())


def test_rpo_end_to_end_from_a_preference_file(ckpts, tmp_path):
    from nemo_minitron.stages.rpo import RPOOptim, RPOTrain, rpo

    recs = generate_tasks(("arithmetic", "copy"), 4, seed=0)
    pref = tmp_path / "pairs.jsonl"
    pref.write_text("".join(json.dumps({"prompt": r["messages"][:-1], "chosen": r["answer"], "rejected": "wrong",
                                        "reward_chosen": 1.0, "reward_rejected": 0.0}) + "\n" for r in recs))
    summary = rpo(str(ckpts["student"]), str(tmp_path / "rpo"), data_path=str(pref), loss_type="rpo_sq",
                  sft_weight=0.1, train=RPOTrain(seq_length=128, **TRAIN), optim=RPOOptim(lr=1e-3, warmup_steps=WARMUP))
    saved = _reloads(tmp_path / "rpo", "rpo_summary.json")
    assert saved["steps"] == 3 and summary["pairs"]["pairs"] == 4
    assert "train/reward_accuracy" in summary["metrics"] or "loss" in summary["metrics"]
    with pytest.raises(ValueError, match="pairs"):
        rpo(str(ckpts["student"]), str(tmp_path / "none"), num_prompts=2, num_samples=2, max_new_tokens=2,
            train=RPOTrain(work_dir=str(tmp_path / "none.work"), **TRAIN),
            optim=RPOOptim(warmup_steps=WARMUP))  # a random model is never right: no contrast


def test_long_context_end_to_end(ckpts, tmp_path):
    from nemo_minitron.stages.long_context import LongContextOptim, LongContextTrain, long_context

    summary = long_context(str(ckpts["student"]), str(tmp_path / "lc"), min_len=160, max_len=220, num_train=4,
                           train=LongContextTrain(**{**TRAIN, "max_steps": 2, "micro_batch_size": 1}),
                           optim=LongContextOptim(warmup_steps=WARMUP))
    saved = _reloads(tmp_path / "lc", "long_context_summary.json")
    assert saved["steps"] == 2 and 140 <= summary["length_range"][0] <= summary["length_range"][1] <= 220
    assert summary["mean_evidence_distance"] >= 80
