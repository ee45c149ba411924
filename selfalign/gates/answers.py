"""Rules for what small models get wrong in an answer: a numbered list that is not the one asked for, the
thing asked for missing (code, a poem), promised parts not given, the thoughts' voice ("I should explain",
"the user asks"), an assistant that speaks as a person, and a short answer that mostly says one thing over.
`TextGates` calls each of them after the rules of `selfalign.gates.text`, whose word and list helpers they use.
"""

from __future__ import annotations

import re

from selfalign.gates.text import _ASKED, _SENTENCE, items_given, mask_code, refusal, word_count, words
from selfalign.text.normalize import NUMBER_WORDS

_MARK = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)](?=\s|$)")


def numbered_items(answer: str) -> list[str]:
    """The items of the answer's numbered list, 1, 2, 3... in order (inline or one a line), each the text up to
    the next marker of the list; an item may be empty ("4. 5. ..."). [] when there is no list of two or more."""
    text = mask_code(answer)
    marks, want = [], 1
    for m in _MARK.finditer(text):
        if int(m.group(1)) == want:
            marks.append(m)
            want += 1
    if len(marks) < 2:
        return []
    ends = [m.start() for m in marks[1:]] + [len(text)]
    # an item ends at the next marker or at a paragraph break (text after the list, or a second list)
    return [re.split(r"\n[ \t]*\n", text[m.end(): e].strip())[0] for m, e in zip(marks, ends, strict=True)]


def _content(item: str) -> set[str]:
    return {w for w in words(item) if w not in _STOP and (len(w) > 1 or w.isdigit())}


def list_defect(query: str, answer: str) -> str | None:
    """A numbered list that is not the list asked for: more items than the query asks for ("three reasons" and
    five are given; fewer is too_short's), an empty item ("4." with nothing after it), or two items that say
    the same thing (the same words, or one item's content words all but one found in another no more than
    2.5 times as long, with five or more of them, or four when the two items open with the same three words: "2. Get a to-do list app to read it ... 3. Get a to-do list app to write it."). Lines alike
    but for their figures ("Week 1: run 3 km", "Week 2: run 4 km") are different items."""
    items = numbered_items(answer)
    if not items:
        return None
    m = _ASKED.search(query)
    if m:
        asked = int(m.group(1)) if m.group(1).isdigit() else int(NUMBER_WORDS[m.group(1).lower()])
        if 2 <= asked < len(items) and not re.search(r"\b(?:at least|or more|more than|\d+\s*(?:-|to)\s*\d+)\b",
                                                      query, re.IGNORECASE):
            return f"{len(items)} items for the {asked} asked for"
    for i, item in enumerate(items, 1):
        if not re.search(r"\w", item):
            return f"item {i} is empty"
    keys = [" ".join(words(x)) for x in items]
    sets = [_content(x) for x in items]
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = sets[i], sets[j]
            same = keys[i] == keys[j] and len(keys[i].split()) >= 3
            small, big = (a, b) if len(a) <= len(b) else (b, a)
            opening = keys[i].split()[:3] == keys[j].split()[:3]
            if any(w.isdigit() for w in a ^ b):
                continue  # items that differ by their figures (a plan's weeks) say different things
            if same or ((len(small) >= 5 or len(small) >= 4 and opening) and len(small - big) <= 1
                        and len(big) <= 2.5 * len(small)):
                return f"items {i + 1} and {j + 1} say the same: {items[j][:60]!r}"
    return None


# -- the thing asked for, missing ---------------------------------------------------------------------
_LANG = (r"python|javascript|js|typescript|java|c\+\+|c#|c|rust|go|golang|ruby|php|bash|shell|powershell|sql|kotlin"
         r"|swift|scala|haskell|perl|lua|julia|matlab|r")
_CODE_ASK = re.compile(
    rf"\b(?:write|implement|code|create|give me|show me|make|build|define)\b[^.?!\n]{{0,40}}?"
    rf"(?:\b(?:{_LANG})\s+(?:function|script|program|class|method|snippet|code|query|loop|one-liner|regex|decorator"
    rf"|generator|module)|\ba (?:function|regex|regular expression)\b(?! (?:of|in|for) (?:my|the|your|a) (?:life|team|party|"
    rf"event|company|body|family|society)))", re.IGNORECASE)
_LOOKS_CODE = re.compile(r"```|`[^`\n]{3,}`|^[ \t]*(?:def|class|function|fn|func|public|private|static|import|from|"
                         r"#include|SELECT|let|const|var|return)\b|=>|\w\([^()\n]*\)\s*[:{]|;\s*$|\breturn\b.*[\w)\]]\s*$"
                         r"|^\s*\w+\s*=\s*\S", re.MULTILINE)
_FORM_ASK = re.compile(
    r"\b(?:write|compose|tell|make up|create|give me)\b[^.?!\n]{0,30}?\b(?:a|an|one|me a|me an)\s+(?:[\w'-]+\s+){0,3}?"
    r"(?:poem|limerick|haiku|sonnet|story|tale|fable|verse|rhyme|song|lullaby|ballad|note|letter)\b"
    r"(?!\s+(?:ideas?|prompts?|titles?|outlines?|plots?|structures?|arcs?|templates?|plans?|checklists?|tips))",
    re.IGNORECASE)


def missing_form(query: str, answer: str) -> str | None:
    """The thing asked for is not there: code asked for ("Write a Python function that ...", "a regex for ...") and
    the answer has no code in it (no code block, no line of code), or a poem, a story or a note asked for and
    the answer is a numbered list of steps or points instead. A decline is not counted here (whether it was
    warranted is the harm classifier's call), nor a query that asks for several pieces ("three haiku") or
    for a plan of one ("story ideas", "an outline")."""
    if refusal(answer, query):
        return None
    if _CODE_ASK.search(query) and not _LOOKS_CODE.search(answer):
        return "code asked for, none given"
    if _FORM_ASK.search(query) and len(numbered_items(answer)) >= 2 \
            and re.match(r"^\W*1[.)]\s", mask_code(answer).lstrip()):
        return f"{_FORM_ASK.search(query).group().split()[-1].lower()} asked for, a numbered list given"
    return None


_PARTS = _ASKED.pattern[_ASKED.pattern.index(r"(?:reasons|"):]  # the nouns of a count: "reasons", "steps", ...
_PROMISED = re.compile(  # the answer's own count: "here are three tips:", "there are 4 main steps"
    r"\b(?:here are|there are|these are|below are|i have|i'?ve got|i'?ll (?:give|share|list|suggest)|let me (?:give|share"
    r"|list)|consider (?:these|the following)|try (?:these|the following)|follow these|(?:the|these) following)\s+"
    r"(?:(?:the|my|some|your|just|about|only)\s+)?(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
    r"\s+(?:[a-z-]+\s+){0,2}?" + _PARTS, re.IGNORECASE)


def incomplete(query: str, answer: str) -> str | None:
    """An answer that stops before it is done although the backend did not cut it: it ends at a colon (the
    list or example it announced never comes), or it announces a count ("here are three tips:") and its list
    gives fewer. Prose without list markers is not counted."""
    text = mask_code(answer).rstrip()
    if text.endswith(":") and not answer.rstrip().endswith("```"):
        return f"stops at a colon: {text.splitlines()[-1].strip()[-60:]!r}"
    m = _PROMISED.search(text)
    if m:
        promised = int(m.group(1)) if m.group(1).isdigit() else int(NUMBER_WORDS[m.group(1).lower()])
        given = items_given(answer[m.end():])
        if 2 <= promised <= 12 and 0 < given < promised:
            return f"promises {promised} {m.group().split()[-1].lower()}, gives {given}"
    return None


# -- the thoughts' voice in the answer: deliberating how to answer, the user in the third person ---------
_DELIBERATE = re.compile(
    r"\bI should (?:only |not |also |first |probably |therefore |then |just )?(?:explain|describe|present|cover|answer"
    r"|list|focus|consider|give|write|provide|be|make sure|ask|keep|stay|avoid|put|use|include|offer|tell|suggest"
    r"|respond|reply)\b"
    r"|\bthe user(?:'s)? (?:asks|asked|is asking|wants|wanted|needs|is looking for|is going to|seems|question|request)",
    re.IGNORECASE)


def deliberates(query: str, answer: str) -> str | None:
    """The answer thinks aloud as the thoughts do: it weighs what it should say ("I should explain ...",
    "I should only write one") or speaks of "the user" in the third person ("The user asks ..."). An answer
    talks to the user, and says what it has to say. Not counted: a query about users (software, "user
    stories"), a piece in someone's voice the query asks for, quoted words, and a hedge ("I should mention
    that ...", "I should note ...")."""
    text = _QUOTED.sub(lambda m: " " * len(m.group()), mask_code(answer))
    for m in _DELIBERATE.finditer(text):
        said = m.group().lower()
        if said.startswith("the user") and re.search(r"\busers?\b", query, re.IGNORECASE):
            continue
        if said.startswith("i should") and _VOICE_ASK.search(query):
            continue
        return f"thinks aloud {m.group()!r}"
    return None


# -- an assistant that speaks as a person --------------------------------------------------------------
_HUMAN = re.compile(
    r"\bmy (?:wife|husband|partner|boyfriend|girlfriend|kids?|children|son|daughter|mom|mum|dad|mother|father|parents"
    r"|brother|sister|siblings?|family|grand(?:ma|pa|mother|father|parents|children)|baby|dog|cat|puppy|kitten|pets?"
    r"|boss|coworkers?|colleagues?|neighbou?rs?|house|apartment|flat|car|garden|body|knees?|childhood|hometown"
    r"|salary|paycheck|wedding|doctor)\b"
    r"|\bi(?:'ve| have) been (?:injured|married|divorced|pregnant|running|working|living|cooking|teaching|playing|training"
    r"|painting|saving|studying)\b[^.!?\n]{0,40}?\b(?:for (?:years|decades|months|a (?:long|while)|\d+ \w+)|since)\b"
    r"|\bi(?:'ve| have) (?:never|always) (?:played|been to|seen|tried|eaten|owned|met|lived|worked|driven|cooked|run)\b"
    r"|\bwhen i was (?:a |an |in )?(?:kid|child|young|little|boy|girl|teenager|student|younger|school|college)\b"
    r"|\bi (?:grew up|was born|am originally from|'m originally from|got married|went to (?:school|college|university))\b"
    r"|\bi (?:live|lived) (?:in|on|near) (?:a|an|the|[A-Z])"
    r"|\bi(?:'ve| have)? (?:injured|broke|hurt|sprained) my\b", re.IGNORECASE)
# a piece of writing in someone's voice, or a role asked for: its "I" is not the assistant's
_VOICE_ASK = re.compile(
    r"\b(?:story|tale|poem|verse|song|lyrics|limerick|haiku|sonnet|rhyme|ballad|joke|riddle|letter|note|e-?mail|message|speech|toast|diary|journal|bio(?:graphy)?|essay"
    r"|post|tweet|caption|review|dialogue|monologue|script|scene|eulogy|cover letter|statement|example sentence|"
    r"first[- ]person|pretend|imagine|role[- ]?play|act as|as if you were|you are a|in the voice|in character|translate)",
    re.IGNORECASE)
_QUOTED = re.compile(r"\"[^\"\n]{0,300}\"|“[^”\n]{0,300}”|«[^»\n]{0,300}»")


def human_voice(query: str, answer: str) -> str | None:
    """The assistant speaks as a person, or as the user: it claims a family, a pet, a body, a home or a past of its
    own ("I've been running for years and I've been injured", "My dog is a good dog", "when I was a kid").
    Not counted: a piece of writing or a role the query asks for (a story, a letter, a note, "pretend you
    are ..."), and quoted words (an example sentence, a script for the user to say)."""
    if _VOICE_ASK.search(query):
        return None
    text = _QUOTED.sub(lambda m: " " * len(m.group()), mask_code(answer))
    if m := _HUMAN.search(text):
        return f"speaks as a person: {m.group()!r}"
    return None


# verse, where a refrain or a chorus says a line over on purpose
_VERSE = re.compile(r"\b(?:song|poem|lyric|chant|rap|chorus|refrain|rhyme|lullaby|hymn|anthem|jingle|cheer|mantra|verse"
                    r"|tongue[- ]twister|ballad|sonnet|haiku|limerick|carol|shanty|villanelle)", re.IGNORECASE)
_CLAUSE = re.compile(r"[,;:.!?…。！？；，\n]+")
_STOP = frozenset("""a an the and or but of to in on for with about as at by from into is are was were be been being it its
this that these those you your i me my we our they their he she his her him them what which who how why when where
will would can could should may might must do does did have has had not no so if then than there here also just very
more most some any all each one can't don't won't it's that's you're i'm""".split())


def self_repeats(query: str, answer: str, short: int = 80) -> str | None:
    """An answer that mostly says the same thing over: a short one (up to `short` words) that says a sentence of
    four words or more twice, or whose repeated clauses (a clause said again, back to back or not) make up at
    least 40% of its words, or any answer whose content words mostly repeat (at most half of them distinct, with
    12 or more, figures counted: "1. Create a song about love. 2. Create a song about rain. 3. ..."). Verse, asked
    for or laid out in short lines that are not a list, is left to the loop rule: a chorus or a refrain repeats on
    purpose."""
    text = mask_code(answer)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if _VERSE.search(query) or (len(lines) >= 3 and sorted(word_count(ln) for ln in lines)[len(lines) // 2] <= 16
                                and not re.match(r"^\W*(?:\d{1,2}[.)]|[-*•])\s", lines[0])):
        return None  # verse, asked for or laid out in short lines (a list is not verse)
    n = word_count(text)
    if n <= short:
        said: set[str] = set()
        for sentence in _SENTENCE.split(text):  # a whole sentence said twice: a stutter a reader notices
            key = " ".join(re.findall(r"[\w']+", sentence.lower()))
            if key.count(" ") >= 3 and key in said:
                return f"a sentence said twice in {n:.0f} words: {key[:60]!r}"
            said.add(key)
        seen: set[str] = set()
        repeated: list[str] = []
        for clause in _CLAUSE.split(text):
            key = " ".join(re.sub(r"^\W*(?:\d+[.)]\s*)?", "", clause).lower().split())
            if len(words(key)) < 2:
                continue
            if key in seen:
                repeated.append(key)
            seen.add(key)
        if len(repeated) >= 2 and sum(word_count(c) for c in repeated) >= 0.4 * n:
            return f"{len(repeated)} clauses said again in {n:.0f} words, e.g. {repeated[0][:60]!r}"
    # figures count: a plan whose weeks differ by their numbers says something new in each line
    content = [w for w in words(text) if w not in _STOP and (len(w) > 1 or w.isdigit())]
    if len(content) >= 12 and len(set(content)) * 2 <= len(content):
        return f"{len(set(content))} distinct of {len(content)} content words"
    return None
