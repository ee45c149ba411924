"""Text normalisation shared by ids, exact dedup, the lexical pass and the quality gates (stdlib only,
so importing it keeps `selfalign --help` light)."""

from __future__ import annotations

import re
import unicodedata

# a token keeps the punctuation that carries meaning inside or at the end of it (C++, C#, F#, .NET, 3.5,
# Node.js, -5), and operators are tokens of their own (== and ===, 2^10 and 2*10, / and ./)
TOKEN = re.compile(r"\.?[^\W_](?:[\w']|[.,\-/](?=\w))*[+#]*|(?<![\w.])-\d+(?:[.,]\d+)*%?|\d+(?:[.,]\d+)*%?"
                   r"|={2,3}|!==?|<=|>=|=>|->|<-|&&|\|\||\*\*|[=<>*^~|&]|(?<!\w)[-+/](?!\w)|(?<![\w.])\.{1,2}/", re.UNICODE)


NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def tokens(text: str) -> list[str]:
    """Case-folded tokens that keep meaning-bearing punctuation (C++ and C# stay apart, so do 3.5 and 35)."""
    return [t.casefold() for t in TOKEN.findall(unicodedata.normalize("NFKC", text).replace("’", "'"))]


def normalize_text(text: str) -> str:
    """The form used for ids and exact dedup: case and whitespace folded, punctuation between tokens
    dropped, punctuation inside tokens kept ("What is C++?" and "what is c++" match; "C#" does not)."""
    return " ".join(tokens(text)) or " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_STOP = set("""a an the and or of in on at by for with about as is are was were be been do does did can could
would should will shall may might must i me my we our you your it its this that these those what which who how
why when where please just really actually some any""".split())


def _stem(w: str) -> str:
    for suffix, repl in (("iest", "y"), ("ier", "y"), ("est", ""), ("er", ""), ("ies", "y"), ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)] + repl
    return w
