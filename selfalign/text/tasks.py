"""What a task asks for (asks()): the task verb, the output a writing verb names, a format, a target language and
the items of a list, read from the instruction (the text before its input). Near-duplicate detection
(selfalign/text/neardup.py) keeps apart two seed tasks on one subject that each ask for something the other
does not ("find the offending phrase" / "classify the sentence", JSON / a table, into French / into German).
"""

from __future__ import annotations

import re
import unicodedata

from selfalign.text.normalize import _STOP, _stem
from selfalign.text.normalize import NUMBER_WORDS as _NUMBER_WORDS


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
