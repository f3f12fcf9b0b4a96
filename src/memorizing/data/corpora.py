"""Named corpora. Every corpus is a list of documents (bytes); tokens are bytes (vocabulary 256).

Specs: `python-stdlib` (the running Python's standard library, one document per source file), `text:PATH` (a
file, a folder searched recursively, or a glob; each file one document), `recall` (synthetic long-range recall
documents), and the public long-document sets `pg19`, `enwik8` and `arxiv`, fetched once into a cache folder
($MEMORIZING_DATA, default ~/.cache/memorizing) and read from there afterwards.
"""

import glob
import hashlib
import io
import os
import random
import sysconfig
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from memorizing.config import DataConfig
from memorizing.errors import UserError

SPLITS = ("train", "valid", "test")
VALID_SHARE, TEST_SHARE = 0.05, 0.05
# Below this many documents a split by document would often leave valid or test empty (six novels, one long
# file): every document is split by position instead, its last 5% for test and the 5% before for valid. So is a
# larger corpus whose hash split happens to leave valid or test empty.
FEW_DOCUMENTS = 40


class CorpusError(UserError):
    """A corpus that cannot be read or is unfit for training."""


@dataclass(frozen=True)
class Span:
    """Bytes start .. end - 1 of a document whose prediction needs long-range memory; the same bytes occurred
    earlier at each of `sources` (their first byte), which is what memory should retrieve."""
    start: int
    end: int
    sources: tuple[int, ...] = ()


@dataclass(frozen=True)
class Document:
    name: str
    data: bytes
    spans: tuple[Span, ...] = field(default=())  # marked by the `recall` corpus

    def head(self, length: int) -> "Document":
        """The first `length` bytes, with the spans that lie inside them."""
        if length >= len(self.data):
            return self
        return Document(self.name, self.data[:length], tuple(s for s in self.spans if s.end <= length))

    def piece(self, start: int, end: int, name: str) -> "Document":
        """Bytes start .. end - 1 as a document, with the spans inside them whose sources are inside them too (a
        span whose earlier occurrence was cut off cannot be recalled from this piece)."""
        spans = []
        for s in self.spans:
            sources = tuple(p - start for p in s.sources if p >= start)
            if s.start >= start and s.end <= end and (sources or not s.sources):
                spans.append(Span(s.start - start, s.end - start, sources))
        return Document(name, self.data[start:end], tuple(spans))


def load_corpus(config: DataConfig) -> list[Document]:
    """All documents of the corpus `config.corpus`, without those shorter than `config.min_document`."""
    spec = config.corpus
    if spec == "python-stdlib":
        documents = python_stdlib()
    elif spec.startswith("text:"):
        documents = text_files(spec[len("text:"):])
    elif spec == "recall":
        documents = recall_documents(config)
    elif spec in PUBLIC:
        documents = PUBLIC[spec]()
    else:
        raise CorpusError(f"--corpus {spec!r} is unknown: use python-stdlib, text:PATH, recall, "
                          f"{', '.join(PUBLIC)}.")
    if not documents:
        raise CorpusError(f"corpus {spec!r} holds no documents: point it at files with content.")
    kept = [d for d in documents if len(d.data) >= max(config.min_document, 2)]
    if not kept:
        raise CorpusError(f"corpus {spec!r}: all {len(documents)} documents are shorter than data.min_document = "
                          f"{config.min_document} bytes: lower data.min_document or add longer documents.")
    return kept


def split_of(document: Document) -> str:
    """The split a document belongs to, from a hash of its content: stable across machines and runs."""
    h = int.from_bytes(hashlib.sha1(document.data).digest()[:8], "big") / 2 ** 64
    return "test" if h < TEST_SHARE else "valid" if h < TEST_SHARE + VALID_SHARE else "train"


def split_documents(documents: list[Document], split: str, corpus: str = "corpus") -> list[Document]:
    """The documents of `split`: whole documents by content hash, or, for a corpus of fewer than FEW_DOCUMENTS,
    a piece of every document by position (train the first 90%, valid the next 5%, test the last 5%)."""
    if split not in SPLITS:
        raise CorpusError(f"--split {split!r} is unknown: use one of {', '.join(SPLITS)}.")
    if splits_by_position(documents):
        return split_by_position(documents, split)
    chosen = [d for d in documents if split_of(d) == split]
    if not chosen:
        raise CorpusError(f"{corpus}: none of its {len(documents)} documents falls in the {split!r} split (about "
                          f"{TEST_SHARE:.0%} go to test and to valid, by content hash): add more documents.")
    return chosen


def splits_by_position(documents: list[Document]) -> bool:
    """Whether the corpus is split by position (see FEW_DOCUMENTS), the same answer for every split."""
    if len(documents) < FEW_DOCUMENTS:
        return True
    held = {split_of(d) for d in documents}
    return not {"valid", "test"} <= held


def split_by_position(documents: list[Document], split: str) -> list[Document]:
    pieces = []
    for d in documents:
        valid = int(len(d.data) * (1 - VALID_SHARE - TEST_SHARE))
        test = int(len(d.data) * (1 - TEST_SHARE))
        start, end = {"train": (0, valid), "valid": (valid, test), "test": (test, len(d.data))}[split]
        if end - start >= 2:
            pieces.append(d.piece(start, end, f"{d.name}[{split}]"))
    if not pieces:
        raise CorpusError(f"the corpus's {len(documents)} documents are too short to hold out a {split!r} piece "
                          f"(the last {TEST_SHARE:.0%} of each): use longer documents.")
    return pieces


# ---- local corpora ---------------------------------------------------------------------------------------
def python_stdlib() -> list[Document]:
    """The running Python's standard-library sources (third-party site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    return [Document(str(p.relative_to(root)), p.read_bytes()) for p in files if p.is_file()]


def text_files(path: str) -> list[Document]:
    target = Path(path).expanduser()
    if target.is_file():
        files = [target]
    elif target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True) if Path(p).is_file())
        if not files:
            raise CorpusError(f"--corpus text:{path}: no such file, folder or matching glob: check the path.")
    return [Document(str(p), p.read_bytes()) for p in files]


def recall_documents(config: DataConfig) -> list[Document]:
    """Synthetic long-range recall: names bound to values at the start of a document and asked for again later,
    some within the local context and some far beyond it, between filler.

    Layout: `NAME1234;` for each of `recall_pairs` pairs (`recall_name_length` capital letters, then 4 digits; the
    names of a document differ), `recall_distance` bytes of lowercase filler, then questions `NAME1234;` of randomly
    chosen pairs with `recall_filler` / 4 to `recall_filler` bytes of filler between them, until `recall_length`
    bytes. The recalled spans are the digits of the questions whose name was last mentioned at least
    `recall_distance` bytes earlier: with `recall_distance` beyond the segment and the XL cache, only memory can
    answer those. The nearer repeats are what teaches the layers below (and the key projection, which memory shares
    with local attention) to look things up by name.
    Seeded by the document number: the corpus is the same on every machine.
    """
    letters, digits, filler = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "abcdefghijklmnopqrstuvwxyz "
    documents = []
    for n in range(config.recall_documents):
        rng = random.Random(f"recall-{n}")
        names = set()
        while len(names) < config.recall_pairs:
            names.add("".join(rng.choices(letters, k=config.recall_name_length)))
        pairs = {name: "".join(rng.choices(digits, k=4)) for name in sorted(names)}
        text, seen, spans = "", {}, []  # seen: name -> where its value was written so far
        for name, value in pairs.items():
            seen[name] = [len(text) + len(name)]
            text += f"{name}{value};"
        text += "".join(rng.choices(filler, k=config.recall_distance))
        while len(text) < config.recall_length:
            name = rng.choice(sorted(pairs))
            start = len(text) + len(name)
            if start - seen[name][-1] >= config.recall_distance:
                spans.append(Span(start, start + 4, tuple(seen[name])))
            seen[name].append(start)
            gap = rng.randint(config.recall_filler // 4, config.recall_filler)
            text += f"{name}{pairs[name]};" + "".join(rng.choices(filler, k=gap))
        data = text[:config.recall_length].encode()
        documents.append(Document(f"recall-{n}", data, tuple(s for s in spans if s.end <= len(data))))
    return documents


# ---- public long-document sets ---------------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get("MEMORIZING_DATA", Path.home() / ".cache" / "memorizing"))


def _fetch(name: str, url: str) -> bytes:
    """The bytes at `url`, downloaded once into the cache folder."""
    path = _cache_dir() / name
    if not path.exists():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise CorpusError(f"cannot download {url} ({e}); this machine seems offline. Put the file at {path} "
                              f"by hand, or train on local files with --corpus text:PATH.") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path.read_bytes()


def enwik8() -> list[Document]:
    """enwik8 (first 100M bytes of English Wikipedia XML), one document per <page>."""
    raw = _fetch("enwik8.zip", "http://mattmahoney.net/dc/enwik8.zip")
    data = zipfile.ZipFile(io.BytesIO(raw)).read("enwik8")
    pages = data.split(b"<page>")[1:]
    return [Document(f"enwik8-{i}", b"<page>" + page) for i, page in enumerate(pages)]


def pg19() -> list[Document]:
    """PG-19 books (Project Gutenberg before 1919, DeepMind release): the test books, one document each."""
    index = _fetch("pg19-test-index.txt", "https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o"
                                          "?prefix=test/&fields=items(name)")
    names = [line.split('"')[3] for line in index.decode().splitlines() if '"name"' in line]
    return [Document(n, _fetch(f"pg19-{Path(n).name}",
                               f"https://storage.googleapis.com/deepmind-gutenberg/{n}")) for n in names]


def arxiv() -> list[Document]:
    """arXiv math papers (LaTeX sources) as gathered by the Proof-Pile, one document per paper."""
    import json
    raw = _fetch("arxiv-test.jsonl", "https://huggingface.co/datasets/hoskinson-center/proof-pile/resolve/main/"
                                     "test/arxiv/arxiv_test.jsonl")
    return [Document(f"arxiv-{i}", json.loads(line)["text"].encode())
            for i, line in enumerate(raw.decode().splitlines()) if line.strip()]


PUBLIC = {"pg19": pg19, "enwik8": enwik8, "arxiv": arxiv}
