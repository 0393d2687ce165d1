"""Data for calibration, distillation and evaluation: tokenizer, corpora, packing, files.

Everything here works offline (``HF_HUB_OFFLINE=1``): the default tokenizer and corpus are
read from files shipped inside installed wheels (``mistral_common``, ``gensim``).
"""

from nemo_minitron.data.cache import CACHE_ENV_VAR, cache_dir
from nemo_minitron.data.corpus import (
    CorpusSplits,
    clean_wikitext,
    load_default_corpus,
    load_lee_news,
    load_wikipedia_articles,
)
from nemo_minitron.data.files import (
    SUPPORTED_EXTENSIONS,
    iter_jsonl,
    load_text_file,
    load_text_files,
)
from nemo_minitron.data.packing import cached_packed_corpus, pack_token_ids, tokenize_and_pack
from nemo_minitron.data.tokenizer import DEFAULT_TOKENIZER_VOCAB, load_default_tokenizer

__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_TOKENIZER_VOCAB",
    "SUPPORTED_EXTENSIONS",
    "CorpusSplits",
    "cache_dir",
    "cached_packed_corpus",
    "clean_wikitext",
    "iter_jsonl",
    "load_default_corpus",
    "load_default_tokenizer",
    "load_lee_news",
    "load_text_file",
    "load_text_files",
    "load_wikipedia_articles",
    "pack_token_ids",
    "tokenize_and_pack",
]
