"""Lanes: B parallel streams, each reading whole documents one segment at a time.

A lane takes the next document from a shared, seeded order when its current one ends, and flags `reset` on the
first segment of every document so the model clears that lane's XL cache and memory. A segment never mixes two
documents: the tail of a document is padded and masked out of the loss. Targets are the next bytes, so the last
target of a segment is the first byte of the next one. With `encode` (a pretrained model's tokenizer) tokens are
its token ids instead of bytes, and positions count tokens.
"""

from dataclasses import dataclass

import numpy as np
import torch

from memorizing.data.corpora import Document


@dataclass
class Batch:
    tokens: torch.Tensor  # [B, L] input bytes
    targets: torch.Tensor  # [B, L] next bytes
    mask: torch.Tensor  # [B, L] True where the target is real (not padding)
    reset: torch.Tensor  # [B] True where this segment starts a new document
    positions: torch.Tensor  # [B, L] position of each input token in its document
    recall: torch.Tensor  # [B, L] True where the target lies in a recalled span (recall corpus)


class LaneStream:
    """Streams `documents` through `lanes` lanes in segments of `segment` tokens.

    loop=True (training): documents are reshuffled every epoch and the stream never ends.
    loop=False (evaluation): every document is read once, in order; lanes that run out idle (fully masked) and
    the stream ends when all are done.
    """

    def __init__(self, documents: list[Document], lanes: int, segment: int, seed: int = 0, loop: bool = True,
                 encode=None):
        """`encode`: bytes -> token ids [N] (np.ndarray); None: tokens are bytes."""
        self.documents, self.lanes, self.segment, self.seed, self.loop = documents, lanes, segment, seed, loop
        self.epoch, self.cursor = 0, 0  # position in the current epoch's order
        self.order = self._order(0)
        self.lane_doc = [-1] * lanes  # document index per lane (-1: none yet / finished)
        self.lane_offset = [0] * lanes
        self.encode = encode or (lambda data: np.frombuffer(data, dtype=np.uint8))
        self.arrays: list[np.ndarray | None] = [None] * len(documents)  # tokens of each document, once it is read
        # recalled spans are marked in bytes: kept only where tokens are bytes
        self.span_masks = [self._span_mask(d) if encode is None else None for d in documents]

    @staticmethod
    def _span_mask(document: Document) -> np.ndarray | None:
        if not document.spans:
            return None
        mask = np.zeros(len(document.data), dtype=bool)
        for span in document.spans:
            mask[span.start:span.end] = True
        return mask

    def _order(self, epoch: int) -> list[int]:
        if not self.loop:
            return list(range(len(self.documents)))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.documents)).tolist()

    def _next_document(self) -> int:
        if self.cursor == len(self.order):
            if not self.loop:
                return -1
            self.epoch += 1
            self.order, self.cursor = self._order(self.epoch), 0
        self.cursor += 1
        return self.order[self.cursor - 1]

    def tokens(self, doc: int) -> np.ndarray:
        """Document `doc` as tokens, encoded when a lane first reads it (not the whole corpus up front)."""
        if self.arrays[doc] is None:
            self.arrays[doc] = self.encode(self.documents[doc].data)
        return self.arrays[doc]

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        B, L = self.lanes, self.segment
        tokens = np.zeros((B, L), dtype=np.int64)
        targets = np.zeros((B, L), dtype=np.int64)
        mask = np.zeros((B, L), dtype=bool)
        recall = np.zeros((B, L), dtype=bool)
        positions = np.zeros((B, L), dtype=np.int64)
        reset = np.zeros(B, dtype=bool)
        for lane in range(B):  # data preparation, not the model's hot path
            doc, offset = self.lane_doc[lane], self.lane_offset[lane]
            if doc < 0 or offset >= len(self.tokens(doc)) - 1:  # finished: take the next document
                doc, offset = self._next_document(), 0
                self.lane_doc[lane], self.lane_offset[lane] = doc, 0
                reset[lane] = True
                if doc < 0:
                    continue
            data = self.tokens(doc)
            n = min(L, len(data) - 1 - offset)
            tokens[lane, :n] = data[offset:offset + n]
            targets[lane, :n] = data[offset + 1:offset + n + 1]
            mask[lane, :n] = True
            positions[lane] = offset + np.arange(L)
            if self.span_masks[doc] is not None:
                recall[lane, :n] = self.span_masks[doc][offset + 1:offset + n + 1]
            self.lane_offset[lane] = offset + L
        if not self.loop and not mask.any() and all(d < 0 for d in self.lane_doc):
            raise StopIteration
        return Batch(*(torch.from_numpy(a) for a in (tokens, targets, mask, reset, positions, recall)))

    # ---- exact resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "lane_doc": list(self.lane_doc),
                "lane_offset": list(self.lane_offset)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self.order = self._order(self.epoch)
        self.lane_doc, self.lane_offset = list(state["lane_doc"]), list(state["lane_offset"])
