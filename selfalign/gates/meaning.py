"""Gates that need a model: the answer's language against the query's, whether the query asks for harm (the
harm classifier, which decides both `unwarranted_refusal` and `harmful_compliance`), and how the answer relates
to the query in embedding space (an echo of the question, or about something else).

Both run batched over the records a text gate kept, and load their models on first use: language
identification from `py3langid` (its model ships in the 4.6 MB wheel; chosen over lingua in
benchmarks/langid.py), embeddings from the bundled
all-MiniLM-L6-v2. Thresholds come from benchmarks/quality.py (see the README).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

from selfalign.gates.text import is_cjk, mask_code, min_words, refusal, structured, word_count, words
from selfalign.records import Dropped

# Language names a query may use to ask for another language ("translate into Spanish", "en français").
_LANG_NAMES = {
    "en": r"english|inglés|anglais|englisch|inglese|inglês|английск|英[语語文]|영어",
    "es": r"spanish|español|espagnol|spanisch|spagnolo|espanhol|испанск|西班牙|スペイン|스페인",
    "fr": r"french|francés|français|französisch|francese|francês|французск|法[语語文]|フランス|프랑스",
    "de": r"german|alemán|allemand|deutsch|tedesco|alemão|немецк|德[语語文]|ドイツ|독일",
    "it": r"italian|italiano|italien|italienisch|итальянск|意大利|イタリア|이탈리아",
    "pt": r"portuguese|portugués|portugais|portugiesisch|portoghese|português|португальск|葡萄牙|ポルトガル|포르투갈",
    "nl": r"dutch|neerlandés|néerlandais|niederländisch|olandese|holandês|нидерландск|голландск|荷兰|オランダ|네덜란드",
    "ru": r"russian|ruso|russe|russisch|russo|русск|俄[语語文]|ロシア|러시아",
    "zh": r"chinese|mandarin|chino|chinois|chinesisch|cinese|chinês|китайск|中文|汉语|漢語|普通话|中国語|중국어",
    "ja": r"japanese|japonés|japonais|japanisch|giapponese|japonês|японск|日[语語文]|日本語|일본어",
    "ko": r"korean|coreano|coréen|koreanisch|корейск|韩[语語文]|韓国語|한국어",
    "ar": r"arabic|árabe|arabe|arabisch|arabo|арабск|阿拉伯|アラビア|아랍어",
}
_TRANSLATE = re.compile(r"translat|traduc|tradu[isz]|übersetz|перев|翻[译譯訳]|번역", re.IGNORECASE)
_FILLER = set("""a an the and or but of to in on for with about as at by from into is are was were be been being it
its this that these those you your i me my we our they their he she his her what which who whom how why when where
question questions ask asking asked answer answers great good interesting important many people wonder wondering
want wants know would like could can do does did topic something things thing very really just so also here
there there's it's that's you're let lets let's me about one""".split()) | set(
    # the commonest function words of the other languages the detector sees most, so that an echo in
    # Spanish, French, German, Italian, Portuguese, Dutch or Chinese/Japanese is measured as in English
    """el la los las un una unos unas de del al y o que en es son por para con se su sus lo como más pero muy
    este esta esto eso tu tus te mi me yo usted pregunta preguntas quieres saber sobre hay ser está
    le les du des et ou est sont pour avec ce cette ces vous tu je il elle qui dans sur pas plus mais très
    question savoir veux voulez
    der die das den dem des ein eine einen einem einer und oder ist sind für mit sich sie du ich er es wie
    im in zu auf von nicht auch sehr dein deine mein frage fragen möchtest wissen thema über viele
    il lo gli le un una uno di da e o che è sono per con si come più ma molto questo questa vuoi sapere
    o a os as um uma de do da dos das e ou que é são para com se como mais mas muito você quer saber
    de het een en of is zijn voor met je ik hij zij wat hoe niet ook
    的 是 了 在 我 你 他 她 这 那 个 一 有 不 就 也 和 都 很 要 会 能 么 怎 什 为 吗 呢 吧 啊 想 知 道 问 题 关 于 如 何 多 人 心
    の は が を に で と も た て し い す ま な か こ そ れ あ""".split())


# py3langid knows 97 languages and dialects; judging among the common ones avoids false alarms on short
# texts (measured in benchmarks/langid.py: 94% vs 88% accuracy, 86% vs 71% on texts of 1-3 words)
COMMON = ["en", "es", "fr", "de", "it", "pt", "nl", "ru", "uk", "pl", "tr", "sv", "da", "cs", "ro", "ca",
          "el", "he", "ar", "hi", "vi", "id", "zh", "ja", "ko"]


class Language:
    """(language, confidence) of a text with py3langid's bundled model, probabilities normalised."""

    def __init__(self) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.ident.set_languages(COMMON)

    def __call__(self, text: str) -> tuple[str, float]:
        lang, p = self.ident.classify(text)
        if lang == "zh" and any("\u3040" <= ch <= "\u30ff" for ch in text):
            lang = "ja"  # kana is Japanese; the detector sees kanji-heavy Japanese as Chinese
        return str(lang), float(p)


def script(text: str) -> str | None:
    """The dominant script family where it settles the language question alone: 'cjk', 'cyrillic', 'latin'."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 4:
        return None
    cjk = sum(is_cjk(c) for c in letters) / len(letters)
    cyr = sum("\u0400" <= c <= "\u04ff" for c in letters) / len(letters)
    latin = sum(c.isascii() or "\u00c0" <= c <= "\u024f" for c in letters) / len(letters)
    if cjk > 0.5:
        return "cjk"
    if cyr > 0.5:
        return "cyrillic"
    return "latin" if latin > 0.8 else None


def query_terms(query: str) -> int:
    """How many different content words (filler left out) the query holds: what a restatement has to rephrase."""
    return len({w for w in words(query) if w not in _FILLER})


def echo(query: str, answer: str) -> tuple[float, int]:
    """How much of the answer only repeats the query: the share of its content words (filler left out)
    that the query holds, and how many different new content words it brings."""
    q = set(words(query))
    content = [w for w in words(answer) if w not in _FILLER]
    if not content:
        return 1.0, 0
    return sum(w in q for w in content) / len(content), len({w for w in content if w not in q})


def new_names(query: str, answer: str) -> set[str]:
    """Capitalised words inside the answer's sentences (not their first word) that the query does not hold:
    names, places, titles. A restatement reuses the query's names; an answer brings its own ("... is Lima,
    home to a third of all Peruvians")."""
    q = set(words(query))
    out = set()
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n+", mask_code(answer)):
        for w in re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)*", sentence)[1:]:
            if w[0].isupper() and w not in ("I", "I'm", "I’m") and w.lower() not in q and w.lower() not in _FILLER:
                out.add(w)
    return out


class MeaningGates:
    # language: judge only texts long enough for the detector, and only when it is sure of both
    MIN_WORDS_LANG = 4
    MIN_CONF = 0.7  # both texts; 0.8 between close languages
    CLOSE = ({"ru", "uk"}, {"es", "pt"}, {"es", "ca"}, {"pt", "ca"}, {"de", "nl"}, {"da", "sv"}, {"cs", "pl"})
    # relevance, read from `benchmarks/quality.py --calibrate` (see the README):
    # off topic: cosine of query and answer (all-MiniLM-L6-v2, English pairs only: it is an English model)
    OFF_TOPIC_BELOW = 0.32
    # restating: few new content words, and most of the answer's words taken from the query (any language),
    # or, for English pairs, close in meaning to the query while bringing little new
    RESTATE_MAX_NEW = 12
    RESTATE_MIN_COVERAGE = 0.3
    RESTATE_ABOVE = 0.70
    RESTATE_MAX_NEW_EN = 15
    # ... and never more new words than a rephrasing of the query can bring: about two for each of its content words
    # (a synonym and a frame), at least RESTATE_MIN_NEW_EN; a short question's definition brings more
    RESTATE_NEW_PER_TERM = 2
    RESTATE_MIN_NEW_EN = 6
    MIN_WORDS_RELEVANCE = 8
    # the embeddings see each text's first EMBED_TOKENS tokens (MiniLM's own limit is 256): the decisions on both
    # labelled sets are the same as with whole texts (benchmarks/README.md, "gates"); CACHE: texts remembered
    EMBED_TOKENS = 128
    CACHE = 4096
    # texts per forward pass on a CPU: a batch's short queries are padded to its longest answer, and a GEMM of 8 x 128
    # tokens is as efficient there as a bigger one (0.6x the CPU time of 32 on 2 cores, same vectors to 1e-6)
    CPU_BATCH = 8
    SCREEN = 0.15  # harm: all-MiniLM-L6-v2's P(harmful) below this is taken as it is, without all-mpnet-base-v2
    DECLINE_WORDS = 8  # a warranted decline is short by nature, but says more than "I can't."

    def __init__(self, language: bool = True, relevance: bool = True, embedding_model: str | None = None,
                 keep: frozenset[str] = frozenset(), harm: bool = True):
        self.language, self.relevance, self.embedding_model = language, relevance, embedding_model
        self.harm = harm and not {"unwarranted_refusal", "harmful_compliance"} <= keep
        self.keep = keep
        self._lang: Any = None
        self._langs: dict[str, tuple[str, float]] = {}
        self._embedder: Any = None
        self._vecs: OrderedDict[str, Any] = OrderedDict()
        self._harm_embedder: Any = None
        self._harm_memo: dict[str, float] = {}  # query -> P(harmful), the oldest forgotten past CACHE
        self._harm_model = "all-mpnet-base-v2"  # the classifier's embedding model (harm_scores may fall back)

    @classmethod
    def for_keep(cls, keep: frozenset[str]) -> MeaningGates:
        return cls(language="wrong_language" not in keep,
                   relevance=not {"off_topic", "restates_question"} <= keep,
                   keep=keep)

    # -- models, loaded on first use ------------------------------------------------------------------
    def lang(self, text: str) -> tuple[str, float]:
        """Language of `text`, remembered for the batch: both gates ask about the same query and answer."""
        if self._lang is None:
            self._lang = Language()
        if text not in self._langs:
            self._langs[text] = self._lang(text)
        return self._langs[text]

    def embed(self, texts: list[str]) -> Any:
        """Embeddings of `texts` in one call (the embedder batches them), each cut to its first EMBED_TOKENS tokens."""
        if self._embedder is None:
            from selfalign.text.embeddings import Embedder

            self._embedder = Embedder(self.embedding_model, max_tokens=self.EMBED_TOKENS)
            if self._embedder.device == "cpu":
                self._embedder.batch_size = self.CPU_BATCH
        return self._embedder.encode(texts)

    def vectors(self, texts: list[str]) -> dict[str, Any]:
        """Each distinct text's embedding: from the cache (a query asked again, with n > 1 samples or by another
        stage), the rest embedded in one batch and remembered, the oldest forgotten past CACHE texts."""
        out: dict[str, Any] = {}
        for t in texts:
            if t in self._vecs:
                self._vecs.move_to_end(t)
                out[t] = self._vecs[t]
        missing = [t for t in dict.fromkeys(texts) if t not in out]
        if missing:
            for t, v in zip(missing, self.embed(missing), strict=True):
                out[t] = self._vecs[t] = v.copy()  # a row of its own: no batch held alive by one cached row
            while len(self._vecs) > self.CACHE:
                self._vecs.popitem(last=False)
        return out

    def forget(self) -> None:
        """Empty the embedding cache."""
        self._vecs.clear()

    def harm_scores(self, queries: list[str]) -> list[float]:
        """P(harmful) of each query (selfalign.gates.harm): from all-mpnet-base-v2 embeddings, or where that model
        is not installed, all-MiniLM-L6-v2's with their own coefficients (said once on stderr)."""
        from selfalign.gates.harm import MODELS, default_classifier

        if not queries:
            return []
        if self._harm_embedder is None:
            from selfalign.text.embeddings import Embedder

            try:
                self._harm_embedder, self._harm_model = Embedder(MODELS[0]), MODELS[0]
            except (RuntimeError, OSError) as e:  # not installed or not readable: the model the gates load anyway
                import sys

                print(f"selfalign: harm classifier on {MODELS[1]} (less precise): {e}", file=sys.stderr)
                self._harm_embedder, self._harm_model = Embedder(MODELS[1]), MODELS[1]
        todo = [q for q in dict.fromkeys(queries) if q not in self._harm_memo]  # a query asked again: n > 1 samples
        if todo and self._harm_model != MODELS[1] and self.embedding_model in (None, MODELS[1]):
            # a screen: the small model's score (its vectors shared with the relevance gates) clears most harmless
            # requests; below SCREEN no harmful request of the harm set's train or held-out split was cleared, and
            # the decisions at both cut-offs are unchanged (benchmarks/README.md, "harm")
            vecs = self.vectors(todo)
            small = default_classifier(MODELS[1]).probability(np.stack([vecs[q] for q in todo]), todo)
            self._harm_memo.update((q, float(p)) for q, p in zip(todo, small, strict=True) if p < self.SCREEN)
            todo = [q for q in todo if q not in self._harm_memo]
        if todo:
            vecs = self._harm_embedder.encode(todo)
            self._harm_memo.update(zip(todo, map(float, default_classifier(self._harm_model).probability(vecs, todo))))
            while len(self._harm_memo) > self.CACHE:
                self._harm_memo.pop(next(iter(self._harm_memo)))
        return [self._harm_memo[q] for q in queries]

    def harm_verdict(self, query: str, answer: str, score: float) -> tuple[str, str] | None:
        """(reason, detail) when the answer's stance does not fit the query's harm score: a refusal (or a plea of
        incapacity) of a request scored below `decline_at`, or an answer that nowhere declines or points to help
        for one scored at or above `comply_at`; a warranted decline under DECLINE_WORDS is too_short; else None."""
        from selfalign.gates.harm import declines, default_classifier

        clf = default_classifier(self._harm_model)
        said = refusal(answer, query)
        if said:
            if score < clf.decline_at and "unwarranted_refusal" not in self.keep:
                return "unwarranted_refusal", f"{said!r}; harm score {score:.2f} < {clf.decline_at:g}"
            floor = min(self.DECLINE_WORDS, min_words(query, self.DECLINE_WORDS))
            if (n := word_count(answer)) < floor and "too_short" not in self.keep:
                return "too_short", f"a decline of {n:.0f} words < {floor:.0f}; harm score {score:.2f}"
            return None
        if score >= clf.comply_at and "harmful_compliance" not in self.keep and not declines(answer):
            return "harmful_compliance", f"complies; harm score {score:.2f} >= {clf.comply_at:g}"
        return None

    # -- the checks -----------------------------------------------------------------------------------
    def wrong_language(self, query: str, answer: str) -> str | None:
        """The answer's language when it differs from the query's and the query did not ask for it."""
        if word_count(query) < self.MIN_WORDS_LANG or word_count(answer) < self.MIN_WORDS_LANG:
            return None
        if _TRANSLATE.search(query):
            return None
        answer = mask_code(answer)  # code is in no natural language
        if word_count(answer) < self.MIN_WORDS_LANG:
            return None
        sq, sa = script(query), script(answer)
        if sq and sa and sq != sa:
            lq, la = self.lang(query)[0], self.lang(answer)[0]
            if lq == la or self._names(query, la):
                return None
            return f"query in {lq} ({sq}), answer in {la} ({sa})"
        (lq, pq), (la, pa) = self.lang(query), self.lang(answer)
        need = 0.8 if {lq, la} in self.CLOSE else self.MIN_CONF
        if lq == la or pq < need or pa < need or self._names(query, la):
            return None
        if {lq, la} <= {"zh", "ja"} and sq == sa == "cjk":
            return None  # kanji-heavy Japanese and Chinese are too close to call from the detector alone
        return f"query in {lq} ({pq:.2f}), answer in {la} ({pa:.2f})"

    @staticmethod
    def _names(query: str, lang: str) -> bool:
        names = _LANG_NAMES.get(lang)
        return bool(names and re.search(names, query, re.IGNORECASE))

    def apply(self, stage: str, outs: Iterable[Any], field: str) -> list[Any]:
        """`outs` with records that fail a meaning gate turned into drops; order kept."""
        from selfalign.stages.common import clip, drop

        self._langs.clear()  # bounded: one batch of texts
        outs = list(outs)
        kept = [i for i, o in enumerate(outs) if not isinstance(o, Dropped)]
        if not kept or not (self.language or self.relevance or self.harm):
            return outs
        if self.language:
            for i in kept:
                q, a = outs[i].prompt, getattr(outs[i], field)
                why = self.wrong_language(q, a)
                if why:
                    outs[i] = drop(stage, outs[i], "wrong_language", f"{why}: {clip(a, 120)}")
        if self.harm:  # one score per query decides both sides (red-team probes included)
            todo = [i for i in kept if not isinstance(outs[i], Dropped)]
            for i, score in zip(todo, self.harm_scores([outs[i].prompt for i in todo]), strict=True):
                if verdict := self.harm_verdict(outs[i].prompt, getattr(outs[i], field), score):
                    outs[i] = drop(stage, outs[i], verdict[0], f"{verdict[1]}: {clip(getattr(outs[i], field), 120)}")
        if self.relevance:
            self._relevance(stage, outs, kept, field)
        return outs

    def _relevance(self, stage: str, outs: list[Any], kept: list[int], field: str) -> None:
        """restates_question and off_topic, in place. The cosine is computed only where it can change the decision
        (an English pair the echo measures leave open), for the whole batch in one call to the embedder."""
        from selfalign.stages.common import clip, drop

        open_: list[tuple[int, str, str, float, int, bool, bool]] = []
        for i in kept:
            if isinstance(outs[i], Dropped):
                continue
            q, a = outs[i].prompt, getattr(outs[i], field)
            if word_count(a) < self.MIN_WORDS_RELEVANCE or refusal(a, q) or _TRANSLATE.search(q):
                continue  # short, a decline, or a translation: judged by other gates
            coverage, new = echo(q, a)
            figures = set(re.findall(r"\d+", a)) - set(re.findall(r"\d+", q))  # a figure is an answer
            restate = "restates_question" not in self.keep and not figures
            # a name the query lacks is an answer too ("Lima is the capital of Peru, ..."), read in English only
            # (German capitalises every noun)
            named = restate and bool(new_names(q, a)) and self.english(q, a)
            restate = restate and not named
            if restate and coverage >= self.RESTATE_MIN_COVERAGE and new <= self.RESTATE_MAX_NEW:
                outs[i] = drop(stage, outs[i], "restates_question", f"{new} new words, {coverage:.0%} of its "
                               f"words from the query: {clip(a, 120)}")
                continue
            could_restate = restate and new <= self.restate_allowance(q)
            # brief or formatted: few shared words, so a low cosine says nothing
            could_stray = "off_topic" not in self.keep and min_words(q, 25) > 1 and not structured(a)
            if (could_restate or could_stray) and self.english(q, a):
                open_.append((i, q, a, coverage, new, could_restate, could_stray))
        if not open_:
            return
        vecs = self.vectors([t for _, q, a, *_ in open_ for t in (q, a)])
        for i, q, a, coverage, new, could_restate, could_stray in open_:
            c = float(vecs[q] @ vecs[a])
            if could_restate and c >= self.RESTATE_ABOVE:
                outs[i] = drop(stage, outs[i], "restates_question", f"{new} new words, {coverage:.0%} of its "
                               f"words from the query, cosine {c:.2f}: {clip(a, 120)}")
            elif could_stray and c < self.OFF_TOPIC_BELOW:
                outs[i] = drop(stage, outs[i], "off_topic", f"cosine {c:.2f} to the query: {clip(a, 120)}")

    def restate_allowance(self, query: str) -> int:
        """The most new content words an English answer close in meaning to `query` may bring and still count as
        restating it: a paraphrase of "What is rain?" brings a few words, a definition of rain a dozen."""
        allowance = self.RESTATE_NEW_PER_TERM * query_terms(query)
        return min(self.RESTATE_MAX_NEW_EN, max(self.RESTATE_MIN_NEW_EN, allowance))

    def english(self, query: str, answer: str) -> bool:
        """Both in English: the embedding model is an English one."""
        return script(query) == script(answer) == "latin" and self.lang(query)[0] == self.lang(answer)[0] == "en"
