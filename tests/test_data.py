"""Tests for nemo_minitron.data: offline tokenizer, default corpus, packing, file loading."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # everything here must work without the Hub

import json
from pathlib import Path

import pytest
import torch

from nemo_minitron.data import (
    DEFAULT_TOKENIZER_VOCAB,
    CorpusSplits,
    cache_dir,
    cached_packed_corpus,
    clean_wikitext,
    iter_jsonl,
    load_default_corpus,
    load_default_tokenizer,
    load_text_file,
    load_text_files,
    pack_token_ids,
    tokenize_and_pack,
)
from nemo_minitron.data import corpus as corpus_module

from conftest import private_cache


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    with private_cache(tmp_path_factory, "nemo_minitron_cache"):
        yield


@pytest.fixture(scope="module")
def tokenizer():
    return load_default_tokenizer()


@pytest.fixture(scope="module")
def splits() -> CorpusSplits:
    return load_default_corpus()


# --------------------------------------------------------------------------- cache


def test_cache_dir_honours_env_and_creates(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    monkeypatch.setenv("NEMO_MINITRON_CACHE", str(target))
    assert cache_dir() == target
    assert target.is_dir()


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_vocab_and_special_tokens(tokenizer):
    assert DEFAULT_TOKENIZER_VOCAB == 32000
    assert len(tokenizer) == 32000
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (1, 2, 0)
    # pad reuses <unk> so that masking padding never masks the EOS separators
    assert tokenizer.pad_token_id == tokenizer.unk_token_id
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_tokenizer_round_trip_and_bos(tokenizer):
    sentence = "The quick brown fox jumps over the lazy dog, doesn't it?"
    ids = tokenizer(sentence)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id not in ids
    assert len(ids) > 5 and max(ids) < 32000
    assert tokenizer.decode(ids, skip_special_tokens=True) == sentence
    plain = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert plain == ids[1:]


def test_tokenizer_is_cached_and_saveable(tokenizer, tmp_path):
    import transformers

    assert load_default_tokenizer() is tokenizer
    tokenizer.save_pretrained(tmp_path)
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == 32000
    text = "Pruning Mamba heads, group by group."
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.pad_token_id == tokenizer.pad_token_id


# --------------------------------------------------------------------------- corpus


def test_clean_wikitext_strips_markup():
    raw = (
        "{{Infobox thing\n| name = X\n}}\n"
        "'''Foo''' is a [[bar (thing)|bar]] used in [[baz]]s.<ref>{{cite web|url=x}}</ref> "
        "It was made in 1900 {{circa}} by people.\n"
        "== History ==\n"
        "{| class=\"wikitable\"\n|-\n| cell one || cell two with many many words here\n|}\n"
        "* a list item that is long enough to otherwise count as prose text\n"
        "Foo became popular in the <b>twentieth</b> century across the whole world.\n"
        "== References ==\n"
        "Some reference prose that is long enough to be kept if it were prose.\n"
        "[[Category:Things]]\n"
    )
    text = clean_wikitext(raw)
    assert text == (
        "Foo is a bar used in bazs. It was made in 1900 by people.\n\n"
        "Foo became popular in the twentieth century across the whole world."
    )


def test_corpus_split_deterministic_disjoint_nontrivial(splits):
    train, validation = splits.train, splits.validation
    assert len(train) >= 300 and len(validation) >= 5
    assert not set(train) & set(validation)
    assert all(isinstance(d, str) and d.strip() for d in train + validation)
    total = len(train) + len(validation)
    assert 0.01 < len(validation) / total < 0.15

    # recompute from scratch (no in-process cache): identical split
    corpus_module._default_documents.cache_clear()
    again = load_default_corpus()
    assert again == splits
    # membership depends on the document alone (sha256), not on order or process
    assert all(corpus_module.in_validation(d, 0.05) for d in validation)
    assert not any(corpus_module.in_validation(d, 0.05) for d in train[:50])
    # a larger fraction only moves documents into validation
    bigger = load_default_corpus(0.2)
    assert set(validation) <= set(bigger.validation)

    for doc in train + validation:
        for markup in ("{{", "}}", "[[", "]]", "<ref", "'''", "==", "#REDIRECT"):
            assert markup not in doc, (markup, doc[:200])


def test_corpus_has_real_english_tokens(splits, tokenizer):
    sample = splits.train[:20]
    n_tokens = sum(len(ids) for ids in tokenizer(sample, add_special_tokens=False)["input_ids"])
    assert n_tokens > 10_000
    assert " the " in " ".join(sample)


def test_corpus_rejects_bad_fraction():
    with pytest.raises(ValueError, match="validation_fraction"):
        load_default_corpus(1.0)


# --------------------------------------------------------------------------- packing


DOCS = [[1, 2, 3], [4, 5], [6]]  # stream with EOS=0: 1 2 3 0 4 5 0 6 0


def test_pack_exact_rows_drop_last():
    out = pack_token_ids(DOCS, seq_len=4, eos_id=0)
    assert out.dtype == torch.long
    assert out.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]


def test_pack_exact_rows_keep_last():
    out = pack_token_ids(DOCS, seq_len=4, eos_id=0, drop_last=False)
    assert out.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [0, 0, 0, 0]]
    out = pack_token_ids(DOCS, seq_len=4, eos_id=0, drop_last=False, pad_id=-1)
    assert out.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [0, -1, -1, -1]]


def test_pack_exact_fit_and_edge_cases():
    # 9 tokens fit 3 rows of 3 exactly: drop_last makes no difference
    assert pack_token_ids(DOCS, 3, 0).tolist() == [[1, 2, 3], [0, 4, 5], [0, 6, 0]]
    assert pack_token_ids(DOCS, 3, 0, drop_last=False).tolist() == [[1, 2, 3], [0, 4, 5], [0, 6, 0]]
    assert pack_token_ids([[1], [], [2]], 2, 9).tolist() == [[1, 9], [2, 9]]  # empty doc skipped
    assert pack_token_ids([[1]], 3, 0).shape == (0, 3)
    assert pack_token_ids([torch.tensor([1, 2]), (3,)], 2, 0).tolist() == [[1, 2], [0, 3]]


@pytest.mark.parametrize("bad", [1, 0, -4, 2.5, True])
def test_pack_bad_seq_len(bad):
    with pytest.raises(ValueError, match="seq_len"):
        pack_token_ids(DOCS, seq_len=bad, eos_id=0)


def test_tokenize_and_pack(tokenizer):
    texts = ["Hello world.", "A second document here."]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    stream = ids[0] + [2] + ids[1] + [2]
    out = tokenize_and_pack(texts, tokenizer, seq_len=len(stream) + 3, drop_last=False)
    assert out.tolist() == [stream + [tokenizer.pad_token_id] * 3]
    with_bos = tokenize_and_pack(texts, tokenizer, seq_len=2, add_bos=True, batch_size=1)
    assert with_bos.flatten().tolist()[: len(ids[0]) + 2] == [1] + ids[0] + [2]
    with pytest.raises(ValueError, match="seq_len"):
        tokenize_and_pack(texts, tokenizer, seq_len=1)


def test_cached_packed_corpus(monkeypatch, tokenizer):
    small = CorpusSplits(train=["One small document.", "Another one, a bit longer."] * 5,
                         validation=["Held out text."])
    monkeypatch.setattr(corpus_module, "load_default_corpus", lambda fraction=0.05: small)
    first = cached_packed_corpus("train", seq_len=8)
    files = list((cache_dir() / "packed").glob("default-train-L8-*.safetensors"))
    assert len(files) == 1
    assert not list((cache_dir() / "packed").glob(".*"))  # no temp file left behind
    assert torch.equal(first, tokenize_and_pack(small.train, tokenizer, 8))
    assert torch.equal(cached_packed_corpus("train", seq_len=8), first)  # served from disk
    # different content -> different fingerprint -> new file
    small.train.append("A new document changes the fingerprint.")
    cached_packed_corpus("train", seq_len=8)
    assert len(list((cache_dir() / "packed").glob("default-train-L8-*.safetensors"))) == 2
    with pytest.raises(ValueError, match="split"):
        cached_packed_corpus("test", seq_len=8)
    with pytest.raises(ValueError, match="seq_len"):
        cached_packed_corpus("train", seq_len=1)


# --------------------------------------------------------------------------- files


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_load_txt(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("first line\n\nsecond line\n", encoding="utf-8")
    assert load_text_file(path) == ["first line", "second line"]
    assert load_text_file(path, sample_by="document") == ["first line\n\nsecond line\n"]


def test_load_jsonl_and_json(tmp_path):
    path = _write_jsonl(tmp_path / "docs.jsonl", [{"text": "a b", "id": 1}, {"text": "c"}])
    assert load_text_file(path) == ["a b", "c"]
    other = _write_jsonl(tmp_path / "other.jsonl", [{"body": "x"}, {"body": "y"}])
    assert load_text_file(other, text_field="body") == ["x", "y"]
    array = tmp_path / "docs.json"
    array.write_text(json.dumps([{"text": "p"}, {"text": "q"}]), encoding="utf-8")
    assert load_text_files([path, array]) == ["a b", "c", "p", "q"]


def test_load_jsonl_blank_lines_and_type_drift(tmp_path):
    # datasets alone fails on this valid file ("Expected object or value")
    path = tmp_path / "drift.jsonl"
    path.write_text('{"text": "a", "x": 1}\n\n{"text": "b", "x": "s"}\n', encoding="utf-8")
    assert load_text_file(path) == ["a", "b"]
    assert [n for n, _ in iter_jsonl(path)] == [1, 3]


def test_load_parquet(tmp_path):
    import datasets

    path = tmp_path / "docs.parquet"
    datasets.Dataset.from_dict({"text": ["alpha", "beta"], "n": [1, 2]}).to_parquet(str(path))
    assert load_text_file(path) == ["alpha", "beta"]
    with pytest.raises(ValueError, match=r"docs\.parquet.*'body'"):
        load_text_file(path, text_field="body")


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "broken"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        load_text_file(path)
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: invalid JSON"):
        list(iter_jsonl(path))


def test_non_object_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "ok"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"list\.jsonl:2: expected a JSON object, got list"):
        load_text_file(path)


def test_missing_field_names_file_line_field(tmp_path):
    path = _write_jsonl(tmp_path / "nofield.jsonl", [{"text": "ok"}, {"content": "x"}])
    with pytest.raises(ValueError, match=r"nofield\.jsonl:2: record has no field 'text'"):
        load_text_file(path)
    typed = _write_jsonl(tmp_path / "typed.jsonl", [{"text": 5}])
    with pytest.raises(ValueError, match=r"typed\.jsonl:1: field 'text' must be a string"):
        load_text_file(typed)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.txt", "empty.json"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("\n\n" if name.endswith("l") else "", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name}.*empty"):
        load_text_file(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_text_file(path)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        list(iter_jsonl(path))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\.txt.*\.jsonl.*\.json.*\.parquet"):
        load_text_file(path)
