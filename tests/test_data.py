"""Corpora, the split by hash, and lanes."""

import urllib.error

import pytest
import torch

from memorizing.config import DataConfig
from memorizing.data import corpora
from memorizing.data.corpora import CorpusError, Document, load_corpus, split_documents, split_of
from memorizing.data.lanes import LaneStream


def random_documents(n, low=10, high=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (n,), generator=g)
    return [Document(f"d{i}", bytes(torch.randint(0, 256, (int(m),), generator=g).tolist()))
            for i, m in enumerate(lengths)]


def test_split_is_a_stable_partition_by_content():
    documents = random_documents(400)
    splits = {s: split_documents(documents, s) for s in ("train", "valid", "test")}
    assert sum(len(v) for v in splits.values()) == len(documents)
    names = [d.name for v in splits.values() for d in v]
    assert len(set(names)) == len(documents)
    assert 5 <= len(splits["test"]) <= 40 and 5 <= len(splits["valid"]) <= 40
    assert split_of(Document("other name", documents[0].data)) == split_of(documents[0])  # content decides


def test_evaluation_stream_predicts_every_byte_once_and_never_mixes_documents():
    documents = random_documents(13)
    stream = LaneStream(documents, lanes=3, segment=16, loop=False)
    seen = {lane: [] for lane in range(3)}
    targets_per_doc = []
    current = [None] * 3
    for batch in stream:
        for lane in range(3):
            if batch.reset[lane]:
                if current[lane]:
                    targets_per_doc.append(bytes(current[lane]))
                current[lane] = []
            if current[lane] is None:
                continue
            n = int(batch.mask[lane].sum())
            if n == 0:  # this lane has run out of documents
                assert not batch.mask[lane].any()
                continue
            assert batch.mask[lane, :n].all() and not batch.mask[lane, n:].any()  # padding only at the tail
            assert torch.equal(batch.tokens[lane, 1:n], batch.targets[lane, :n - 1])  # next-byte targets
            current[lane].extend(batch.targets[lane, :n].tolist())
            seen[lane].append(n)
    targets_per_doc += [bytes(c) for c in current if c]
    assert sorted(targets_per_doc) == sorted(d.data[1:] for d in documents)


def test_training_stream_is_deterministic_per_seed_and_resumable():
    documents = random_documents(20)
    a, b, c = (LaneStream(documents, 4, 32, seed=s) for s in (1, 1, 2))
    batches_a = [next(a) for _ in range(30)]
    assert all(torch.equal(x.tokens, next(b).tokens) for x in batches_a)
    assert not all(torch.equal(x.tokens, next(c).tokens) for x in batches_a)
    resumed = LaneStream(documents, 4, 32, seed=1)
    resumed.load_state_dict(b.state_dict())
    assert all(torch.equal(next(b).tokens, next(resumed).tokens) for _ in range(40))


def test_text_corpus_reads_file_folder_and_glob(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "sub/b.txt", "sub/c.md"):
        (tmp_path / name).write_bytes(b"x" * 50 + name.encode())
    count = lambda spec: len(load_corpus(DataConfig(corpus=spec)))
    assert count(f"text:{tmp_path / 'a.txt'}") == 1
    assert count(f"text:{tmp_path}") == 3
    assert count(f"text:{tmp_path}/**/*.txt") == 2
    with pytest.raises(CorpusError, match="no such file"):
        count(f"text:{tmp_path}/missing")


def test_empty_and_too_short_corpora_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no documents"):
        load_corpus(DataConfig(corpus=f"text:{tmp_path / 'empty'}"))
    (tmp_path / "short.txt").write_bytes(b"tiny")
    with pytest.raises(CorpusError, match="shorter than data.min_document"):
        load_corpus(DataConfig(corpus=f"text:{tmp_path / 'short.txt'}", min_document=100))


def test_python_stdlib_corpus_is_present():
    documents = load_corpus(DataConfig(corpus="python-stdlib"))
    assert len(documents) > 100
    assert any(d.name.endswith("os.py") for d in documents)


def test_recall_documents_ask_again_only_beyond_the_distance():
    config = DataConfig(corpus="recall", recall_documents=5, recall_length=2048, recall_distance=300, recall_pairs=6)
    documents = load_corpus(config)
    assert documents == load_corpus(config)  # seeded
    for document in documents:
        text = document.data.decode()
        assert document.spans
        for span in document.spans:
            start, end = span.start, span.end
            name, value = text[start - 4:start], text[start:end]
            first = text.index(name)
            assert text[first + 4:first + 8] == value  # bound at the start
            previous = text.rfind(name, 0, start - 4)
            assert start - 4 - previous >= 300  # no earlier mention within the distance
            # the sources are every earlier mention of the value, the binding first
            assert span.sources[0] == first + 4 and span.sources[-1] == previous + 4
            assert all(text[s:s + 4] == value and text[s - 4:s] == name for s in span.sources)
        assert len(document.spans) < text.count(";") - 6  # nearer repeats exist too, but are not marked


def test_public_sets_say_so_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMORIZING_DATA", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(corpora.urllib.request, "urlopen", offline)
    for name in ("enwik8", "pg19", "arxiv"):
        with pytest.raises(CorpusError, match="offline.*text:PATH"):
            load_corpus(DataConfig(corpus=name))
    assert not list(tmp_path.iterdir())  # nothing half-downloaded left behind


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(CorpusError, match="python-stdlib, text:PATH, recall"):
        load_corpus(DataConfig(corpus="wikipedia"))


@pytest.mark.parametrize("files", [1, 6])
def test_a_few_long_documents_hold_out_the_tail_of_each(tmp_path, files):
    """Six novels, or one long file: every document gives its first 90% to train, then 5% to valid and the last
    5% to test, so that evaluation has held-out text and no byte is in two splits."""
    texts = [bytes(f"document {i}: ", "ascii") + bytes(range(256)) * 40 for i in range(files)]
    for i, text in enumerate(texts):
        (tmp_path / f"{i}.txt").write_bytes(text)
    documents = load_corpus(DataConfig(corpus=f"text:{tmp_path}"))
    pieces = {split: split_documents(documents, split) for split in ("train", "valid", "test")}
    for i, text in enumerate(texts):
        train, valid, test = (pieces[split][i].data for split in ("train", "valid", "test"))
        assert train + valid + test == text
        assert len(test) == len(text) - int(len(text) * 0.95) and len(valid) > 0


def test_many_documents_split_whole_by_content():
    documents = [Document(str(i), f"text {i} ".encode() * 50) for i in range(200)]
    pieces = {split: split_documents(documents, split) for split in ("train", "valid", "test")}
    assert sorted(d.name for split in pieces.values() for d in split) == sorted(d.name for d in documents)
    assert all(pieces.values())


def test_pieces_keep_the_recall_spans_inside_them():
    data = bytes(1000)
    document = Document("d", data, (corpora.Span(10, 14, (2,)), corpora.Span(960, 964, (5, 955)),
                                    corpora.Span(970, 974, (20,))))
    test = split_documents([document], "test")[0]
    assert test.spans == (corpora.Span(10, 14, (5,)),)  # 970's only source lies in the train piece: dropped


def test_the_cpu_preset_finds_test_documents_in_the_recall_corpus():
    """`memorizing train --preset cpu --corpus recall` must have held-out documents of the preset's test length
    (data.eval_min_length): the corpus's documents are long enough by default."""
    from memorizing import preset
    from memorizing.evaluate import evaluation_documents
    config = preset("cpu")
    config.data.corpus = "recall"
    documents = evaluation_documents(load_corpus(config.data), config.data, "test", config.data.eval_tokens)
    assert documents and all(len(d.data) >= config.data.eval_min_length for d in documents)
    assert sum(len(d.spans) for d in documents) > 0  # with far recalls to score
