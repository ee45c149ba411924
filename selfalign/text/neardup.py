"""Lexical near duplicates (MinHash LSH over word shingles, with rensa) and the second look every candidate
pair gets before it is called a duplicate.

Short prompts move a lot in embedding space when one word changes, so the semantic pass alone misses
copies with a word inserted, deleted or swapped; word shingles catch those whatever the embedding says.
Both passes also propose pairs that look alike but mean different things ("What is C++?" / "What is C#?",
"12 times 13" / "12 times 14", "can fly" / "cannot fly", "Fahrenheit to Celsius" / the reverse): the second
look compares numbers, negations, rare tokens and directions, and keeps both when they differ. Seed tasks on
one subject that ask for another output ("find the offending phrase" / "classify the sentence", another list of
fields, JSON / a table, into French / into German, a poem / a limerick) are kept apart too (asks()).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from selfalign.text.normalize import NUMBER_WORDS as _NUMBER_WORDS
from selfalign.text.normalize import TOKEN as _TOKEN
from selfalign.text.normalize import tokens

NUM_PERM = 128
BANDS = 32  # 32 bands of 4 rows: pairs with Jaccard 0.5 are candidates with probability 0.87, 0.6 with 0.99
SEED = 7

_NEGATION = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "can't", "won't",
             "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "shouldn't", "wouldn't",
             "couldn't", "mustn't", "haven't", "hasn't", "hadn't", "n't"}
_DIRECTION = {"to", "into", "from", "than", "vs", "versus", "over", "before", "after", "against"}
# opposites: a pair of prompts that differ by one of these asks for opposite things
_OPPOSITES = [tuple(p.split("/")) for p in """increase/decrease raise/lower rise/fall grow/shrink gain/lose win/lose
before/after above/below over/under up/down in/out inside/outside top/bottom front/back left/right north/south
east/west early/late first/last start/end begin/end open/close push/pull buy/sell import/export input/output
add/remove add/subtract plus/minus include/exclude accept/reject allow/forbid enable/disable on/off
hot/cold warm/cool heat/cool wet/dry soft/hard light/dark light/heavy fast/slow quick/slow high/low tall/short
long/short big/small large/small wide/narrow thick/thin deep/shallow full/empty strong/weak rich/poor
cheap/expensive young/old new/old old/modern easy/hard easy/difficult simple/complex safe/dangerous
healthy/unhealthy good/bad best/worst better/worse more/less most/least many/few maximum/minimum max/min
positive/negative true/false right/wrong correct/incorrect formal/informal public/private legal/illegal
male/female man/woman boy/girl day/night morning/evening summer/winter spring/autumn spring/fall past/future
ascending/descending advantage/disadvantage advantages/disadvantages pros/cons benefit/drawback
agree/disagree like/dislike love/hate friend/enemy give/take send/receive teach/learn lend/borrow
attack/defend win/loss profit/loss credit/debit income/expense asset/liability import/export
encrypt/decrypt encode/decode compress/decompress upload/download login/logout sign-in/sign-out
enter/exit arrive/leave arrival/departure inbound/outbound internal/external major/minor
odd/even inner/outer upper/lower lowercase/uppercase ascend/descend expand/collapse zoom-in/zoom-out
freeze/thaw melt/freeze fresh/frozen raw/cooked sweet/sour sweet/savory sweet/savoury loud/quiet
noisy/quiet busy/quiet rural/urban indoor/outdoor indoors/outdoors online/offline wireless/wired
analog/digital manual/automatic vertical/horizontal always/never everything/nothing all/none
present/absent pass/fail success/failure succeed/fail include/omit visible/invisible possible/impossible
likely/unlikely read/write reading/writing get/set load/save load/store save/delete create/delete
create/destroy insert/delete show/hide start/stop push/pop parent/child client/server source/destination
request/response sender/receiver buyer/seller employer/employee teacher/student question/answer cause/effect
multiply/divide multiplication/division addition/subtraction numerator/denominator row/column rows/columns
he/she his/her him/her largest/smallest biggest/smallest longest/shortest oldest/youngest oldest/newest
speaking/listening""".split()]
_OPPOSITE = {frozenset(p) for p in _OPPOSITES if len(p) == 2}
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "anti")

_STOP = set("""a an the and or of in on at by for with about as is are was were be been do does did can could
would should will shall may might must i me my we our you your it its this that these those what which who how
why when where please just really actually some any""".split())


def shingles(toks: list[str]) -> list[str]:
    """Words and word pairs: one inserted, deleted or swapped word in ten leaves Jaccard near 0.8."""
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]


@dataclass(frozen=True)
class Look:
    """What the second look compares, kept per text (small: no text held in memory)."""

    numbers: frozenset[str]
    negations: int
    rare: frozenset[str]  # names and symbols: capitalised inside a sentence, ALL CAPS, or with + # .
    directed: frozenset[tuple[str, str]]  # (x, y) for "x to y", "x than y", ...
    words: frozenset[str]  # every token, for the overlap and to see whether the other text has a rare one too
    asks: frozenset[str] = frozenset()  # what the instruction asks for: task verbs, outputs, formats (asks())
    languages: frozenset[str] = frozenset()  # the languages it names (natural and programming)
    items: tuple[frozenset[str], ...] = ()  # the items of its longest list ("the date, time and room")


_UNIT = re.compile(r"^(\d+(?:[.,]\d+)*)(?:st|nd|rd|th|k|km)$")  # 5K, 5km, 10th; 6am/6pm, 5mg/5g stay apart
_PRONOUN_BEFORE_ONE = frozenset("each which this that the any every no some another a little".split())


def _number_word(x: str) -> str | None:
    """The number word `x` is ("sixes", "tens" too; not "ones"), or None."""
    for w in (x, x.removesuffix("es"), x.removesuffix("s")):
        if w in _NUMBER_WORDS and (w == x or w != "one"):  # "ones" is not a count
            return w
    return None


def look(text: str) -> Look:
    text = unicodedata.normalize("NFKC", text).replace("’", "'")  # as tokens() reads it
    raw = _TOKEN.findall(text)
    toks = [t.casefold() for t in raw]
    parts = [x for t in toks for x in re.split(r"-(?=\w)", t)]  # "3-day", "ten-hour"
    # "5K" / "5 km" and "10th" are their figure ("6am" / "6pm" are not one figure); "one" after "each", "which",
    # "the", ... or at the end ("write one?") is a pronoun, not a count
    numbers = frozenset(_UNIT.sub(r"\1", x) if x[:1].isdigit() else _NUMBER_WORDS[w] for k, x in enumerate(parts)
                        if x[:1].isdigit() or ((w := _number_word(x)) and not (
                            w == "one" and (k + 1 == len(parts) or (k and parts[k - 1] in _PRONOUN_BEFORE_ONE)))))
    numbers |= {"-" + m for m in re.findall(r"(?<![\w.])-(\d+(?:\.\d+)?)", text)}  # -5 is not 5
    negations = sum(t in _NEGATION or t.endswith("n't") for t in toks)
    rare = set()
    sentence_start = True
    for r, t in zip(raw, toks, strict=True):
        if (re.search(r"[+#.]", r) and not r[0].isdigit()) or not any(c.isalnum() for c in r) or (r[:1].isupper() and not sentence_start and t not in _STOP
                                                             and not t.startswith("i'")) \
                or (len(r) > 1 and r.isupper() and r.isalpha()):
            rare.add(t.removesuffix("'s"))
        sentence_start = False
    for m in re.finditer(r"[.!?]\s+(\S+)", text):  # words that open a later sentence are not names either
        rare.discard(m.group(1).casefold().strip("\"'"))
    directed = set()
    for k, t in enumerate(toks):  # the two content words on each side of "to", "than", "from", ...
        if t in _DIRECTION and 0 < k < len(toks) - 1:
            before = [x for x in reversed(toks[:k]) if x not in _STOP and x not in _DIRECTION][:2]
            after = [x for x in toks[k + 1:] if x not in _STOP and x not in _DIRECTION][:2]
            directed.update((x, y) for x in before for y in after if x != y)
    return Look(numbers, negations, frozenset(rare), frozenset(directed), frozenset(t.removesuffix("'s") for t in toks),
                *asks(text))


# cosine a pair differing in one content word needs: synonym swaps kept 0.83-0.99 of it (2% under 0.90),
# swaps for another thing of the same kind at most 0.86 (benchmarks/dedup_edits.py)
SUBSTITUTION_BAR = 0.87
LOOKALIKE = 0.4  # share of tokens two texts have in common to be judged as look-alikes


def _stem(w: str) -> str:
    for suffix, repl in (("iest", "y"), ("ier", "y"), ("est", ""), ("er", ""), ("ies", "y"), ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)] + repl
    return w


def _variant(x: str, y: str) -> bool:
    """One word in two spellings or forms (colour/color, bake/baking, tooth/teeth is not caught)."""
    n = 0
    for cx, cy in zip(x, y):
        if cx != cy:
            break
        n += 1
    return n >= 4 and n >= 0.6 * min(len(x), len(y)) or _stem(x) == _stem(y)


def _opposite(x: str, y: str) -> bool:
    if frozenset((x, y)) in _OPPOSITE or frozenset((_stem(x), _stem(y))) in _OPPOSITE:
        return True
    return any((x == p + y and len(y) >= 4) or (y == p + x and len(x) >= 4) for p in _NEGATING_PREFIXES)


def differs(a: Look, b: Look, cosine: float | None = None, bar: float = SUBSTITUTION_BAR) -> str | None:
    """Why two texts that look alike mean different things, or None when nothing tells them apart.

    Numbers are compared when both texts have some (a paraphrase may write "a week" for "7 days"): look-alikes
    must have the same ones; a paraphrase may leave out or spell differently some of its figures ("two sixes
    with two dice" / "a pair of dice both showing a six"), so it differs only when each text has a figure the
    other lacks ("12 times 13" / "multiply 12 by 14"). The other checks apply to look-alikes, texts sharing at
    least LOOKALIKE of their tokens: a paraphrase words things differently and is judged by its cosine alone. `cosine` (when known) decides a pair that
    differs in one content word only: a synonym keeps the sentence within SUBSTITUTION_BAR, another thing
    of the same kind ("cats"/"dogs", "tea"/"coffee") moves it further; without a cosine such a pair is
    kept apart. Whatever the overlap, two instructions that each name an output, a target language or list
    items the other does not ask for different things (_asked_differently)."""
    union = a.words | b.words
    if not union:
        return "no words to compare"  # emoji or symbols only: only an exact copy is a duplicate
    alike = len(a.words & b.words) / len(union) >= LOOKALIKE
    if a.numbers and b.numbers and a.numbers != b.numbers and (
            alike or (a.numbers - b.numbers and b.numbers - a.numbers)):
        return f"numbers differ ({' '.join(sorted(a.numbers ^ b.numbers))})"
    if why := _asked_differently(a, b):
        return why
    if not alike:
        return None
    if a.numbers != b.numbers:
        return f"numbers differ ({' '.join(sorted(a.numbers ^ b.numbers))})"
    if (a.negations > 0) != (b.negations > 0) or abs(a.negations - b.negations) % 2:
        return "negation differs"
    odd = sorted(t for t in a.rare | b.rare if (t in a.words) != (t in b.words))
    if odd:
        return f"names or symbols differ ({' '.join(odd)})"
    if any((y, x) in b.directed and (x, y) not in b.directed for x, y in a.directed):
        return "direction differs"
    only_a, only_b = a.words - b.words - _STOP, b.words - a.words - _STOP
    for x in only_a:
        for y in only_b:
            if _opposite(x, y):
                return f"opposites ({x} / {y})"
    if 1 <= len(only_a) == len(only_b) <= 2 and (cosine is None or cosine < bar):
        swapped = [(x, y) for x in sorted(only_a) for y in sorted(only_b) if not _variant(x, y)]
        if len(swapped) == len(only_a) ** 2:  # no word on one side is a form of one on the other
            pairs = ", ".join(f"{x} / {y}" for x, y in zip(sorted(only_a), sorted(only_b)))
            return (f"{'one word differs' if len(only_a) == 1 else 'two words differ'} ({pairs}"
                    f"{'' if cosine is None else f', cosine {cosine:.2f}'})")
    return None


# ---- what a task asks for ----------------------------------------------------------------------------------
# Seed tasks on one subject often ask for another output: find the offending phrase / classify the sentence /
# rewrite it, extract these fields / those, as JSON / as a table, into French / into German, a poem / a limerick.
# The sentence embedding sees the shared subject (and the shared input text) and calls them duplicates. The
# instruction (the text before its input: first line, up to a colon, quotes left out) names what it asks for:
# a task verb in the imperative ("Summarize ...", "can you classify ..."), the thing a writing verb asks for
# ("Write a limerick", "Give a one-sentence summary", "as a table"), a target language, a list of fields.
# A rewording keeps what it asks for, or leaves some of it implicit; so two tasks differ only when EACH names
# something the other does not (one naming a format the other leaves open is not a difference).
def _lexicon(spec: str) -> dict[str, str]:
    """'label: word word ...' lines -> {word: label}."""
    out = {}
    for line in spec.strip().splitlines():
        label, words = line.split(":")
        out.update({w: label.strip() for w in [label.strip(), *words.split()]})
    return out


# imperative task verbs, by the output they ask for (synonyms share a label: a rewording may swap them)
_TASK_VERBS = _lexicon("""
extract: extracts parse pull
classify: classifies categorize categorise label tag decide verify
find: finds identify detect spot locate point highlight underline
summarize: summarise condense recap shorten outline
translate: translates
rewrite: rephrase paraphrase reword restate
correct: fix proofread debug
explain: describe define clarify
answer: answers
reply: respond
compare: contrast distinguish
sort: rank order arrange alphabetize alphabetise
count: tally
rate: score grade evaluate assess
plan: schedule
calculate: compute solve estimate
predict: forecast
code: implement program
combine: merge join
continue: complete finish
""")
# nouns naming the output, when a writing verb asks for them or after "as a" / "in" / "into"
_OUTPUTS = _lexicon("""
poem: poems poetry verse verses
limerick: limericks
haiku: haikus
sonnet: sonnets
ballad: ballads ode odes
song: songs lyrics lullaby lullabies jingle anthem
story: stories tale tales fable fables narrative anecdote
book: books
screenplay: scene script screenplays
dialogue: dialog conversation
joke: jokes pun puns
riddle: riddles
email: emails e-mail mail
letter: letters
sms: texting
note: notes
card: cards
tweet: tweets
post: posts
release: press
ad: ads advert advertisement commercial
slogan: slogans tagline motto
explain: description descriptions explanation explanations
summarize: summary summaries
translate: translation translations
plan: plans itinerary schedule timetable agenda
recipe: recipes
list: lists checklist
name: names title titles headline headlines
quiz: question questions quizzes questionnaire test tests exam exams
essay: essays
article: articles blog
introduction: intro
conclusion: conclusions
speech: speeches toast
eulogy: eulogies
obituary: obituaries
review: reviews
reply: replies response
report: reports memo
proposal: proposals
bio: biography
quote: quotes quotation
faq: faqs
code: function functions program snippet class query queries
regex: regexp expression
docs: docstring docstrings documentation comments comment
diagram: chart graph flowchart
logo: logos
invitation: invite invitations
argue: argument arguments
""")
# formats: named anywhere in the instruction
_FORMATS = _lexicon("""
json: jsonl
csv: tsv
yaml: yml
xml: xml
html: html
markdown: md
latex: tex
table: tables tabular
bullet: bullets bulleted bullet-point
numbered: enumerated
""")
# sentence/paragraph/word/line counts as a format after a count or "as a" / "in a" ("in one paragraph")
_LENGTHS = _lexicon("""
sentence: sentences
paragraph: paragraphs
line: lines
word: words
""")
_LANGUAGES = _lexicon("""
english: english
french: french
german: german
spanish: spanish
italian: italian
portuguese: portuguese
dutch: dutch
swedish: swedish
norwegian: norwegian
danish: danish
finnish: finnish
polish: polish
czech: czech
russian: russian
ukrainian: ukrainian
greek: greek
turkish: turkish
arabic: arabic
hebrew: hebrew
hindi: hindi
bengali: bengali
urdu: urdu
chinese: mandarin
cantonese: cantonese
japanese: japanese
korean: korean
vietnamese: vietnamese
thai: thai
indonesian: indonesian
swahili: swahili
latin: latin
persian: farsi
hungarian: hungarian
romanian: romanian
welsh: welsh
python: python3
javascript: js node.js
typescript: ts
java: java
c++: cpp
c#: csharp
rust: rust
golang: golang
ruby: ruby
php: php
swift: swift
kotlin: kotlin
scala: scala
haskell: haskell
sql: sql postgresql mysql sqlite
bash: sh zsh
powershell: powershell
perl: perl
lua: lua
matlab: matlab
julia: julia
css: css
mermaid: mermaid
""")
_WRITE = frozenset("""write writes compose draft create generate make give suggest provide produce design prepare propose
invent add build craft tell come turn convert format present return output put offer devise list name
brainstorm recommend""".split())
_IMPERATIVE_AFTER = frozenset("and or then also please kindly now just first briefly quickly simply you me , ;".split())
_SKIP = frozenset("""a an the this that these those some any each every all one two three four five six seven eight
nine ten its it their his her our my your me us them up with of short long brief new single simple little quick""".split())
_FUNCTION = _STOP | _SKIP | frozenset("""from into onto to for in on at by as about than then each every their its his
her them they he she it his own who whom whose while during after before so such other another all both one not
how many much mentioned given following below above out up""".split())
_POSSESSIVE = frozenset("its their his her my your our whose".split())
_THIS = frozenset("this these that those following given above below".split())  # names the input, not the output
_ANSWER = frozenset("answer answers reply respond".split())
_BARE = frozenset("with in using only briefly by as yes no".split())  # "answer with one label": how, not what
# nouns that also name a part of the input ("the person's name", "job title", "the LinkedIn summary"): an output
# only as "a name for ...", "a summary of ..."
_OF_FOR = frozenset("name summarize explain".split())
_INPUT_COLON = re.compile(r":(?=\s|$)")
_QUOTED = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|\"[^\"\n]*\"|“[^”\n]*”|‘[^’\n]*’")


def instruction(text: str) -> str:
    """The part of a prompt that says what to do: the first line, up to a colon that opens its input (when three or
    more words come before it), quoted text left out."""
    first = unicodedata.normalize("NFKC", text).strip().split("\n", 1)[0]
    m = _INPUT_COLON.search(first)
    if m and len(first[: m.start()].split()) >= 3:
        first = first[: m.start()]
    return _QUOTED.sub(" ", first)


def asks(text: str) -> tuple[frozenset[str], frozenset[str], tuple[frozenset[str], ...]]:
    """(what the instruction asks for, the languages it names, the items of the longest list in it)."""
    instr = instruction(text)
    toks = [p for t in re.findall(r"[\w'+#.-]*[\w+#]|[,;.!?]", instr.casefold())
            for p in (re.split(r"-(?=\w)", t) if t not in _LANGUAGES else [t])]
    out, langs = set(), set()
    start = True  # at the start of a sentence
    write = -99  # where the last writing verb (or "as a", "into") was
    counted = -99  # where the last length with a count was ("five-line", "in two sentences")
    for k, t in enumerate(toks):
        if t in ".!?":
            start, write = True, -99
            continue
        prev, after = toks[k - 1] if k else "", toks[k + 1] if k + 1 < len(toks) else ""
        imperative = start or prev in _IMPERATIVE_AFTER
        start = False
        if t in _LANGUAGES:
            langs.add(_LANGUAGES[t])
        if t in _FORMATS:
            out.add(_FORMATS[t])
        if t in _LENGTHS and (prev in _NUMBER_WORDS or prev[:1].isdigit() or prev in ("single", "short")
                              or (prev in ("a", "an") and k > 1 and toks[k - 2] in ("as", "in"))):
            out.add(_LENGTHS[t])
            counted = k
        if imperative and t in _TASK_VERBS and not (t in _ANSWER and after in _BARE):
            out.add(_TASK_VERBS[t])
            write = -99  # what it names next is its input ("answer the question"), not its output
            continue
        if (imperative and t in _WRITE) or t in ("as", "into") or (t == "in" and after in ("a", "an", "the")):
            write = k
            continue
        if t == "order" and prev == "in" and after == "of":  # "in order of size"
            out.add("sort")
        if t == "message" and prev == "text":
            out.add("sms")
        if t in _OUTPUTS and k - write <= 8 and not _THIS & set(toks[max(write, k - 3):k]) and prev not in _POSSESSIVE \
                and not prev.endswith("'s") and (_OUTPUTS[t] not in _OF_FOR or after in ("of", "for") or counted >= k - 3):
            if counted >= k - 4:  # "a three-line 5-7-5 poem" describes a form: neither is what it is called
                out.discard(_LENGTHS[toks[counted]])
            else:
                out.add(_OUTPUTS[t])
            write = k  # "a birthday card message": both
    return frozenset(out), frozenset(langs), _list_items(instr)


def _list_items(instr: str) -> tuple[frozenset[str], ...]:
    """The items of the longest list in the instruction ("the date, time and room of the meeting"), each as its
    stemmed content words; () when it has none of two or more items."""
    best: list[frozenset[str]] = []
    for clause in re.split(r"[.;?!](?:\s|$)", instr):
        parts = re.split(r"\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+", clause)
        if len(parts) < 2:
            continue
        items = []
        for k, part in enumerate(parts):
            # words that name fields, not values: no figures, no names ("22 Baker Road, Bristol" is an input)
            words = [w.casefold() for i, w in enumerate(re.findall(r"[\w'-]+", part))
                     if not any(c.isdigit() for c in w) and not (w[:1].isupper() and not w.isupper() and (i or k))]
            if k == 0:  # the item is the end of the first part: "extract the [company name]"
                if words and words[0] in _FUNCTION:  # "From this email, extract ...": an opening, not an item
                    continue
                if words and (words[0] in _TASK_VERBS or words[0] in _WRITE):
                    words = words[1:]
                tail = []
                for w in reversed(words):
                    if w in _FUNCTION:
                        break
                    tail.append(w)
                words = tail[::-1]
            else:  # the start of the others: "[room] of the meeting from this email", "list its [title]"
                while words and (words[0] in _FUNCTION or words[0] in _TASK_VERBS or words[0] in _WRITE):
                    words.pop(0)
                words = words[: next((i for i, w in enumerate(words) if w in _FUNCTION), len(words))]
            item = frozenset(_stem(w) for w in words if not w.endswith("'s") and w not in _FUNCTION)
            if item:
                items.append(item)
        if len(items) > len(best):
            best = items
    return tuple(best) if len(best) >= 2 else ()


def _asked_differently(a: Look, b: Look) -> str | None:
    """Why two instructions ask for different outputs, or None: each names an output, a language or list items
    the other does not."""
    if a.asks - b.asks and b.asks - a.asks:
        return f"asks for another output ({' '.join(sorted(a.asks - b.asks))} / {' '.join(sorted(b.asks - a.asks))})"
    if a.languages - b.languages and b.languages - a.languages:
        return (f"another language ({' '.join(sorted(a.languages - b.languages))} / "
                f"{' '.join(sorted(b.languages - a.languages))})")
    # lists are compared between instructions that ask for the same thing ("extract ..."), where they name the fields
    if a.asks and a.asks == b.asks and a.items and b.items and max(len(a.items), len(b.items)) >= 3:
        only_a = [x for x in a.items if not any(x & y for y in b.items)]
        only_b = [y for y in b.items if not any(x & y for x in a.items)]
        if only_a and only_b and len(only_a) + len(only_b) >= 3:  # one synonym swapped in a list is a rewording
            return (f"another list ({', '.join(' '.join(sorted(x)) for x in only_a)} / "
                    f"{', '.join(' '.join(sorted(y)) for y in only_b)})")
    return None


class MinHashIndex:
    """MinHash signatures (rensa) of every row added, and an LSH index over them: each new row's earlier
    candidates with their estimated Jaccard similarity. Memory: NUM_PERM 4-byte values a row."""

    def __init__(self, threshold: float = 0.7, num_perm: int = NUM_PERM, bands: int = BANDS):
        from rensa import RMinHashLSH

        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = RMinHashLSH(threshold=threshold, num_perm=num_perm, num_bands=bands)
        self.sigs = np.zeros((1024, num_perm), dtype=np.uint32)
        self.size = 0

    def signature(self, text: str):  # noqa: ANN201 - rensa.RMinHash
        from rensa import RMinHash

        m = RMinHash(num_perm=self.num_perm, seed=SEED)
        m.update(shingles(tokens(text)) or [text])
        return m

    def add(self, m, search: bool = True) -> list[tuple[int, float]]:  # noqa: ANN001 - rensa.RMinHash
        """Add the row with signature `m` (from `signature`); return the earlier rows at or above the threshold."""
        sig = np.asarray(m.digest(), dtype=np.uint32)
        found = self.match(m, sig) if search and self.size else []
        if self.size == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.zeros_like(self.sigs)])
        self.sigs[self.size] = sig
        self.lsh.insert(self.size, m)
        self.size += 1
        return found

    def match(self, m, sig: np.ndarray | None = None) -> list[tuple[int, float]]:  # noqa: ANN001
        """Rows whose estimated Jaccard with the signature `m` is at or above the threshold."""
        sig = np.asarray(m.digest(), dtype=np.uint32) if sig is None else sig
        cands = [c for c in self.lsh.query(m) if c < self.size]
        if not cands:
            return []
        est = (self.sigs[cands] == sig).mean(axis=1)
        return [(int(c), float(j)) for c, j in zip(cands, est, strict=True) if j >= self.threshold]
