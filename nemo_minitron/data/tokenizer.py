"""The tokenizers: the default 32000-token SentencePiece model, and the teacher's own 8192-token BPE.

Tests, the demo and tiny recipes need a realistic tokenizer without touching the Hugging Face
Hub. ``mistral_common`` ships the Mistral-7B v1 SentencePiece model inside its wheel, so we
wrap it as a ``transformers`` tokenizer (which the rest of the stack, lm-eval included,
expects).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import transformers

from nemo_minitron.atomic import atomic_file
from nemo_minitron.data.cache import cache_dir

DEFAULT_TOKENIZER_VOCAB = 32000

_SOURCE_PACKAGE_PATH = ("data", "tokenizer.model.v1")


def _source_model_file() -> Path:
    """Locate the SentencePiece model inside the installed ``mistral_common`` package."""
    import mistral_common  # imported lazily: only this function needs it

    path = Path(mistral_common.__file__).parent.joinpath(*_SOURCE_PACKAGE_PATH)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; the installed mistral-common no longer ships tokenizer.model.v1"
        )
    return path


def _materialize_folder(source: Path) -> Path:
    """Copy ``source`` as ``tokenizer.model`` into a cache folder keyed by its content.

    ``LlamaTokenizer.from_pretrained`` wants a folder with that exact file name;
    ``LlamaTokenizer(vocab_file=...)`` is silently ignored in transformers 5 (3-token result).
    The content hash in the folder name means a changed wheel never reuses a stale copy.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    folder = cache_dir() / "tokenizers" / f"mistral-v1-{digest}"
    target = folder / "tokenizer.model"
    if not target.is_file():
        with atomic_file(target) as tmp:  # concurrent processes never see a partial file
            shutil.copyfile(source, tmp)
    return folder


@functools.lru_cache(maxsize=1)
def load_default_tokenizer() -> transformers.PreTrainedTokenizerBase:
    """Load the offline 32000-token SentencePiece tokenizer (Mistral v1 vocabulary).

    Behaviour callers can rely on:
    - ``bos`` = ``<s>`` (1), ``eos`` = ``</s>`` (2), ``unk`` = ``<unk>`` (0).
    - Encoding prepends BOS (``add_bos_token=True``, no EOS): the model was trained that way
      and it gives every sequence a fixed first position. Use ``add_special_tokens=False``
      where documents are concatenated (packing adds EOS separators itself).
    - ``pad`` = ``<unk>``, not ``</s>``: code that masks padding by ``pad_token_id`` (HF data
      collators set such labels to -100) would otherwise also mask the real EOS separators
      and the model would never learn to end documents. The model has byte fallback, so
      ``<unk>`` never occurs in encoded text and is safe to reuse as padding.

    The instance is cached per process: do not mutate it (add tokens, change padding side)
    in place; ``copy.deepcopy`` it first. ``save_pretrained`` on it is fine.
    """
    folder = _materialize_folder(_source_model_file())
    tokenizer = transformers.LlamaTokenizer.from_pretrained(
        str(folder), add_bos_token=True, add_eos_token=False, local_files_only=True
    )
    if len(tokenizer) != DEFAULT_TOKENIZER_VOCAB:
        # transformers 5 without sentencepiece/protobuf mis-parses the model file as tiktoken.
        raise RuntimeError(
            f"default tokenizer has {len(tokenizer)} tokens, expected {DEFAULT_TOKENIZER_VOCAB}; "
            "are `sentencepiece` and `protobuf` installed?"
        )
    for name in ("bos_token", "eos_token", "unk_token"):
        if getattr(tokenizer, name) is None:
            raise RuntimeError(f"default tokenizer has no {name}")
    tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


# --------------------------------------------------------------------------- the teacher's own BPE
#: Where the teacher's tokenizer ships (inside the package, so a wheel installs it).
TEACHER_TOKENIZER_DIR = Path(__file__).parent / "english-bpe-8k"
TEACHER_VOCAB = 8192
BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = TEACHER_VOCAB,
                        show_progress: bool = True) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE (``tokenizers``) trained on ``texts``, as an HF fast tokenizer.

    Byte-level: every string encodes (no unknown token) and decodes back exactly. Digits are split
    one by one (as Llama and Nemotron-H do) so numbers do not become arbitrary multi-digit tokens.
    Encoding with special tokens prepends ``<s>`` (as the default tokenizer does); ``</s>``
    separates packed documents; ``<pad>`` pads and never occurs in text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # Ids 0, 1, 2 = pad, bos, eos: the special-token ids NemotronH configs default to.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                                model_max_length=1_000_000, clean_up_tokenization_spaces=False)


def load_teacher_tokenizer(path: str | Path = TEACHER_TOKENIZER_DIR) -> transformers.PreTrainedTokenizerBase:
    """The teacher's 8192-token BPE (shipped in the package; ``scripts/train_teacher.py`` made it)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer in {path}; build it with `python scripts/train_teacher.py "
                                "--tokenizer-only`")
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
