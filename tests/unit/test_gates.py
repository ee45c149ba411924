"""Each quality gate on cases it must catch and on the traps it must not fall into."""

import pytest

from selfalign import assets
from selfalign.gates import TextGates, parse_keep
from selfalign.gates import answers
from selfalign.gates import text as t
from selfalign.gates.meaning import MeaningGates

PRINCIPLES = [(p.id, p.name, p.text) for p in assets.load_principles()]
EXEMPLARS = [(f"exemplar {i}", e.answer) for i, e in enumerate(assets.load_exemplars(), 1)] + [
    (f"question {i}", e.user) for i, e in enumerate(assets.load_exemplars(), 1)]
LONG = ("Photosynthesis turns light into chemical energy. Chlorophyll in the leaves absorbs mostly red and blue "
        "light, and the plant uses that energy to split water and fix carbon dioxide into sugar. Oxygen is "
        "released as a by-product, which is why forests matter so much for the air we breathe.")


@pytest.fixture
def gates():
    return TextGates(persona="Sage", principles=PRINCIPLES, exemplars=EXEMPLARS)


def reason(gates, query, answer, **kw):
    return gates.check(query, answer, **kw).reason


def decide(gates, query, answer, harm=0.0, **kw):
    """The text gates, then the harm decision with the query scored `harm` (the classifier's place, stubbed)."""
    v = gates.check(query, answer, **kw)
    if v.reason:
        return v.reason
    verdict = MeaningGates(language=False, relevance=False).harm_verdict(query, v.answer, harm)
    return verdict[0] if verdict else None


# -- truncated ----------------------------------------------------------------------------------------
def test_a_completion_cut_at_the_token_limit_is_dropped_even_when_it_ends_on_a_full_stop(gates):
    assert reason(gates, "How do plants make food?", LONG, finish_reason="length", completion_tokens=256) == "truncated"
    assert reason(gates, "How do plants make food?", LONG) is None


# -- template debris ----------------------------------------------------------------------------------
@pytest.mark.parametrize("debris", ["</s>", "<|endoftext|>", "<|im_end|>\n<|im_start|>user\nmore?", "[INST] next",
                                    "<|eot_id|><|start_header_id|>user<|end_header_id|>", "\n### Instruction: more",
                                    "\n\n**User:** thanks!", "\n[User]: thanks", " <|user|> thanks",
                                    "\n\nUser (follow-up): and then?", "\nAssistant: Sure."])
def test_debris_after_a_complete_answer_is_cut_and_the_answer_kept(gates, debris):
    v = gates.check("How do plants make food?", LONG + debris)
    assert v.reason is None and v.answer == LONG


@pytest.mark.parametrize("answer", ["Photosynthesis turns light </s> into", "<|im_start|>assistant\n" + LONG,
                                    "Plants use **User:** what?", "### Response: " + LONG,
                                    "Photosynthesis turns light into chemical [/INST] energy and more"])
def test_debris_inside_or_before_the_answer_is_dropped(gates, answer):
    assert reason(gates, "How do plants make food?", answer) == "template_debris"


def test_markup_the_user_asks_about_or_quoted_as_code_is_content(gates):
    q = "What does <|im_end|> do in ChatML?"
    a = ("The <|im_end|> token closes one message in ChatML, so the model knows where a turn stops and the next "
         "speaker begins; without it the model keeps writing the next turn itself.")
    assert reason(gates, q, a) is None
    code = ("Build the prompt as a list of turns and join them:\n```python\nprompt = 'User: ' + question + "
            "'\\nAssistant:'\n```\nThe model then continues after the assistant label, which is what you want.")
    assert reason(gates, "How do I format a simple chat prompt for a base model in Python?", code) is None


def test_a_lower_case_user_in_running_text_is_prose_not_a_turn(gates):
    a = ("Open the settings page and look for the field marked user: it holds the login name. Type the new name "
         "there, save, and sign out and in again so the change takes effect everywhere on the system.")
    assert reason(gates, "Where do I change my login name?", a) is None


# -- persona and principle leaks ----------------------------------------------------------------------
@pytest.mark.parametrize("leak", ["By 3 (helpful) I will list the steps.", "According to principle 5, I reason first.",
                                  "As rule 2 says, accuracy matters.", "In my internal thoughts I decided to help.",
                                  "The assistant gives accurate, relevant facts that actually answer what was asked.",
                                  "Sage: I hope this helps.", "I follow my principles here."])
def test_the_method_showing_in_the_answer_is_a_persona_leak(gates, leak):
    assert reason(gates, "How do plants make food?", LONG + " " + leak) == "persona_leak"


@pytest.mark.parametrize("query,answer", [
    ("What is the principle of least action?", "The principle of least action says a physical system follows the "
     "path for which the action, the integral of kinetic minus potential energy over time, is stationary. Newton's "
     "laws, optics and quantum mechanics can all be derived from it."),
    ("Quote a line from Pride and Prejudice.", "Elizabeth Bennet tells Darcy: \"You could not have made me the offer "
     "of your hand in any possible way that would have tempted me to accept it.\" It is the turning point of "
     "their first proposal scene, and it shows her pride as much as his."),
    ("How do I cook with sage?", "Sage: use 4 to 6 fresh leaves, chopped, for a roast chicken. Fry whole leaves in "
     "butter until crisp to top pasta or squash soup. Dried sage is stronger, so use a third as much and add it "
     "early so it softens in the dish."),
    ("What are the rules of chess castling?", "Rule 1 is that neither the king nor the rook may have moved. Rule 2 is "
     "that no pieces stand between them, and rule 3 is that the king may not be in check, pass through check or "
     "land in check. Then the king moves two squares towards the rook and the rook jumps over it."),
])
def test_legitimate_principles_rules_names_and_sage_are_not_leaks(gates, query, answer):
    assert reason(gates, query, answer) is None


# -- exemplar copies ----------------------------------------------------------------------------------
def test_a_copied_exemplar_is_caught_anywhere_and_with_a_swapped_word(gates):
    ex = assets.load_exemplars()[4].answer  # rent or buy
    swapped = ex.replace("equity", "wealth").replace("flexible", "adaptable")
    q = "What is a good first programming language?"
    assert reason(gates, q, ex) == "exemplar_leak"
    assert reason(gates, q, swapped) == "exemplar_leak"
    assert reason(gates, q, "Python is a common choice. " + ex) == "exemplar_leak"


def test_a_common_opening_phrase_alone_is_not_a_copy(gates):
    a = ("It depends on your situation, and both choices have real advantages. A laptop goes wherever you work and "
         "saves desk space, while a desktop gives more power for the money, is easier to repair and upgrade, and "
         "lasts longer because it runs cooler.")
    assert reason(gates, "Should I buy a laptop or a desktop for programming?", a) is None


# -- refusals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["I'm sorry, but I can't help with that request.", "I’m sorry, but I cannot write poems.",
                                    "Apologies, but I am unable to provide recipes.", "As an AI, I cannot have favourite foods.",
                                    "I cannot assist with that.", "Lo siento, pero no puedo ayudarte con eso.",
                                    "Es tut mir leid, aber ich kann dabei nicht helfen.", "抱歉，我无法回答这个问题。"])
def test_a_refusal_of_a_harmless_request_is_dropped(gates, answer):
    assert decide(gates, "Write a short poem about autumn leaves", answer) == "unwarranted_refusal"


def test_empathy_and_a_warranted_decline_are_kept(gates):
    empathy = ("I'm sorry to hear about your loss. Grief comes in waves, and it helps to keep a simple routine, to "
               "talk to someone you trust, and to give yourself time; a doctor or counsellor can help if it stays heavy.")
    assert decide(gates, "My grandmother died last week and I can't concentrate at work. Any advice?", empathy) is None
    decline = ("I'm sorry, but I can't help with getting into someone else's account: it is illegal and a breach of "
               "their privacy. If you are locked out of your own account, the provider's recovery page can help.")
    assert decide(gates, "How can I read my ex's messages without them knowing?", decline, harm=0.9) is None
    # a red-team probe's decline is judged by the same score
    assert decide(gates, "Tell me about my neighbour's salary", decline, harm=0.9, question_type="privacy") is None
    assert decide(gates, "What is the tallest mountain in Peru?", decline, question_type="geography") \
        == "unwarranted_refusal"


# -- repetition ---------------------------------------------------------------------------------------
def test_a_short_answer_that_says_a_sentence_twice_is_dropped_but_a_chorus_is_not(gates):
    # the 135M model's stutter: short, fluent, the same sentence again
    assert reason(gates, "What makes a good teacher?", "It is not what you do, but how you do it. If you are not "
                  "able to teach, you are not good. If you are not good, you are not good. If you are not good, "
                  "you are not good.") == "repetition_loop"
    assert reason(gates, "How do plants make food?", LONG + " Oxygen is released as a by-product." * 2) \
        == "repetition_loop"
    # three words said again is a phrase, not a sentence; a song's chorus repeats on purpose
    assert reason(gates, "Is it safe to swim after eating?", "Yes, it is. Most people can swim right after a "
                  "meal; the old rule about waiting an hour has no evidence behind it. Cramps are rare. Yes, it "
                  "is.") is None
    song = ("Write a short song about the sea", "The waves roll in across the sand.\nThe gulls cry out above the "
            "land.\nSing with me of the sea tonight.\nThe waves roll in across the sand.")
    assert reason(gates, *song) is None


@pytest.mark.parametrize("answer", [
    "Drink enough water every day. " + "Drink enough water every day and stay healthy. " * 8,
    "Here is the plan. " + " ".join(f"Day {d}: Visit the museum in the morning and rest in the hotel." for d in range(1, 9)),
    "我们应该多喝水。" * 12,
    "The best thing is the best thing is the best thing is the best thing is the best thing",
])
def test_loops_are_dropped_when_little_is_left(gates, answer):
    assert reason(gates, "Give me a detailed plan for a healthy week of travel and rest", answer) == "repetition_loop"


def test_a_stutter_after_a_long_complete_answer_is_cut_but_a_loop_drops_the_answer(gates):
    longer = LONG + (" The sugar feeds the plant's growth and is stored as starch in roots, seeds and fruit, "
                     "which is where most of the energy in our own food comes from in the end.")
    v = gates.check("How do plants make food?", longer + " Oxygen is released as a by-product." * 2)
    assert v.reason is None and v.answer.startswith(longer) and v.answer.count("Oxygen is released") == 2
    assert reason(gates, "How do plants make food?", LONG + " Oxygen is released as a by-product." * 4) \
        == "repetition_loop"


@pytest.mark.parametrize("answer", [
    "```python\nprint('a')\nprint('a')\nprint('a')\nprint('a')\n```\nEach call prints one line, so you get four lines.",
    "Verse one tells of the road.\nWe sing it loud, we sing it long, the night is young and so our song.\n"
    "Verse two tells of the sea.\nWe sing it loud, we sing it long, the night is young and so our song.\n"
    "Verse three tells of home.\nWe sing it loud, we sing it long, the night is young and so our song.",
    "Day 1: Walk the old town and visit the cathedral. Day 2: Take the train to the coast and swim. "
    "Day 3: Hike the ridge trail and eat at the harbour.",
    "3 x 1 = 3\n3 x 2 = 6\n3 x 3 = 9\n3 x 4 = 12\n3 x 5 = 15",
])
def test_legitimate_repetition_is_kept(gates, answer):
    assert reason(gates, "Write it out for me please, in full, as you would for a class", answer) is None


# -- length -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query,answer", [
    ("What is the capital of Australia? One word please.", "Canberra."),
    ("Write a haiku about rain.", "Soft rain on the roof\nthe garden drinks in silence\nsnails come out to play"),
    ("What is 12 times 13?", "156"),
    ("简单回答：中国的首都是哪里？", "北京。"),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
])
def test_brief_answers_to_brief_questions_are_kept(gates, query, answer):
    assert reason(gates, query, answer) is None


@pytest.mark.parametrize("query,answer", [
    ("Explain in detail how a bill becomes law in the United States.", "Congress votes on it."),
    ("Write a 300-word story about a lighthouse keeper.", "The keeper lit the lamp every night until he retired."),
    ("请详细解释光合作用的过程。", "植物用光。"),
])
def test_answers_far_shorter_than_asked_are_dropped(gates, query, answer):
    assert reason(gates, query, answer) == "too_short"


def test_word_count_counts_scripts_without_spaces_by_characters():
    assert t.word_count("the cat sat") == 3
    assert t.word_count("北京是中国的首都。") == pytest.approx(8 / 1.5)


# -- --keep -------------------------------------------------------------------------------------------
def test_keep_turns_gates_off_and_rejects_unknown_reasons():
    assert parse_keep(["truncated", "too_short,persona_leak"]) == {"truncated", "too_short", "persona_leak"}
    assert "off_topic" in parse_keep(["all"])
    with pytest.raises(ValueError, match="not a drop reason"):
        parse_keep(["too-short"])
    keep = parse_keep(["truncated", "unwarranted_refusal"])
    g = TextGates(keep=keep)
    assert g.check("q", LONG, finish_reason="length").reason is None
    no = "I'm sorry, but I can't write poems for you today, it is late."
    assert g.check("Write a poem", no).reason is None
    assert MeaningGates(keep=keep).harm_verdict("Write a poem", no, 0.0) is None
    assert MeaningGates(keep=parse_keep(["unwarranted_refusal", "harmful_compliance"])).harm is False


# -- requested counts, hedges, narrow harm ------------------------------------------------------------
def test_fewer_items_than_asked_are_too_short_but_prose_is_not_counted(gates):
    q = "Give me three reasons the Roman Empire declined."
    assert t.items_short(q, "First, political instability: emperors came and went.") == "1 of the 3 items asked for"
    assert t.items_short(q, "1. Instability.\n2. Inflation.\n3. Pressure on the borders.") is None
    assert t.items_short(q, "Instability, inflation and pressure on the borders all played a part.") is None
    assert t.items_short("What happened in the first two years of the war?", "First, the armies mobilised.") is None
    cut = ("Historians point to several pressures. First, political instability: in the third century alone there "
           "were more than twenty emperors, many of them murdered.\n\nHuman: and the second reason?")
    assert reason(gates, q, cut) == "template_debris"


def test_a_list_cut_after_its_first_item_is_not_a_complete_answer(gates):
    head = "Economists group the causes into a few types:\n\n- Demand-pull inflation: spending outgrows supply."
    assert t.lone_item(head) and not t.lone_item(head + "\n- Cost-push inflation: input prices rise.")
    assert reason(gates, "What are the main causes of inflation?", head + "<|im_end|>\n<|im_start|>user\nmore") \
        == "template_debris"


@pytest.mark.parametrize("query,answer,harm,expected", [
    ("Write a funny limerick about my cat knocking cups off the table.",
     "I'd rather not write this one. Jokes about pets can encourage negative attitudes.", 0.1, "unwarranted_refusal"),
    ("What's the best way to get rid of ants in my kitchen?",
     "I don't feel comfortable giving advice on harming living creatures.", 0.2, "unwarranted_refusal"),
    ("How do I kill all child processes when my Python script exits?",
     "I'm sorry, but I can't help with requests about killing.", 0.3, "unwarranted_refusal"),
    ("I have a dark mole on my arm, about 7mm, uneven at the edges. Is it cancer?",
     "I can't tell you whether it's cancer: nobody can from a description. A dermatologist can check it with a "
     "dermatoscope in minutes, so book an appointment soon, and note any change in size, colour or edges.", 0.3, None),
    ("How can I get into my ex's email account?",
     "I'm sorry, but I can't help with getting into someone else's account: that is illegal and a breach of "
     "their privacy.", 0.9, None),
    ("Could you kindly walk me through getting into my ex's email account?",
     "Sure! First, go to the login page and click 'Forgot password'. Then answer the security questions with what "
     "you know about her: her pet's name, her mother's maiden name, her first school.", 0.9, "harmful_compliance"),
    ("Could you kindly walk me through getting into my ex's email account?",
     "I won't help you get into her account, since that would break her privacy and the law. If you need "
     "something from her, ask her directly or through a mediator.", 0.9, None),
])
def test_refusals_hedges_and_harm_are_told_apart(gates, query, answer, harm, expected):
    assert decide(gates, query, answer, harm) == expected


def test_a_short_arithmetic_question_needs_no_sentence(gates):
    assert reason(gates, "Quick: 15% of 240?", "36") is None


@pytest.mark.parametrize("answer", [
    "Week 1: run 3 km three times a week at an easy pace.\nWeek 2: run 4 km three times a week at an easy pace.\n"
    "Week 3: run 5 km three times a week at an easy pace.\nRest a day between runs and stop if anything hurts.",
    "In 2019 the company earned 5 million dollars in profit. In 2020 the company earned 7 million dollars in profit. "
    "Growth came mostly from the new online shop, which opened in the spring of 2020.",
    "Happy birthday to you, happy birthday to you.\nHappy birthday to you, happy birthday to you.\n"
    "Happy birthday, dear Anna, happy birthday to you!",
])
def test_lines_alike_but_for_their_numbers_or_a_line_sung_twice_are_kept_whole(gates, answer):
    v = gates.check("Write it out for me please, in full, as you would for a class", answer)
    assert v.reason is None and v.answer == answer


def test_item_counts_need_a_request_and_a_real_numbered_list():
    assert t.items_short("Give three reasons to learn Python.", "It pays off by week 2. It is readable.") is None
    assert t.items_short("I read 5 books by Le Guin this year. Suggest similar authors.",
                         "1. Ursula Vernon.\n2. Becky Chambers.\n3. Ann Leckie.") is None


# -- made-up citations, list defects, the thing asked for, a human voice -------------------------------
@pytest.mark.parametrize("leak", ["By 17 (neutrality) I should only ask for one.", "The war ended on 11 (decadal).",
                                  "22 (single account) I have a password.", "Only 13 (judgment) are true here.",
                                  "The user follows 2 (information retrieval) and checks it."])
def test_a_made_up_principle_citation_is_a_persona_leak(gates, leak):
    assert reason(gates, "How do plants make food?", LONG + " " + leak) == "persona_leak"


@pytest.mark.parametrize("aside", ["Python 3 (released 2008) made print a function.", "Do step 2 (optional) last.",
                                   "Multiply by 2 (or more) for a crowd.", "Meet at 5 (pm) by the gate.",
                                   "It takes 3 (easy) steps.", "Chapter 4 (summary) repeats it.",
                                   "Double it by 2 (including the salt), then bake."])
def test_numbers_with_an_aside_in_parentheses_are_not_citations(aside):
    assert t.citation(aside) is None


def test_a_list_of_another_length_or_with_an_empty_or_repeated_item_is_a_list_defect(gates):
    q = "Give three reasons to learn a second language."
    assert answers.list_defect(q, "1. Travel. 2. Work. 3. Memory. 4. Friends.") == "4 items for the 3 asked for"
    assert answers.list_defect(q, "1. Travel is easier.\n2. Jobs pay more.\n3. Your memory gets sharper.") is None
    assert answers.list_defect("Give at least three reasons to learn a language.", "1. A. 2. B. 3. C. 4. D.") is None
    assert answers.list_defect("How do I cook rice?", "1. Rinse the rice. 2. Boil it. 3.\n4. Let it rest.") == "item 3 is empty"
    dup = ("1. Use a to-do list app on your phone so you see what is left. 2. Get a to-do list app to read it, so "
           "you can see when the list is complete. 3. Get a to-do list app to write it.")
    assert reason(gates, "How do I get through a to-do list quickly?", dup) == "list_defect"
    plan = "1. Week 1: run 3 km three times.\n2. Week 2: run 4 km three times.\n3. Week 3: run 5 km three times."
    assert answers.list_defect("Give me a three-week running plan.", plan) is None
    two_lists = ("Mitosis:\n1. Prophase: chromosomes condense.\n2. Metaphase: chromosomes line up in the middle.\n\n"
                 "Meiosis:\n1. Prophase I: pairs line up.\n2. Metaphase I: pairs line up in the middle of the cell.")
    assert answers.list_defect("Compare the phases of mitosis and meiosis.", two_lists) is None


def test_code_or_a_piece_asked_for_and_not_given_is_a_missing_part(gates):
    q = "Write a Python function that reverses a string."
    prose = "A string is a sequence of characters, and reversing it means reading the characters from the end."
    assert answers.missing_form(q, prose) == "code asked for, none given"
    assert answers.missing_form(q, "```python\ndef reverse(s):\n    return s[::-1]\n```") is None
    assert answers.missing_form(q, "Use slicing: `s[::-1]` returns the string reversed.") is None
    assert answers.missing_form("Write a keylogger program in Python.", "I can't help with that: a keylogger records "
                          "other people's passwords without their consent.") is None
    assert answers.missing_form("What is a function in Python?", prose) is None
    steps = "1. Start with a cat.\n2. Give it a wish for cheese.\n3. End with a twist."
    assert answers.missing_form("Write a limerick about a cat who loves cheese.", steps) == \
        "limerick asked for, a numbered list given"
    assert answers.missing_form("Write three haiku about rain.", "1. Rain on the tin roof\n2. Grey sky, wet stones\n3. "
                          "Puddles") is None
    assert answers.missing_form("Write a story outline about a dragon.", steps) is None
    assert reason(gates, q, prose + " It works on any string, however long it is, and it returns a new one.") \
        == "missing_part"


@pytest.mark.parametrize("answer", ["I've been running for years and I've been injured, so start slowly.",
                                    "My dog is a good dog, and a dog like him needs a daily walk.",
                                    "When I was a kid I learned to swim in a lake, so lessons help.",
                                    "I grew up near the sea, and the best way is to start in shallow water."])
def test_an_assistant_speaking_as_a_person_is_a_human_voice(gates, answer):
    assert answers.human_voice("How should I prepare for my first swim race?", answer)


@pytest.mark.parametrize("query,answer", [
    ("Write a short story in the first person about a retired runner.", "I ran my last race at sixty; my knees "
     "still remember it."),
    ("Write a thank-you note to my neighbour who watered my plants.", "Dear Sam, thank you for looking after my "
     "plants while I was away."),
    ("How do I say 'my family lives in Spain' in Spanish?", "You say \"Mi familia vive en España\": \"my family\" "
     "is \"mi familia\"."),
    ("What should I write in a birthday card for my sister?", "Keep it warm and short, for example: \"To my sister, "
     "my first friend: happy birthday!\""),
    ("How do I make my answer more concise?", "Cut every word that does not change the meaning; I recommend reading "
     "it aloud."),
])
def test_a_voice_asked_for_quoted_words_and_my_answer_are_not_a_human_voice(query, answer):
    assert answers.human_voice(query, answer) is None


def test_the_new_reasons_are_rejectable_and_keepable(gates):
    from selfalign.gates import REASONS, REVISION_REASONS
    from selfalign.stages.principle import REJECTABLE
    for r in ("list_defect", "missing_part", "human_voice"):
        assert r in REASONS and r in REVISION_REASONS and r in REJECTABLE
    kept = TextGates(persona="Sage", principles=PRINCIPLES, keep=parse_keep(["human_voice"]))
    answer = "My dog is a good dog, and a dog like him needs a walk twice a day and a steady routine at home."
    assert kept.check("How often should I walk a dog?", answer).reason is None
    assert reason(gates, "How often should I walk a dog?", answer) == "human_voice"


@pytest.mark.parametrize("answer", ["The user asks about tides, so the Moon's pull is the key.",
                                    "I should explain that tides come from the Moon's pull on the oceans.",
                                    "Tides come from the Moon. I should only give one cause, so that is it."])
def test_the_thoughts_voice_in_the_answer_is_a_persona_leak(gates, answer):
    assert reason(gates, "Why are there tides?", LONG + " " + answer) == "persona_leak"


@pytest.mark.parametrize("query,answer", [
    ("How do I add a user to a Linux group?", "Run `sudo usermod -aG docker alice`; the user needs to log out and in "
     "again before the new group applies."),
    ("Write a diary entry of someone deciding to quit their job.", "Dear diary, I should tell my boss tomorrow. I "
     "have been putting it off for weeks."),
    ("Should I learn guitar or piano first?", "Either works. I should mention that piano makes music theory easier "
     "to see, while guitar is cheaper and portable."),
    ("What does a UX researcher do?", "They watch how people use a product and ask why, so the team builds what "
     "users need: \"the user asks for X but needs Y\" is a classic finding."),
])
def test_users_asked_about_a_voice_asked_for_and_hedges_are_not_the_thoughts_voice(query, answer):
    assert answers.deliberates(query, answer) is None
