"""What the model does not have: each thing a plan may ask for that `memorizing` cannot run, how a plan names it,
and the nearest thing the model has. A section that asks for one of these is refused with both names; it is
never mapped onto something else."""

import re
from dataclasses import dataclass

from memorizing.ablation.values import REFERENCE, clauses, is_kept


@dataclass(frozen=True)
class Missing:
    name: str  # how the refusal names it
    pattern: re.Pattern
    nearest: str
    reason: str = "not-available"  # or "unknown": nothing the lab can ablate at all


def _p(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.I)


POSITION_NEAREST = ("memory.position_bias = \"t5-relative\" (T5-style relative distance) or \"learned-absolute\" "
                    "(learned bias by the stored key's position)")
SEARCH_NEAREST = ("memory.search = \"ivf\" (inverted-file index, with memory.ivf_lists and memory.ivf_probe), "
                  "\"bucketed\" (the paper's approximate top-k) or \"exact\"")
TRAINING_NEAREST = ("the training settings a plan can change are the learning rate (train.lr), the number of training "
                    "steps (train.steps), the warm-up (train.warmup) and weight decay (train.weight_decay), e.g. "
                    "'learning rate 3e-4', 'train for 200000 steps', 'halve the training steps'; the batch is "
                    "data.lanes")
SCHEDULE_NEAREST = ("the schedule is fixed (linear warm-up, then cosine decay to a tenth of train.lr at train.steps); "
                    "train.lr, train.warmup and train.steps can change")

MISSING = (
    Missing("a position bias of the local attention (local attention always uses the T5 relative bias; it cannot "
            "be removed or replaced)",
            _p(r"\b(?:position\w*|rotary|rope|alibi|t5|relative|sinusoid\w*)\b[^.;]{0,50}\b(?:of|from) (?:the )?local "
               r"(?:dense )?attention\b|\blocal (?:dense )?attention\b[^.;]{0,30}\b(?:position\w*|rotary|rope|alibi)"
               r"|\b(?:rotary|rope|alibi|sinusoid\w*|position\w*)\b[^.;]{0,30}\bfor (?:the )?local (?:dense )?"
               r"attention\b|^(?!.*(?:memor|retriev|stored|knn))(?=.*\b(?:remov\w*|drop\w*|disabl\w*|without|replac\w*|"
               r"swap\w*|no)\b).*?\b(?:t5|relative)\b[^.;]{0,30}\bbias\b"),
            "memory.position_bias, the position bias of retrieved memories"),
    Missing("a sinusoidal position bias for memory", _p(r"\bsinusoid\w*"), POSITION_NEAREST),
    Missing("a rotary position bias (RoPE) for memory", _p(r"\brotary\b|\brope\b"), POSITION_NEAREST),
    Missing("an ALiBi position bias for memory", _p(r"\balibi\b|\blinear (?:distance )?(?:penalty|bias)\b"),
            POSITION_NEAREST),
    Missing("HNSW search", _p(r"\bhnsw\w*|\bgraph[- ](?:based )?(?:index|search)\b|navigable small[- ]world"),
            SEARCH_NEAREST),
    Missing("LSH search (locality-sensitive hashing)", _p(r"\blsh\b|locality[- ]sensitive|random hyperplanes?"),
            SEARCH_NEAREST),
    Missing("product quantisation (PQ) search", _p(r"product[- ]quanti[sz]\w*|\b(?:o?pq)\b|sub-?quanti[sz]ers?"),
            SEARCH_NEAREST),
    Missing("ScaNN search", _p(r"\bscann\b|anisotropic"), SEARCH_NEAREST),
    Missing("LRU eviction (least-recently-used)", _p(r"\blru\b|least[- ]recently[- ]used"),
            "the memory is a FIFO ring buffer that evicts its oldest entries; vary memory.size"),
    Missing("importance-based eviction", _p(r"importance[- ]based|\bby importance\b|lowest (?:accumulated )?"
                                            r"attention|least[- ]attended|\blfu\b|least[- ]frequently|"
                                            r"random eviction"),
            "the memory is a FIFO ring buffer that evicts its oldest entries; vary memory.size"),
    Missing("a memory shared across heads, layers or sequences (multi-query memory, one pool for the batch)",
            _p(r"multi[- ]?query|\bshar(?:e|ed|es|ing)\b[^.;]{0,40}\b(?:heads?|layers?|sequences|lanes|(?:the )?"
               r"batch)\b|"
               r"\b(?:one|single|a single|common|same|global|shared)\s+(?:\w+\s+){0,2}memor(?:y|ies)\b[^.;]{0,30}"
               r"\b(?:all|both|every|across|shared)\b[^.;]{0,20}\b(?:heads|layers|sequences|lanes)\b|"
               r"\bshared memory\b|\bmemory (?:pool|bank) shared\b"),
            "none: the memory is kept per head, per memory layer and per lane (sequence); memory.reset = false keeps "
            "a lane's memory across its documents"),
    Missing("sliding-window attention", _p(r"sliding[- ]window"),
            "data.segment (local attention covers the segment and the XL cache of the previous one)"),
    Missing("memory compression or quantisation (keys and values stored in fewer bits)",
            _p(r"\bcompress\w*|(?<!product )(?<!product-)\bquanti[sz](?:ed|ing|ation|e)\b|\b(?:int8|int4|fp8|fp16|"
               r"bf16|8-bit|4-bit|half[- ]precision|low(?:er)?[- ]precision)\b"),
            "none; the memory keeps every (key, value) pair, at full precision, until it is evicted (vary "
            "memory.size)"),
    Missing("retrieval from an external database (RETRO-style, a corpus indexed in advance)",
            _p(r"\bretro\b|\b(?:external|fixed|frozen|pre-?built|static)\s+(?:\w+\s+)?(?:database|datastore|"
               r"corpus|index of (?:the )?(?:training )?(?:set|corpus|data))\b|\bdatastore\b"),
            "none: the memory holds the (key, value) pairs of the lane's own past segments (memory.reset = false "
            "keeps them across documents)"),
    Missing("memory summarisation", _p(r"\bsummar(?:ies|i[sz]\w*)|\bsummary (?:tokens?|vectors?|slots?|entr\w*)"),
            "none; the memory keeps every (key, value) pair until it is evicted (vary memory.size)"),
    Missing("learned memory writing (a learned choice of what is stored)",
            _p(r"\b(?:learned|learnable|selective|gated|trainable)\s+(?:memory\s+)?writ\w*|\bwrite[- ]gate|"
               r"\bwriting gate|\bdecides? (?:which|what) (?:tokens|entries|keys|pairs)"),
            "none: every (key, value) pair of a segment is written"),
    Missing("gradients into memory (backpropagating into the stored keys and values)",
            _p(r"\bgradients?\b[^.;]{0,30}\b(?:into|through)\b[^.;]{0,10}\bmemor|\bbackprop\w*\b[^.;]{0,20}\b(?:into|"
               r"through)\b[^.;]{0,10}\bmemor|\b(?:do not|don't|not|never|without) detach\w*|\bdifferentiable "
               r"memory\b|\bnon-?detached\b"),
            "none: stored keys and values are detached, as in the paper"),
    Missing("a different model size in the memory layer alone (heads, width)",
            _p(r"\b(?:heads|width|head dim\w*|hidden size)\b[^.;]{0,25}\b(?:in|of|for) (?:the )?(?:knn )?"
               r"memory layer\b|\bmemory[- ](?:layer )?heads\b"),
            "model.heads, model.head_dim and model.dim, which change every layer"),
    Missing("dropout", _p(r"\bdropout\b"), TRAINING_NEAREST),
    Missing("the optimiser (optimizer)",
            _p(r"\boptimi[sz]er\b(?!\s+(?:steps|updates|iterations))|\badamw?\b|\badafactor\b|\bsgd\b|\blion\b"),
            TRAINING_NEAREST),
    Missing("a different learning-rate schedule",
            _p(r"\b(?:learning[- ]rate|lr)[- ](?:schedul\w*|decay|annealing|restarts?)\b|\b(?:cosine|linear|"
               r"exponential|step|polynomial|inverse[- ]square[- ]root|rsqrt|constant|cyclic\w*|one[- ]?cycle)\s+"
               r"(?:lr\s+|learning[- ]rate\s+)?(?:schedul\w*|decay|annealing)\b|\bwarm[- ]?restarts?\b|"
               r"\b(?:anneal\w*|decay\w*)\s+(?:the\s+)?(?:learning[- ]rate|lr)\b"), SCHEDULE_NEAREST),
    Missing("training hyperparameters other than the learning rate, steps, warm-up and weight decay (batch size, "
            "gradient clipping, label smoothing, epochs)",
            _p(r"\bbatch[- ]size\b|\bgradient clipping\b|\blabel smoothing\b|\bepochs?\b"),
            TRAINING_NEAREST),
    Missing("stochastic depth (layers dropped at random during training)",
            _p(r"\bstochastic depth\b|\blayer[- ]?drop\b|\bdrop(?:s|ping)? (?:whole |entire |random )?layers\b"
               r"[^.;]{0,30}\bprobabilit"), "none: every layer runs at every step", reason="unknown"),
    Missing("an average of the weights (EMA, weight averaging)",
            _p(r"\bema\b|\bexponential(?:ly)? moving average\b|\b(?:weight|model|polyak|stochastic weight) "
               r"averag\w*|\bswa\b"), "none: evaluation uses the trained weights", reason="unknown"),
    Missing("a tokenizer or vocabulary change",
            _p(r"\btokeni[sz](?:er|ers|ation)\b|\bvocab(?:ular(?:y|ies))?\b|\bbpe\b|\bbyte[- ]pair\b|"
               r"\bsentencepiece\b|\bwordpiece\b|\bunigram (?:model|lm|tokeni[sz]\w*)"),
            "none: the model reads bytes (model.vocab_size = 256); there is no tokenizer to change",
            reason="unknown"),
    Missing("the training corpus",
            _p(r"\b(?:training|pre-?training) (?:corpus|data ?set)\b|\b(?:different|another|other) (?:training )?"
               r"(?:corpus|data ?set)\b|\b(?:pre-?)?train(?:ed|ing)? on\b[^.;]{0,30}\b(?:c4|pg-?19|wikitext[\w-]*|"
               r"arxiv|the pile|books3?|openwebtext|wikipedia)\b[^.;]{0,30}\binstead\b"),
            "none: the corpus is not part of the model; run the study on another corpus with --corpus",
            reason="unknown"),
    Missing("the activation function",
            _p(r"\bactivation functions?\b|\b(?:gelu|relu|swiglu|geglu|silu|swish)\b"),
            "none: the feed-forward layers' activation is fixed", reason="unknown"),
    Missing("a change at evaluation only (a plan trains every variant)",
            _p(r"\b(?:at|during|for) (?:evaluation|eval|test(?:ing)?|inference)(?: time)? only\b|\bonly (?:at|during|"
               r"for) (?:evaluation|eval|test(?:ing)?|inference)\b|"
               r"\b(?:evaluation|eval|inference|test)[- ]time only\b"),
            "train once, then compare settings that keep the weights with `memorizing eval DIR --set "
            "memory.search=exact` (or memory.top_k, memory.size)"),
)


@dataclass
class Found:
    missing: Missing
    words: str  # the plan's own words


def find_missing(text: str) -> list[Found]:
    """The things of `text` that the model does not have, in catalogue order; what a clause says is kept, or
    what something replaces ('instead of X'), does not count."""
    found, seen = [], set()
    active = " ; ".join(REFERENCE.sub(" ", c) for c in clauses(text) if not is_kept(c))  # is_kept ignores refs
    active = re.sub(r"\s+", " ", re.sub(r"[*`]", "", active))  # the plan's own words, in its own case
    local = MISSING[0].pattern.search(active)
    for missing in MISSING:
        m = missing.pattern.search(active)
        if not m or missing.name in seen:
            continue
        if local and missing is not MISSING[0] and m.start() >= 0 and _inside(m, local):
            continue  # 'rotary positions for local attention' is the local-attention refusal only
        seen.add(missing.name)
        found.append(Found(missing, m.group(0)))
    return found


def _inside(m: re.Match, outer: re.Match) -> bool:
    return outer.start() <= m.start() and m.end() <= outer.end()
