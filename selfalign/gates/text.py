"""Surface rules on one answer: template debris, method leaks (citations real or made up, the thoughts' voice),
exemplar copies, refusals and pleas of incapacity, loops and repeats, promised parts not given, lists of the
wrong length or with repeated items, code or a piece of writing asked for and not given, an assistant that
speaks as a person, length.

Each rule is a plain function of text (and the query where the rule depends on what was asked), written
to be general: the labelled set in benchmarks/data/quality measures them, and a separate set that is not
in this repository measures them too.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from selfalign.text.normalize import NUMBER_WORDS

# -- spans that are content, not the model's own voice ----------------------------------------------
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)


def mask_code(text: str) -> str:
    """`text` with code blocks and inline code blanked (same length), so rules skip quoted markup."""
    return _CODE.sub(lambda m: " " * len(m.group()), text)


# -- words and scripts ------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*|\d+(?:[.,]\d+)*", re.UNICODE)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF
            or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F)


def word_count(text: str) -> float:
    """Words, with scripts written without spaces counted at 1.5 characters a word (about a token each)."""
    cjk = sum(1 for ch in text if is_cjk(ch))
    rest = "".join(" " if is_cjk(ch) else ch for ch in text)
    return len(_WORD.findall(rest)) + cjk / 1.5


_ANY_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]")


def words(text: str) -> list[str]:
    """Lower-cased words; each CJK character is a word of its own."""
    if not _ANY_CJK.search(text):  # the common case, without a look at each character
        return _WORD.findall(text.lower())
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if any(is_cjk(ch) for ch in w):
            out.extend(ch for ch in w if not ch.isspace())
        else:
            out.append(w)
    return out


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)}


# -- template and special-token debris --------------------------------------------------------------
_SPECIAL = re.compile(
    r"</s>|<s>|<\|[A-Za-z_][\w|]{1,30}\|>|\[/?INST\]|<</?SYS>>|<(?:start_of_turn|end_of_turn|bos|eos)>"
    r"|###\s*(?:Response|Instruction|Input|Human|Assistant|User|System)\b\s*:?", re.IGNORECASE)
_ROLE = r"(?:User|Human|Assistant|AI|Bot|System)"
_ASIDE = r"(?:[ \t]*\([^)\n]{1,30}\))?"  # "User (follow-up):"
# a speaker turn in decoration (**User:**, [User]:, <user>) or plain and capitalised ("User:", "Human:"),
# at a line start or inline (a lower-case "user:" in running text is prose)
_DECORATED = re.compile(rf"(?:\*\*|__)[ \t]*{_ROLE}{_ASIDE}[ \t]*:?[ \t]*(?:\*\*|__)[ \t]*:?|\[{_ROLE}\][ \t]*:?"
                        rf"|<{_ROLE}>", re.IGNORECASE)
_PLAIN = re.compile(rf"(?<![\w-])(?:User|Human|Assistant){_ASIDE}[ \t]*:(?=\s|$)")


def find_debris(text: str, query: str = "") -> re.Match[str] | None:
    """The first template token or hallucinated speaker turn outside code, unless the query names it."""
    masked = mask_code(text)
    q = query.lower()
    hits = [m for rx in (_SPECIAL, _DECORATED, _PLAIN) for m in rx.finditer(masked)]
    for m in sorted(hits, key=lambda m: m.start()):
        raw = m.group().strip().lower()
        token = raw.strip("*_[]:<>|# \t").lower() if m.re is _SPECIAL else raw
        if token and token in q:
            continue  # the user asked about this very token or format ("what does <|im_end|> do?")
        return m
    return None


def structured(text: str) -> bool:
    """A script, a code block or a table: text whose embedding says little about what it answers."""
    return "```" in text or len(re.findall(r"(?m)^[ \t]*\|.*\|[ \t]*$", text)) >= 2 \
        or len(re.findall(r"(?m)^[ \t]*\**[A-Z][\w'’ -]{0,24}?\**[ \t]*:[ \t]+\S", text)) >= 2


def lone_item(text: str) -> bool:
    """Does the text end in a list of a single item (a list cut off after its first entry)?"""
    lines = [ln for ln in text.rstrip().splitlines() if ln.strip()]
    marker = re.compile(r"^[ \t]*(?:[-*•]|\d{1,2}[.)])[ \t]+\S")
    n = 0
    for ln in reversed(lines):
        if not marker.match(ln):
            break
        n += 1
    return n == 1 and len(lines) > 1 and lines[-2].rstrip().endswith(":")


def complete_ending(text: str) -> bool:
    """Does `text` end as a finished answer does: final punctuation, a closed code block, a list item?"""
    t = text.rstrip()
    if not t:
        return False
    if t.endswith("```"):
        return t.count("```") % 2 == 0
    last = t.splitlines()[-1].strip()
    if re.search(r"[.!?…。！？」』)\]\"'”’*`]$", last):
        return True
    return bool(re.match(r"^(?:[-*•]|\d+[.)]|\|)", last)) and len(t.splitlines()) > 1  # a list or table row


# -- a requested number of items --------------------------------------------------------------------
_ASKED = re.compile(  # a verb that asks for the items, then the count: "give me three reasons", "list 5 tips"
    r"\b(?:give|list|name|suggest|provide|share|write|tell|recommend|offer|outline|describe|explain|summari[sz]e"
    r"|show|create|make|plan|what are|top)\b(?:\s+[\w'-]+){0,3}?\s+"
    r"(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+(?:[a-z-]+\s+){0,2}?"
    r"(?:reasons|ways|steps|tips|examples|ideas|things|causes|effects|benefits|advantages|disadvantages|pros|cons|facts"
    r"|points|items|options|rules|questions|mistakes|strategies|methods|tools|books|places|differences|similarities"
    r"|types|kinds|factors|features|signs|symptoms|uses|habits|exercises|recipes|foods|destinations|principles|laws"
    r"|stages|phases|lessons|arguments|characteristics|suggestions|recommendations|alternatives|skills|movies|songs"
    r"|games|apps|resources|activities|words|synonyms|names)\b", re.IGNORECASE)
_ORDINALS = re.compile(r"\b(first(?:ly)?|second(?:ly)?|third(?:ly)?|fourth|fifth|sixth|seventh|eighth|ninth|tenth)\b[,:]",
                       re.IGNORECASE)


def items_short(query: str, answer: str) -> str | None:
    """"Give three reasons" answered with a list (numbered, bulleted or "First, ... Second, ...") of fewer
    items than asked. Prose without list markers is not counted."""
    m = _ASKED.search(query)
    if not m:
        return None
    asked = int(m.group(1)) if m.group(1).isdigit() else int(NUMBER_WORDS[m.group(1).lower()])
    given = items_given(answer)
    if 2 <= asked <= 12 and 0 < given < asked:
        return f"{given} of the {asked} items asked for"
    return None


def items_given(answer: str) -> int:
    """The items of the answer's list: numbered (1, 2, 3... in order), bulleted, or "First, ... Second, ..."."""
    text = mask_code(answer)
    markers = {int(n) for n in re.findall(r"(?:^|\s)(\d{1,2})[.)][ \t]+\S", text)}
    numbered = 0
    while numbered + 1 in markers:  # a numbered list counts 1, 2, 3...: "by week 2. It" is not one
        numbered += 1
    bullets = len(re.findall(r"(?m)^[ \t]*[-*•][ \t]+\S", text))
    ordinals = len({o.lower().removesuffix("ly") for o in _ORDINALS.findall(text)})
    return max(numbered, bullets, ordinals)


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


# -- the method leaking into the answer --------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def _grams5(text: str) -> frozenset[tuple[str, ...]]:
    """A principle's word 5-grams, computed once (every answer is checked against every principle)."""
    return frozenset(ngrams(words(text), 5))


# the method's citation form, "by 17 (neutrality)", whatever the number or the name: a bare number (not one that
# numbers a noun, as "step 2 (optional)" or "Python 3 (released 2008)" do) after a preposition, a verb or at a
# sentence start, then one to three lower-case words in parentheses, then a pause or a new clause
_CITE = re.compile(
    r"(?:^|(?<=[.!?:;]\s)|(?<=\n)|\b(?i:by|per|under|following|follows?|followed|with|and|on|only|see|from|via|to|of"
    r"|as in|like|using|applying|applies|apply|cites?|cited)\s+)"
    r"(?P<n>\d{1,2})\s*\(\s*(?!(?:or|and|about|approx|approximately|roughly|around|maybe|plus|minus|at|if|in|i\.?e|e\.?g|"
    r"am|pm|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|out|per|each|including|excluding"
    r"|counting|depending|not|with|without|for|from|to|of|on|as|see|the|a|an|its|which|that|this|so|say|usually|often)\b)"
    r"[a-z][a-z'-]{2,}(?:\s+[a-z][a-z'-]*){0,2}\s*\)"
    r"(?=\s*(?:[,.;:!?]|$|I\b|[A-Z]|(?:and|or|are|is|says|said|says?|i|we|should|tells?|requires?|means?|it|this|that"
    r"|the|but|so)\b))", re.MULTILINE)


def citation(text: str) -> re.Match[str] | None:
    """A principle citation in the method's form, "By 17 (neutrality) I ...", with any number and name: small
    models make up both. Not one: a number that numbers a noun ("step 2 (optional)", "Python 3 (released 2008)",
    "chapter 4 (summary)"), a number with an amount or an aside ("by 2 (or more)", "at 5 (pm)", "by 2 (including the flour)"), or a count of
    the nouns that follow ("in 3 (easy) steps")."""
    return _CITE.search(text)


def leak(answer: str, query: str, persona: str, principles: list[tuple[str, str, str]]) -> str | None:
    """What of the method shows in the answer: a principle citation, recited principle text, the
    internal thoughts, or the persona name used as a speaker. `principles`: (id, name, text)."""
    text = mask_code(answer)
    low, q = text.lower(), query.lower()
    names = "|".join(re.escape(n.lower()) for _, n, _ in principles if n)
    checks = [(r"\binternal thoughts?\b|\(\s*internal\b", "mentions")]
    if names:
        checks += [(rf"\b\d{{1,2}}\s*\(\s*(?:{names})\s*\)", "cites"),
                   (rf"\b(?:my|the|our)\s+(?:principle|rule)s?\s+(?:of\s+)?\(?(?:{names})\b", "cites")]
    for term in ("principle", "rule"):  # "rule 2" is content when the user asks about rules
        if not re.search(rf"\b{term}", q):
            checks += [(rf"\b{term}s?\s*(?:#|no\.?|number)?\s*\d{{1,2}}\b(?!\s*(?:%|percent|years?))", "cites"),
                       (rf"\bmy (?:\w+ )?{term}s\b|\b(?:sixteen|16) {term}s\b", "mentions")]
    for rx, what in checks:
        if m := re.search(rx, low):
            return f"{what} {m.group()!r}"
    if m := citation(text):
        return f"cites {m.group().strip()!r}"
    aw = ngrams(words(text), 5)
    for pid, _, ptext in principles:
        pw = _grams5(ptext)
        if len(pw) >= 3 and len(pw & aw) / len(pw) >= 0.5:
            return f"recites principle {pid}"
    labels = re.findall(r"(?m)^[ \t]*(?:[-*•][ \t]*)?\**([A-Z][\w'’ -]{0,24}?)\**[ \t]*:", text)
    listed = any(not x.strip().lower().startswith(persona.lower()) for x in labels)  # "Basil: ...\nSage: ..."
    if persona and persona.lower() not in q and not listed:
        p = re.escape(persona)
        m = re.search(rf"(?:^|\n|(?<=[.!?]\s))[ \t]*(?:\*\*)?{p}(?:\*\*)?[ \t]*(?:\([^)\n]{{0,30}}\))?[ \t]*:"
                      rf"|\b{p}\s+(?:says|said|thinks|replies|answers)\b", text)
        if m:
            return f"persona as speaker {m.group().strip()!r}"
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


# -- copying the exemplars ---------------------------------------------------------------------------
class ExemplarCopy:
    """Word n-gram containment of each exemplar text (answer and question) in an answer.

    Long texts (20+ word 3-grams, the exemplar answers): a quarter of their 3-grams in the answer. That is
    what a copy keeps even as a template with the nouns swapped ("It depends on your situation ... Taking
    a gap year builds ..."): measured on the labelled sets, copies keep 0.32 or more, good answers at most
    0.11, a shared opening sentence 0.09. Short texts (the exemplar questions): all of their 5-grams.
    N-grams the query holds do not count (the user asked about the same thing), and where in the answer
    the copy sits does not matter.
    """

    def __init__(self, texts: list[tuple[str, str]], share: float = 0.25, long: int = 20):
        self.items = []
        for name, t in texts:
            tri = ngrams(words(t), 3)
            n, g = (3, tri) if len(tri) >= long else (5, ngrams(words(t), 5))
            if g:
                self.items.append((name, n, g))
        self.share = share

    def __call__(self, answer: str, query: str = "") -> str | None:
        aw, qw = words(answer), words(query)
        grams = {n: ngrams(aw, n) - ngrams(qw, n) for n in (3, 5)}
        for name, n, g in self.items:
            shared = len(g & grams[n])
            if shared >= (self.share * len(g) if n == 3 else len(g)):
                return f"{shared} of the {len(g)} word {n}-grams of {name}"
        return None


# -- refusals ----------------------------------------------------------------------------------------
_CANT = (r"(?:can ?not|can'?t|could ?n[o']t|won'?t|will not|am (?:not )?(?:able|unable|allowed|permitted)"
         r"|'m (?:not )?(?:able|unable|allowed|permitted)|must (?:decline|refuse)|have to decline|do ?n[o']t (?:feel|think) "
         r"(?:comfortable|it(?:'s| is) appropriate)|'?m not (?:comfortable|going to)|am not going to)")
_REFUSAL = [re.compile(p, re.IGNORECASE) for p in (
    rf"^(?:i'?m|i am)\s+(?:so\s+|very\s+|truly\s+|really\s+)?sorry\b[^.!?\n]{{0,40}}?\b(?:but\s+)?(?:i|we)\s*{_CANT}",
    rf"^(?:sorry|apologies|my apologies|i apologi[sz]e|unfortunately|regrettably)\b[^.!?\n]{{0,60}}?\b(?:i|we)\s*{_CANT}",
    r"^(?:sorry|apologies|my apologies|i apologi[sz]e)\s*(?:,|\.|!|$)(?!\s*(?:for|to hear|about))",
    rf"^as an? (?:ai|artificial intelligence|language model|large language model|ai language model|assistant)\b"
    rf"[^.!?\n]{{0,60}}?\b(?:i|we)\s*(?:{_CANT}|do ?n[o']t (?:have|hold|possess))",
    rf"^(?:i|we)\s*{_CANT}\s+(?:be\s+\w+ing\b|(?:\w+\s+){{0,3}}?(?:help|assist|provid|writ|creat|generat|do|fulfil|"
    rf"comply|complie|answer|shar|giv|produc|complet|support|engag|discuss|continu|mak|offer|recommend|suggest|"
    rf"advis|explain|tell|list)\w*)",
    r"^(?:i'?d|i would|i'?ll|i will)\s+(?:rather not|prefer not to|have to pass|pass on|need to pass|sit this one out)",
    r"^(?:i|we)\s*(?:must|have to|need to)\s+(?:respectfully\s+)?(?:decline|refuse)",
    r"^(?:i'?m|i am) (?:unable|not able) to\b",
    r"^(?:that|this) (?:is not|isn't) something i (?:can|am able to|will)\b",
    # other languages: an apology joined to "I cannot", or "as an AI"
    r"^(?:lo siento|disculpa|disculpe|perd[oó]n)\b[^.!?\n]{0,40}?no (?:puedo|me es posible|estoy en condiciones)",
    r"^(?:como (?:una )?(?:ia|inteligencia artificial|modelo de lenguaje))\b[^.!?\n]{0,60}?no (?:puedo|tengo)",
    r"^no puedo (?:ayudar|proporcionar|escribir|crear|hacer|responder|dar)",
    r"^(?:je suis (?:vraiment )?d[ée]sol[ée]e?|d[ée]sol[ée]e?|pardon)\b[^.!?\n]{0,40}?je ne (?:peux|suis|pourrai)",
    r"^(?:en tant qu['’](?:ia|intelligence artificielle|assistant|mod[eè]le))\b[^.!?\n]{0,60}?je ne",
    r"^je ne (?:peux|pourrai) pas (?:vous |t['’])?(?:aider|fournir|[ée]crire|r[ée]pondre|donner)",
    r"^(?:es tut mir (?:sehr )?leid|entschuldigung|leider)\b[^.!?\n]{0,50}?(?:(?:ich|wir) (?:kann|k[öo]nnen|darf|werde)|"
    r"(?:kann|k[öo]nnen|darf|werde) (?:ich|wir))\b[^.!?\n]{0,40}?nicht",
    r"^(?:als (?:eine )?(?:ki|künstliche intelligenz|sprachmodell))\b[^.!?\n]{0,60}?(?:kann|habe) ich",
    r"^ich kann (?:ihnen |dir )?(?:dabei |damit |hier )?(?:leider )?nicht (?:helfen|weiterhelfen)",
    r"^(?:mi dispiace|purtroppo|scusa|scusi)\b[^.!?\n]{0,40}?non (?:posso|sono in grado)",
    r"^(?:desculpe|sinto muito|lamento|infelizmente)\b[^.!?\n]{0,40}?n[ãa]o (?:posso|consigo|sou capaz)",
    r"^(?:извините|простите|к сожалению|мне жаль)\b[^.!?\n]{0,50}?не (?:могу|смогу|в состоянии)",
    r"^(?:как (?:ии|искусственный интеллект|языковая модель))\b[^.!?\n]{0,60}?не",
    r"^(?:抱歉|对不起|很抱歉|非常抱歉|不好意思|作为(?:一个)?(?:ai|人工智能|语言模型))[^。！？\n]{0,30}?(?:无法|不能|不可以|没办法)",
    r"^(?:我|我们)(?:无法|不能)(?:帮|提供|回答|完成|协助|为你|为您)",
    r"^(?:申し訳|すみません|ごめんなさい|恐れ入り)[^。！？\n]{0,40}?(?:できません|いたしかねます|お答えできません|お手伝いできません)",
    r"^(?:죄송|미안)[^.!?\n]{0,40}?(?:수 없|드릴 수 없|할 수 없)",
)]
# what follows "I can't" when it is candour, not a refusal: a hedge on precision, or a limit of a text model
# that the answer then works around (principle 9's "cannot browse" is honest, not unhelpful)
_HEDGE = re.compile(r"^[^.!?\n]{0,12}?\b(?:whether|if)\b|^[^.!?\n]{0,40}?\b(?:a single|one single|an exact|the exact|a precise|a definitive|a definite|"
                    r"for certain|for sure|with certainty|a guarantee|guarantee|an accurate|a specific|predict|know for)"
                    r"|^[^.!?\n]{0,60}?\b(?:browse|the internet|online|live|real[- ]time|current|today's|latest|look (?:it |this |that )?up|"
                    r"access|check (?:live|the|your|current)|see (?:your|the|images|pictures)|hear|remember|physically|"
                    r"in person|your (?:account|screen|device|files|computer)|personal (?:data|information))", re.IGNORECASE)


def refusal(answer: str, query: str = "") -> str | None:
    """The refusal the answer opens with, if it opens with one. Not refusals: empathy ("sorry to hear"),
    a hedge ("I can't give a single number, but ..."), a stated limit of a text model that the answer
    then works around, and words the user asked about ("translate 'Sorry, I can't'")."""
    head = unicodedata.normalize("NFKC", answer.lstrip(" \t\n*_#>\"'“")).replace("’", "'")[:300]
    q = unicodedata.normalize("NFKC", query).replace("’", "'").lower()
    for rx in _REFUSAL:
        m = rx.search(head)
        if m:
            said = m.group().strip(" ,.!").lower()
            if said and said in q:
                return None
            rest = head[m.end():]
            if _HEDGE.search(rest):
                return None
            return m.group()[:80]
    return incapacity(answer)


# a sentence that pleads incapacity or confusion instead of answering ("I have no idea.", "I am lost.")
_INCAPABLE = re.compile(
    r"^(?:(?:um+|hmm+|well|sorry|i'?m sorry|oh|honestly)\W+)*(?:(?:i|we)\s*(?:(?:really|just|honestly|simply|truly)\s+)?"
    r"(?:have no (?:idea|clue)|(?:do ?n[o']t|do not) (?:know|understand|get it)|(?:am|'m) not sure"
    r"|(?:am|'m) (?:so |totally |completely )?(?:lost|confused|stuck)|(?:am|'m) (?:not able|unable) to (?:do|write|answer|think)"
    r"|(?:can ?not|can'?t|could ?n'?t) (?:\w+ ){0,2}?(?:write|do|answer|think of|figure|come up with|create|make|solve|compose"
    r"|imagine|understand|remember|help(?! but))|give up|(?:am|'m) not (?:good|smart|clever) enough)\b"
    r"|no idea\b|not sure\b|this is (?:too |so )?(?:hard|difficult|confusing)\b|(?:it'?s|that'?s) too (?:hard|difficult)\b)",
    re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")


def incapacity(answer: str) -> str | None:
    """An answer that pleads incapacity or confusion instead of answering: its sentences mostly say "I have no
    idea", "I can't write stories", "I am lost" (two or more, at least half of them), or it is one such short
    sentence. Not counted: a stated limit of a text model the answer works around ("I can't browse, but ..."),
    a hedge ("I'm not sure whether ..."), or a sentence that goes on with "but"."""
    text = unicodedata.normalize("NFKC", mask_code(answer)).replace("’", "'")
    sentences = [x.strip(" \t*_#>-\"'“”") for x in _SENTENCE.split(text.strip()) if re.search(r"\w", x)]
    if not sentences:
        return None
    pleas = []
    for x in sentences:
        m = _INCAPABLE.search(x)
        if m and not _HEDGE.search(x[m.end():]) and not re.search(r"\b(?:but|however|though|instead)\b", x, re.I):
            pleas.append(x)
    if (len(pleas) >= 2 and len(pleas) * 2 >= len(sentences)) or (len(sentences) == 1 and pleas
                                                                   and word_count(pleas[0]) <= 8):
        return f"incapacity or confusion ({len(pleas)} of {len(sentences)} sentences): {pleas[0][:60]!r}"
    return None


# -- repetition --------------------------------------------------------------------------------------
_UNIT = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])|\n+")
_REPEAT = re.compile(r"(\b(?:\S+\s+){2,12}?\S+\b)(?:\W+\1\b){2,}")
_CJK_REPEAT = re.compile(r"([^\s\d]{3,40}?)\1{2,}")


def _key(unit: str) -> str:
    """Units compare case- and space-blind, and blind to their first number when they have words enough
    to be prose: a counter ("Day 3:", "Step 7.") changes in a loop, the other figures of a plan do not."""
    low = " ".join(unit.lower().split())
    if len(re.findall(r"[^\W\d_]{2,}", low)) >= 4 or sum(is_cjk(c) for c in low) >= 6:
        low = re.sub(r"\d+", "#", low, count=1)
    return re.sub(r"^(?:[-*•]|#\.|\d+[.)])\s*", "", low)


def find_loop(text: str, min_words: float = 4) -> tuple[int, int] | None:
    """Where the text starts repeating itself, and how many copies follow back to back; or None.

    Units are sentences and lines. A loop: a unit or a block of units repeated back to back three times
    or more, compared without case and numbers (so "Day 3: X. Day 4: X. Day 5: X." loops), or a phrase
    repeated three times in a row (in scripts without spaces too). A stutter (two copies): the same
    sentence twice in a row inside a paragraph, numbers included. Not counted: two lines alike (a song's
    line sung twice, "Week 1: run 3 km" then "Week 2: run 4 km"), repeats apart (a chorus between
    verses), and single lines repeated inside code blocks (a block of code lines looping still counts).
    """
    masked = mask_code(text)
    units: list[tuple[int, str, bool, str, bool]] = []  # start, key, inside code, exact text, after a newline
    pos = 0
    for part in _UNIT.split(text):
        start = text.find(part, pos)
        gap, pos = text[max(0, pos - 1): start], start + len(part)
        if part.strip():
            exact = " ".join(part.lower().split())
            units.append((start, _key(part), not masked[start: start + len(part)].strip(), exact, "\n" in gap))
    keys = [u[1] for u in units]
    for i in range(1, len(keys)):
        for size in range(1, min(8, (i + 1) // 2) + 1):
            block = keys[i - size + 1: i + 1]
            if block != keys[i - 2 * size + 1: i - size + 1] or word_count(" ".join(block)) < min_words:
                continue
            if size == 1 and units[i][2]:
                continue
            copies, j = 2, i + 1
            while keys[j: j + size] == block:
                copies, j = copies + 1, j + size
            if copies == 2 and not (size == 1 and units[i][3] == units[i - 1][3] and not units[i][4]):
                continue  # two alike, but not one sentence said twice within a paragraph: not a loop
            return units[i - size + 1][0], copies
    for rx, cjk in ((_REPEAT, False), (_CJK_REPEAT, True)):
        m = rx.search(masked)
        if m and (len(m.group(1)) >= 8 or cjk) and (not cjk or any(is_cjk(c) for c in m.group(1))):
            unit = m.group(1)
            return m.start() + len(unit), len(m.group()) // max(1, len(unit))
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
    """An answer that mostly says the same thing over: a short one (up to `short` words) whose repeated clauses
    (a clause said again, back to back or not) make up at least 40% of its words, or any answer whose content
    words mostly repeat (at most half of them distinct, with 12 or more, figures counted: "1. Create a song
    about love. 2. Create a song about rain. 3. ..."). Verse, asked for or laid out in short lines
    that are not a list, is left to the loop rule: a chorus or a refrain repeats on purpose."""
    text = mask_code(answer)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if _VERSE.search(query) or (len(lines) >= 3 and sorted(word_count(ln) for ln in lines)[len(lines) // 2] <= 16
                                and not re.match(r"^\W*(?:\d{1,2}[.)]|[-*•])\s", lines[0])):
        return None  # verse, asked for or laid out in short lines (a list is not verse)
    n = word_count(text)
    if n <= short:
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


# -- length: what the query asks for -----------------------------------------------------------------
_BRIEF = re.compile(
    r"\b(?:one|single|1|two|three|a few|five|\d+)[- ]words?\b|\bin (?:one|a single|1|two|2) (?:word|sentence|line)s?\b"
    r"|\b(?:one|single|a)[- ](?:sentence|line|number|word|letter|emoji|date|name|figure|value)\b"
    r"|\b(?:name|date|number|year|word|title|answer)s? only\b|\bonly (?:the )?(?:name|date|number|year|word|title)s?\b|\bhaiku|\blimerick|\bcouplet|\btwo[- ]line"
    r"|\byes or no\b|\byes/no\b|\bjust (?:the|a|give|say|tell|answer|reply)\b|\bonly (?:the|answer|reply|give|say|one)\b"
    r"|\bbriefly\b|\bshort answer\b|\bshort (?:title|name|slogan|tagline|motto)\b|\b(?:title|slogan|tagline|nickname|"
    r"name) for\b|\bsuggest a (?:name|title)\b|\bin (?:a )?(?:few|five|ten|\d+) words\b|\bor less\b|\bno more than\b"
    r"|\bhow many\b|\bwhat year\b|\bwhich year\b|\bwhat (?:is|'s) the (?:capital|square root|sum|product|result|value"
    r"|answer|date|population|atomic number|chemical symbol|formula)\b|\bwhat is \d"
    r"|\b\d+\s*[-+*/x×÷^]\s*\d+|\btrue or false\b|\bspell\b|\babbreviat|\bsynonym|\bantonym|\btranslate\b"
    r"|\bone[- ]liner\b|\bemoji\b|\brhyme|^\W*quick(?:ly)?\b|\bin short\b|(?<![\d.])\d+(?:\.\d+)?[ \t]*%[ \t]*of[ \t]*\d",
    re.IGNORECASE)
_FACT = re.compile(r"^\W*(?:who|when|where|which|whose|how (?:many|much|old|far|long|tall|big))\b", re.IGNORECASE)
_BRIEF_OTHER = re.compile(r"一[个句词字]|一言|简短|简单回答|一句话|一語|一単語|短く|한 단어|한 문장|en (?:une|un) (?:mot|phrase)"
                          r"|en una (?:palabra|frase)|in einem (?:wort|satz)|in una parola|em uma palavra|одним словом"
                          r"|\b(?:palabra|mot|wort|parola|palavra|слово)\b")
_DETAIL = re.compile(r"\bin detail\b|\bdetailed\b|\bthorough(?:ly)?\b|\bcomprehensive|\bessay\b|\bstep[- ]by[- ]step\b"
                     r"|\bin depth\b|\bat length\b", re.IGNORECASE)
_LONG = re.compile(r"\bin detail\b|\bdetailed\b|\bthorough|\bcomprehensive|\bessay\b|\bstory\b|\barticle\b|\bexplain\b"
                   r"|\bdescribe\b|\bstep[- ]by[- ]step\b|\bcompare\b|\bcontrast\b|\bpros and cons\b|\blist\b|\bplan\b"
                   r"|\bguide\b|\bletter\b|\bemail\b|\bparagraph|\bwhy\b|\bhow (?:do|does|can|should|to)\b|\b\d{2,4}[- ]words?\b",
                   re.IGNORECASE)


def min_words(query: str, floor: int) -> float:
    """The fewest words a complete answer to `query` may have: 1 when it asks for brevity, `floor` when it
    asks for an explanation or a piece of writing, a third of it for a plain question. A requested length
    ("a 300-word story") raises the floor to half of it."""
    if floor <= 0:
        return 0
    m = re.search(r"\b(\d{2,4})[- ]words?\b", query, re.IGNORECASE)
    if m and not re.search(r"(?:less|fewer|under|at most|no more|maximum)\s+(?:than\s+)?" + m.group(1), query, re.I):
        return max(floor, int(m.group(1)) / 2)
    if _DETAIL.search(query):
        return floor
    if _BRIEF.search(query) or _BRIEF_OTHER.search(query.lower()):
        return 1
    if _FACT.search(query) and word_count(query) <= 10 and not _LONG.search(query):
        return 1  # a short question of fact: a name or a number can be the whole answer
    if _LONG.search(query) or word_count(query) > 25:
        return floor
    return max(1, floor / 3)
