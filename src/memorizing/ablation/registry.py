"""The components a plan can ablate: their config keys, the words that name them, and how a value written in a
plan becomes config values.

Each component has
- phrases: (regex, weight) matched in the section's text; defining phrases weigh 3, strong ones 2, generic words
  1 or less. A phrase inside a longer matched phrase does not count again;
- a cue: a regex that, found in a *value*, names this component (`k=8`, `16 neighbours`, `64k entries`,
  `exact_kNN`, `layer 3`). Values whose cues name one component only decide the section;
- a parser from one value to config changes, which never takes a stray number: every number of a value is
  either understood (and consumed) or reported;
- what REMOVE and a bare ADD mean, or why they leave something open.
"""

import re
from dataclasses import dataclass, replace
from typing import Callable

from memorizing.ablation.parsers import (ABSOLUTE_BIAS, MEMORY_ONLY, MULTIPLIER, NB, RELATIVE_BIAS,
                                         RELATIVE_DESCRIPTION, VAGUE, Context, Item, Parsed, bias_parse, count, fixed,
                                         gate_parse, layers_parse, model_parse, open_choice, qk_keys, search_parse,
                                         switch, xl_add)
from memorizing.ablation.values import BASELINE_SUFFIX, is_baseline_value, numbers, words


REASONS = ("not-available", "equals-baseline", "ambiguous", "unknown", "invalid")


@dataclass
class Refusal:
    reason: str  # one of REASONS
    message: str


@dataclass(frozen=True)
class Component:
    name: str
    label: str
    keys: tuple[str, ...]
    phrases: tuple[tuple[str, float], ...]
    cue: str | None
    parse: Callable[[Item, Context], Parsed]
    accepted: str  # the values `parse` accepts, for messages
    remove: Callable[[Context], Parsed]
    add: Callable[[Context], Parsed]
    units: str = ""  # words after a number that make it this component's value (free text)
    keywords: str = ""  # words right before a number that make it this component's value (free text)
    numeric: bool = False  # values are numbers (free text is searched for numbers with units or keywords)

# T5's relative position bias is bucketed too: 'a T5 bucketed relative-distance bias' names no search.
NOT_A_BIAS = r"(?![^.;,]{0,40}\bbias)"

COMPONENTS = (
    Component(
        "memory", "kNN memory branch", ("memory.enabled",),
        ((r"knn[- ]?augmented(?: attention)?", 3), (r"\bknn[- ]?attn\b", 3), (r"\bknn[- ]attention\b", 3),
         (r"memory[- ]augmented attention", 3), (r"memory branch", 3), (r"retrieval branch", 3),
         (r"memori[sz]ing attention", 3), (r"\b(?:knn|external|long[- ]term|episodic|non-?parametric) memory\b", 2),
         (r"nearest[- ]neighbou?r retrieval|\bknn retrieval|memory retrieval|\bknn memory retrieval", 2),
         (r"\bmemory\b", 1), (r"\bretriev\w*", 1), (r"\bknn\b", 0.5)),
        None, switch(lambda ctx: ("memory.enabled",), "the kNN memory branch"), "on/off",
        fixed({"memory.enabled": False}), fixed({"memory.enabled": True})),
    Component(
        "gate", "gate mixing memory and local attention", ("memory.combine", "memory.gate"),
        ((r"\bgat(?:e|es|ed|ing)\b", 3), (r"joint softmax|(?:single|one|shared) softmax", 3), (r"equal mix", 2),
         (r"local[- ]attention[- ]only|" + MEMORY_ONLY, 2), (r"\bmix(?:es|ing|ed|ture)?\b", 1),
         (r"\bfuses?\b|\bfusion\b|\bfusing\b", 1), (r"\bcombin(?:ation|es|ing|ed)\b", 1), (r"interpolat\w*", 1),
         (r"\bsoftmax\b", 1)),
        r"\bgat(?:e|ing)\b|softmax|sigmoid|equal mix|\bfixed\b|local(?:[- ]attention)?[- ]only|" + MEMORY_ONLY,
        gate_parse, "fixed_gate=X (X in [0, 1]), sigmoid(x), 'joint softmax', 'learned gate'",
        open_choice("REMOVE of the learned gate leaves open what mixes memory and local attention instead: say a "
                    "fixed gate value in [0, 1] (memory.combine = \"fixed\", memory.gate = X) or one joint softmax "
                    "(memory.combine = \"joint\")"),
        fixed({"memory.combine": "gate"}),
        keywords=r"(?:(?:gate|gating|gating value|constant|fixed(?: at)?|mix(?:ing)?(?: weight)?|value|weight)\s*"
                 r"(?:of|=|:)?|\bto|\bat|=)\s*$", numeric=True),
    Component(
        "qk_norm", "key/query normalisation", ("memory.qk_norm", "model.qk_norm"),
        ((r"\b(?:qk|q/k|q-k|k/q|key/query|query/key|key-query|query-key)[\s-]*(?:l2[\s-]*)?norm\w*", 3),
         (r"\bnorm\w* (?:of|on|for) (?:the )?(?:keys? (?:and|&) quer(?:y|ies)|quer(?:y|ies) (?:and|&) keys?|q/k|qk|"
          r"keys/queries|queries/keys|keys|queries)", 3),
         (r"\bl2[\s-]*norm\w*", 3), (r"\bl2[\s-]*normali[sz]ed (?:keys|queries)", 3),
         (r"\bcosine (?:attention|similarity)", 3), (r"(?:learned|learnable) temperature", 1),
         (r"\bstale\w*|distributional shift|\bdrift\w*", 1)),
        None, switch(qk_keys, "key/query normalisation"), "on/off",
        lambda ctx: Parsed({k: False for k in qk_keys(ctx)}), lambda ctx: Parsed({k: True for k in qk_keys(ctx)})),
    Component(
        "search", "kNN search", ("memory.search", "memory.search_buckets", "memory.ivf_lists", "memory.ivf_probe"),
        ((r"(?:knn|nearest[- ]neighbou?r|top[- ]?k|similarity|vector|memory|approximate|exact|retrieval|ann) "
          r"(?:search|lookup)", 3), (r"(?:exact|approximate|approx\.?|bucketed|brute[- ]force) (?:top[- ]?k|knn|"
                                     r"nearest[- ]neighbou?rs?|retrieval)", 3),
         (r"search (?:method|algorithm|backend|back-end|mechanism|routine|index|strategy|procedure)", 3),
         (r"(?:retrieval|search|knn|faiss|ann) index", 3), (r"\bapproximat\w*|\bapprox\b", 2), (r"\bexact\b", 2),
         (r"brute[- ]?force", 2), (r"exhaustive\w*", 2), (r"\bbucketed\b" + NOT_A_BIAS, 2),
         (r"\bivf\b|inverted[- ]?file", 2),
         (r"\bbuckets? per (?:\w+ )?(?:neighbou?rs?|quer(?:y|ies)|keys?)\b|\bnumber of buckets\b|\bbucket (?:count|"
          r"number)s?\b", 3),
         (r"\bfaiss\b", 1), (r"\bsearch\w*", 1), (r"\blookup\b", 1)),
        r"\bexact|brute|exhaustive|\bapprox|bucket\w*" + NOT_A_BIAS + r"|\bivf\b|inverted|\bfaiss\b|\blists\b|"
        r"\bprobes?\b|\bflat\b",
        search_parse, "exact (brute force), bucketed (approximate), ivf with N lists and P probes",
        fixed({"memory.search": "exact"}),
        open_choice("ADD of a kNN search does not say which: exact, bucketed (approximate) or ivf")),
    Component(
        "position_bias", "position bias for memory", ("memory.position_bias",),
        ((r"\bposition(?:al)?[- ](?:bias|information|encoding|embedding|signal)s?", 3),
         (r"\bpositions? (?:of|for) (?:the )?(?:retrieved |stored )?memor(?:y|ies)", 3), (r"memory positions?", 3),
         (r"relative position", 2), (r"absolute position", 2), (r"\bt5\b", 1),
         (r"\bbias(?:es)?\b[^.;]{0,60}(?:" + RELATIVE_BIAS + "|" + ABSOLUTE_BIAS + r"|\bpositions?\b)", 3),
         (RELATIVE_DESCRIPTION + "|" + ABSOLUTE_BIAS, 2)),
        r"\bt5\b|\brelative\b|\babsolute\b|\bbias(?:es)?\b[^.;]{0,60}(?:" + RELATIVE_BIAS + "|" + ABSOLUTE_BIAS + ")|" +
        RELATIVE_DESCRIPTION + "|" + ABSOLUTE_BIAS,
        bias_parse, "t5-relative, learned-absolute, none",
        fixed({"memory.position_bias": "none"}),
        open_choice("ADD of a memory position bias does not say which: t5-relative (T5-style relative distance "
                    "between query and stored key) or learned-absolute (learned bias by the stored key's position)")),
    Component(
        "memory_size", "memory size", ("memory.size",),
        ((r"memory (?:size|capacity)", 3), (r"size of (?:the )?(?:external |knn )?memory", 3),
         (r"(?:memory|retrieval) pool", 3), (r"number of (?:\S+ ){0,3}?(?:entries|slots|stored (?:keys|memories))", 3),
         (r"\bcapacity\b", 2), (r"entries per (?:head|lane)", 2), (r"\|m\|", 3),
         (r"(?:bigger|larger|smaller|shorter|longer|big|small) (?:external |knn )?memory", 2), (r"memory length", 2),
         (r"\b(?:halv|doubl|quarter|shrink|grow|enlarg|quadrupl)\w* (?:the )?(?:size of the )?(?:knn |external )?"
          r"memory\b", 3),
         (r"\bentries\b", 1), (r"\bcache\b", 1)),
        # '8k-token memory', 'a memory of 16K tokens': the memory stores one entry per token (not the XL memory)
        r"\bentr(?:y|ies)\b|\bslots?\b|\|m\||\d\s*[km]?[- ]?tokens?[- ](?:(?:knn|external)[- ])?memory\b|"
        r"(?<!xl )(?<!xl-)(?<!cache )(?<!recurrent )\bmemory (?:of|with|holding) \d[\d,.]*\s*[km]?\s*tokens\b",
        count("memory.size", "memory size", r"entr|token|slot|key|memor|pair"),
        "a number of entries, e.g. 8192, 16K, 2^14, or halved / doubled",
        open_choice("the memory size cannot be removed: REPLACE it with a number of entries, or REMOVE the kNN "
                    "memory"),
        open_choice("ADD to the memory size does not say how much: REPLACE it with a number of entries"),
        units=r"entr(?:y|ies)|tokens?|slots?|keys|memories|(?:key[-, ]+value )?pairs", keywords=r"(?:size|capacity|"
        r"memory of|memory|\|m\|)\s*(?:of|=|to|:)?\s*$", numeric=True),
    Component(
        "top_k", "number of retrieved neighbours (top-k)", ("memory.top_k",),
        ((r"\btop[- _]?k\b", 3), (r"number of (?:retrieved |nearest |returned )?(?:" + NB + r"|retrieved (?:keys|"
          r"memories|items))", 3), (NB + r" (?:per|for each|each) query", 3), (r"retrieval count", 3),
         (r"(?:nearest[- ])?neighbou?r count", 3), (r"how many (?:nearest )?" + NB, 3), (r"\bk nearest", 2),
         (NB + r" (?:retrieved|returned)", 3), (r"(?:fewer|more) " + NB, 3), (r"\bneighbou?rs?\b", 1),
         (r"(?:fewer|more) retrieved (?:memories|keys|items)|retrieved (?:memories|keys) per query", 3)),
        r"\bk\s*(?:=|:|∈|\d)|\bk\s+in\s*[{\[]|\btop[- _]?k\b|\bneighbou?rs?\b|\btop[- ]\d",
        count("memory.top_k", "top-k", r"neighbou?r|nearest|retriev|key"),
        "a number of neighbours, e.g. 16",
        open_choice("the number of retrieved neighbours cannot be removed: REPLACE it with a number, or REMOVE the "
                    "kNN memory"),
        open_choice("ADD to the number of neighbours does not say how many: REPLACE it with a number"),
        units=r"(?:nearest )?neighbou?rs?|retrieved (?:keys|memories)", keywords=r"(?:\bk|top[- _]?k|neighbou?rs?)"
        r"\s*(?:of|=|to|:|∈|in)?\s*$", numeric=True),
    Component(
        "memory_layers", "placement of the memory layer", ("memory.layers",),
        ((r"(?<!non-)memory layers\b", 3), (r"\b(?:which|what) layers?", 3), (r"(?:layer )?placement", 3),
         (r"position of (?:the )?(?:single )?(?:knn )?memory layer", 3),
         (r"memory layer (?:position|placement|location|index)", 3),
         (r"(?:number of|more|extra|additional|second|two|three|several|multiple) (?:knn )?memory layers?", 3),
         (r"(?<!xl )(?<!xl-)(?<!recurrent )(?<!cache )memory (?:only |just |solely )?(?:in|at|to|into|from|out of) "
          r"(?:the |every |each |all |an? )?(?:\w+ )?layers?", 3),
         (r"\b(?:last|final|first|early|earlier|late|later|lower|upper|top|bottom|middle)[- ]layers? (?:knn )?memory\b",
          3),
         (r"\b(?:put|place|insert)\w*\b[^.;]{0,30}\blayers? \d", 3),
         (r"\b(?:move|moves|moved|moving) (?:the )?(?:\(?single\)? )?(?:knn )?memory", 3),
         (r"(?P<skip>\b(?:in|of|at|inside|within|on|for|from|by)\s+(?:the\s+|a\s+|each\s+|every\s+|its\s+)?"
          r"(?:single\s+)?"
          r"(?:knn\s+)?|non-)?memory[- ]layer\b", 1), (r"\blayers?\b", 0.5)),
        r"\blayers?\s+\d|\b(?:last|final|first|every|each) layer|\ball (?:\d+ )?layers\b|ℓ|\blayer\b", layers_parse,
        "layer numbers (1-based), 'last', 'every layer'",
        open_choice("the memory layers cannot be removed: REMOVE the kNN memory, or REPLACE the layers with others"),
        open_choice("ADD of a memory layer does not say which layer: name it (e.g. 'layer 3')"),
        keywords=r"(?:layers?|ℓ|l)\s*(?:=|:|∈)?\s*$", numeric=True),
    Component(
        "xl_cache", "Transformer-XL cache", ("model.xl_cache",),
        ((r"(?:transformer[- ]?)?xl[- ]?(?:cache|memory|recurrence|state)", 3), (r"\btransformer[- ]xl\b", 2),
         (r"recurren\w* (?:cache|memory|state)", 3), (r"segment[- ]level recurrence", 3),
         (r"(?:segment|previous[- ]segment) cache", 3), (r"cache of (?:the )?previous segment", 3),
         (r"\bmem[_ ]?len\b", 3), (r"\bxl\b", 2), (r"\brecurren\w*", 1), (r"previous segment", 1), (r"\bcache\b", 1),
         (r"memory length", 2)),
        None, count("model.xl_cache", "XL cache length", r"token", zero=True, off_means_zero=True),
        "a number of tokens (0 = off)", fixed({"model.xl_cache": 0}), xl_add,
        units=r"tokens?", keywords=r"(?:cache|xl|length)\s*(?:of|=|to|at|:)?\s*$", numeric=True),
    Component(
        "segment", "segment length (local context)", ("data.segment",),
        ((r"segment (?:length|size)", 3), (r"context (?:window|length|size)", 3), (r"local context", 3),
         (r"chunk (?:length|size)", 3), (r"(?:tokens|length) per (?:training )?segment", 3),
         (r"sequence length", 3), (r"window (?:length|size)", 3), (r"(?:shorter|longer) (?:segments?|chunks?|context)",
                                                                  3),
         (r"\bsegments?\b", 1), (r"\bchunks?\b", 1), (r"\bwindow\b", 1)),
        None, count("data.segment", "segment length", r"token"), "a number of tokens, e.g. 512",
        open_choice("the segment cannot be removed: REPLACE it with a number of tokens"),
        open_choice("ADD to the segment does not say how long: REPLACE it with a number of tokens"),
        units=r"tokens?", keywords=r"(?:length|segment|segments|window|chunks?|context)\s*(?:of|=|to|at|:)?\s*$",
        numeric=True),
    Component(
        "reset", "memory reset at document boundaries", ("memory.reset",),
        ((r"(?:memory|per[- ]document|document) reset", 3), (r"\breset\w*", 2), (r"\bclear(?:s|ed|ing)?\b", 2),
         (r"\bwip(?:e|es|ed|ing)\b|\bflush\w*|\bemptie[sd]\b|\bemptying\b", 2),
         (r"across (?:\w+ )?(?:documents?|docs?|document boundar\w+)", 3), (r"between documents", 3),
         (r"document boundar\w+", 2), (r"cross[- ]document", 3), (r"\bpersist\w*", 1), (r"per[- ]document", 1)),
        None, switch(lambda ctx: ("memory.reset",), "the memory reset",
                     extra_off=r"\bkeep\w* (?:\w+ ){0,2}(?:across|between)|\bpersist\w*|\bcarr\w* over|"
                               r"\bacross (?:\w+ )?(?:documents?|docs?|document boundar\w+)|\bbetween documents|"
                               r"\bcross-document|(?:not|never|no longer|"
                               r"stop\w*) (?:be(?:ing)? )?(?:cleared|clearing|wiped|wiping|reset(?:ting)?|flush\w*|"
                               r"emptied|emptying)",
                     extra_on=r"\bclear(?:ed)? at (?:each|every)|\b(?:clear|wipe|flush|empty|reset)\w*\b[^.;]{0,40}\b"
                              r"(?:whenever|each time|every time|at the start of|when (?:a|each|every) (?:new )?"
                              r"(?:document|file))"),
        "on/off", fixed({"memory.reset": False}), fixed({"memory.reset": True})),
    Component(
        "model", "model size", ("model.depth", "model.dim", "model.heads", "model.head_dim"),
        ((r"model (?:size|scale|depth|width|dimension)", 3), (r"\bdepth\b", 3), (r"\bdeeper\b|\bshallower\b", 3),
         (r"(?:number of |attention )heads", 3), (r"head (?:dim\w*|size)", 3),
         (r"(?P<skip>\b(?:ffn|feed[- ]?forward|mlp|fc|intermediate|inner|hidden layer of the)\s+)?(?:hidden (?:size|"
          r"dim\w*)|d[_ ]?model|model dim\w*|(?:\bwidth\b|\bwider\b|\bnarrower\b|\bwiden\w*)(?!\s+(?:of\s+)?"
          r"(?:the\s+)?(?:ffn|feed[- ]?forward|mlp)))", 3),
         (r"number of (?:transformer )?layers", 3), (r"(?:bigger|larger|smaller|deeper) (?:model|network|net)\b", 3),
         (r"\bheads\b", 1)),
        r"(?<![\w.])(?<!\ball )(?<!last )(?<!final )(?<!first )(?<!top )(?<!bottom )\d+\s*-?\s*layers\b|"
        r"\bheads\b|\bdepth\b|\bwidth\b|d[ _]?model", model_parse,
        "'24 layers', '16 heads of 64', 'width 2048'",
        open_choice("the model cannot be removed"),
        open_choice("ADD to the model does not say what: REPLACE its depth, width or heads with values"),
        keywords=r"(?:depth|width|d[ _]?model|heads|layers)\s*(?:of|=|to|:)?\s*$", numeric=True),
    # Training settings the lab has (train.lr, train.steps, train.warmup, train.weight_decay): values, multiples or
    # fractions of the baseline's. Dropout, label smoothing, the optimiser, the schedule's shape and batch size are
    # refused as not available (missing.py).
    Component(
        "lr", "learning rate", ("train.lr",),
        ((r"\b(?:peak |base |initial |max(?:imum)? )?learning[- ]rates?\b", 3), (r"\blr\b", 3)),
        r"\blearning[- ]rates?\b|\blr\b", count("train.lr", "learning rate", "", real=True),
        "a learning rate, e.g. 3e-4, or a multiple of the baseline's (halved, a tenth of it)",
        open_choice("the learning rate cannot be removed: REPLACE it with a value"),
        open_choice("ADD to the learning rate does not say how much: REPLACE it with a value"),
        keywords=r"(?:\blr|learning[- ]rates?|rate)\s*(?:of|=|to|at|:|∈)?\s*$", numeric=True),
    Component(
        "steps", "training length (steps)", ("train.steps",),
        ((r"\b(?:number of |total )?(?:training|train|optimi[sz]ation|optimi[sz]er|gradient) (?:steps|updates|"
          r"iterations)\b", 3), (r"\bsteps? count\b|\bnumber of steps\b", 3),
         (r"\btraining (?:length|duration|budget|horizon)\b", 3), (r"\b(?:longer|shorter) training\b", 3),
         (r"\btrain(?:ing|s|ed)? (?:for )?(?:longer|shorter|less|more)\b", 3),
         (r"(?<!warm-up )(?<!warmup )(?<!warm up )\bsteps\b(?! (?:of|in) )", 1), (r"\biterations\b", 1)),
        r"(?<!warm-up )(?<!warmup )(?<!warm up )\bsteps\b(?! (?:of|in) )|\bstep count\b|\biterations\b",
        count("train.steps", "number of training steps", r"(?:training |train |optimi[sz]er |gradient )?(?:steps?|"
                                                         r"iterations?|updates)", thousands=True),
        "a number of training steps, e.g. 200000, or a multiple of the baseline's (halved)",
        open_choice("the training steps cannot be removed: REPLACE them with a number of steps"),
        open_choice("ADD to the training steps does not say how many: REPLACE them with a number of steps"),
        units=r"(?:training |train |optimi[sz]er |gradient )?(?:steps?|iterations?|updates)",
        keywords=r"(?:steps|step count|iterations|train(?:ing)? for)\s*(?:of|=|to|:)?\s*$", numeric=True),
    Component(
        "warmup", "learning-rate warm-up (steps)", ("train.warmup",),
        ((r"\bwarm[- ]?up\b", 3),),
        r"\bwarm[- ]?up\b", count("train.warmup", "warm-up length", r"(?:warm[- ]?up )?steps?", zero=True,
                                              off_means_zero=True, thousands=True),
        "a number of warm-up steps, e.g. 2000 (0 = none)",
        fixed({"train.warmup": 0}),
        open_choice("ADD of a warm-up does not say how long: give a number of warm-up steps"),
        units=r"(?:warm[- ]?up )?steps?", keywords=r"warm[- ]?up(?: steps| length| of)?\s*(?:of|=|to|:)?\s*$",
        numeric=True),
    Component(
        "weight_decay", "weight decay", ("train.weight_decay",),
        ((r"\bweight[- ]decay\b", 3),),
        r"\bweight[- ]decay\b", count("train.weight_decay", "weight decay", "", zero=True, real=True),
        "a weight decay, e.g. 0.05 (0 = none)",
        fixed({"train.weight_decay": 0.0}),
        open_choice("ADD of weight decay does not say how much: give a value"),
        keywords=r"(?:weight[- ]decay)\s*(?:of|=|to|at|:|∈)?\s*$", numeric=True),
)


def _baseline_value(component: Component) -> Component:
    """The component, its parser also reading a reference to the baseline ('as in the paper', "the paper's value",
    'paper default') as the baseline's own setting of its keys (which then equals the baseline)."""
    parse = component.parse

    def parse_or_baseline(item: Item, ctx: Context) -> Parsed:
        if is_baseline_value(item.text) or _named_as_baseline(component, parse, item.text, ctx):
            values = {k: getattr(getattr(ctx.baseline, k.split(".")[0]), k.split(".")[1]) for k in component.keys}
            return Parsed({k: v for k, v in values.items() if v is not None})
        return parse(item, ctx)
    return replace(component, parse=parse_or_baseline)


def _named_as_baseline(component: Component, parse: Callable[[Item, Context], Parsed], text: str,
                       ctx: Context) -> bool:
    """'top-k as in the paper', 'the search at the paper's setting': only the component's own name before a
    reference to the baseline (no number, no other word that could be a value)."""
    t = words(text)
    m = BASELINE_SUFFIX.search(t)
    if not m:
        return False
    head = t[:m.start()]
    if numbers(head) or VAGUE.search(head) or MULTIPLIER.search(head) or head.strip() and \
            parse(Item(head), ctx).changes is not None:
        return False  # 'exact search as in the paper', 'fewer neighbours as in the paper': a value of its own
    for pattern, _ in component.phrases:
        head = re.sub(pattern, " ", head)
    head = re.sub(r"\b(?:the|a|an|its|set|keep|leave|use|value|setting|of|for|to|at|with|is|are)\b", " ", head)
    return not head.strip(" ,;:-—–()")


COMPONENTS = tuple(_baseline_value(c) for c in COMPONENTS)
BY_NAME = {c.name: c for c in COMPONENTS}

# Concepts that two components make up together: local attention sees the segment and the XL cache of the previous
# one, so 'the attention span' or 'how far back the model can look' names both equally (a section that says only
# this is refused as ambiguous, naming both).
SHARED = (
    (r"\battention (?:span|range|horizon|reach)s?\b|\bspan of (?:the )?attention\b|\breceptive field\b|"
     r"\blook-?back\b|\bhow far (?:back )?(?:[\w-]+ ){0,3}?(?:can |may |could |is able to )?(?:look|see|attend|reach)"
     r"\w*|\bhow much (?:past |previous )?context\b|\b(?:visible|effective|available|"
     r"attended|attendable|usable|accessible) context\b|\bcontext (?:that |which )?(?:the model|it|each token|a "
     r"token|attention|local attention) (?:sees|can see|has|attends to|can attend to|looks at)\b|\bcontext "
     r"(?:visible|available|accessible) to\b", ("segment", "xl_cache"), 3,
     "local attention sees the segment and the cached previous segment"),
    (r"\bcontext\b", ("segment", "xl_cache"), 1, "local attention sees the segment and the cached previous segment"),
)


def names_component(text: str) -> bool:
    """Whether `text` names a component by one of its defining or strong phrases ('Segment length', 'Neighbours
    per query', 'Memory size (entries per head)')."""
    t = re.sub(r"\s+", " ", text.lower())
    return any(weight >= 2 and re.search(pattern, t) for c in COMPONENTS for pattern, weight in c.phrases)


def listing() -> str:
    return "; ".join(f"{c.name} ({c.label})" for c in COMPONENTS)
