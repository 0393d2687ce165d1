"""The offline English corpora: the small default one (gensim's test data) and the teacher's.

The default corpus is real text that ships inside the ``gensim`` wheel; the teacher corpus
(:func:`load_teacher_corpus`) adds the sources of ``nemo_minitron.data.sources``, deduplicated
and kept clear of benchmark text. Both split documents the same way (:func:`in_validation`), so
the default corpus's held-out documents are held out of the teacher corpus too.

Calibration (importance scores), distillation smoke runs and tests need natural English that
is available offline and identical on every machine. gensim's test data holds a 206-page
English Wikipedia dump sample and the Lee news corpus (300 Australian news articles);
together ~0.7M tokens of prose, enough to calibrate pruning and to distill tiny models.

Measured with the default 32000-token tokenizer (gensim 4.4.0, no BOS/EOS counted):
    Wikipedia: 96 articles kept of 206 pages (99 redirects, 1 empty, 10 disambiguation or
               list pages too short after cleaning), 627k tokens, ~6.5k tokens per article
    Lee news:  300 articles, 81k tokens, ~270 tokens per article
    validation_fraction=0.05 -> train 374 docs / 700,831 tokens (2,739 rows of 256),
                                validation 22 docs / 7,305 tokens (28 rows of 256)
The validation split is small in tokens: only 2 of its 22 documents are (long) Wikipedia
articles. Raise ``validation_fraction`` when a tighter perplexity estimate is needed.
"""

from __future__ import annotations

import bz2
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WIKI_SAMPLE_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_NEWS_FILE = "lee_background.cor"

# Articles shorter than this after cleaning are stubs or lists, not prose worth modelling.
MIN_ARTICLE_CHARS = 500
# Paragraphs shorter than this are leftovers of captions, table cells or infobox fields.
MIN_PARAGRAPH_CHARS = 40

# Sections after which a Wikipedia article holds only citations and link lists.
_BACK_MATTER = {
    "see also", "references", "notes", "footnotes", "citations", "sources", "bibliography",
    "further reading", "external links", "notes and references", "references and notes",
    "works cited", "selected bibliography", "primary sources", "secondary sources",
}
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_LIST_OR_TABLE_LINE = re.compile(r"^\s*[*#:;|!{}]")
_BOLD_ITALIC = re.compile(r"'{2,}")
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]?\s*\)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")
_OPEN_PAREN_JUNK = re.compile(r"\(\s*[,;:]\s*")
_MULTISPACE = re.compile(r"[ \t\u00a0]{2,}")
_REDIRECT = re.compile(r"^\s*#redirect", re.IGNORECASE)


@dataclass(frozen=True)
class CorpusSplits:
    """Train/validation documents; each document is one string."""

    train: list[str]
    validation: list[str]


def gensim_test_data_dir() -> Path:
    """Folder of gensim's bundled test data (the corpus source)."""
    from gensim.test.utils import module_path  # lazy: gensim is slow to import

    return Path(module_path) / "test_data"


def _strip_tables(text: str) -> str:
    """Drop ``{| ... |}`` tables (nestable, line-based): their cells are not prose."""
    out, depth = [], 0
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("{|"):
            depth += 1
            continue
        if depth and stripped.startswith("|}"):
            depth -= 1
            continue
        if depth == 0:
            out.append(line)
    return "\n".join(out)


def _tidy(paragraph: str) -> str:
    """Fix the punctuation debris left where templates (dates, IPA, citations) were removed."""
    paragraph = _BOLD_ITALIC.sub("", paragraph)
    paragraph = _MULTISPACE.sub(" ", paragraph)
    paragraph = _EMPTY_PARENS.sub("", paragraph)
    paragraph = _OPEN_PAREN_JUNK.sub("(", paragraph)
    paragraph = _SPACE_BEFORE_PUNCT.sub(r"\1", paragraph)
    paragraph = _MULTISPACE.sub(" ", paragraph)
    return paragraph.strip()


def clean_wikitext(raw: str) -> str:
    """Turn one article's wikitext into plain prose paragraphs separated by blank lines.

    Templates, refs, tags, tables, files' markup and categories go (gensim's
    ``filter_wiki`` does the recursive part); ``[[a|b]]`` becomes ``b``; headings, list and
    table lines, short fragments and everything from "See also"/"References" on are dropped.
    """
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(_strip_tables(raw))
    paragraphs: list[str] = []
    in_back_matter = False
    for line in text.split("\n"):
        heading = _HEADING.match(line.strip())
        if heading:
            in_back_matter = in_back_matter or heading.group(2).strip().lower() in _BACK_MATTER
            continue
        if in_back_matter or _LIST_OR_TABLE_LINE.match(line):
            continue
        paragraph = _tidy(line)
        if len(paragraph) >= MIN_PARAGRAPH_CHARS:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def load_wikipedia_articles(path: Path | None = None) -> list[str]:
    """Cleaned main-namespace articles of the bundled Wikipedia sample, in dump order."""
    from gensim.corpora.wikicorpus import extract_pages

    path = path or gensim_test_data_dir() / WIKI_SAMPLE_FILE
    articles = []
    with bz2.open(path, "rb") as handle:
        for _title, raw, _page_id in extract_pages(handle, filter_namespaces=("0",)):
            if not raw or _REDIRECT.match(raw):
                continue
            article = clean_wikitext(raw)
            if len(article) >= MIN_ARTICLE_CHARS:
                articles.append(article)
    return articles


def load_lee_news(path: Path | None = None) -> list[str]:
    """The Lee background corpus: ABC news articles, one per line."""
    path = path or gensim_test_data_dir() / LEE_NEWS_FILE
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def in_validation(doc: str, validation_fraction: float) -> bool:
    """Stable split: a document's side depends only on its own bytes (sha256), never on
    ``PYTHONHASHSEED``, order or machine."""
    digest = hashlib.sha256(doc.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < validation_fraction


@lru_cache(maxsize=1)
def _default_documents() -> tuple[str, ...]:
    """All default-corpus documents (parsing the dump takes ~1 s, so do it once)."""
    return tuple(load_wikipedia_articles() + load_lee_news())


def load_default_corpus(validation_fraction: float = 0.05) -> CorpusSplits:
    """Wikipedia sample + Lee news, split deterministically by a hash of each document."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    train: list[str] = []
    validation: list[str] = []
    for doc in _default_documents():
        (validation if in_validation(doc, validation_fraction) else train).append(doc)
    return CorpusSplits(train=train, validation=validation)
