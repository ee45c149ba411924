import json

from selfalign import assets
from selfalign.backends.scripted import ScriptedBackend
from selfalign.records import Dropped, PromptRecord, normalize_text
from selfalign.report.counts import Report
from selfalign.stages.generate import RedTeam, SelfInstruct, candidate_problem, parse_numbered, red_team, self_instruct


def test_numbered_continuation_parsing_drops_a_half_finished_last_item():
    text = " Write a poem about rain.\n7. List three uses of salt.\n8) Explain how tides work\n9. Describe the"
    assert parse_numbered(text, finished=True)[0][-1] == "Describe the"
    items, cut = parse_numbered(text, finished=False)
    assert items == ["Write a poem about rain.", "List three uses of salt.", "Explain how tides work"]
    assert cut == "Describe the"


def test_candidate_filters_name_their_reason():
    cfg = SelfInstruct()
    assert candidate_problem("Too short.", cfg)[0] == "too_few_words"
    assert candidate_problem("word " * 151, cfg)[0] == "too_many_words"
    assert candidate_problem("Draw a picture of a happy cat.", cfg)[0] == "not_text_only"
    assert candidate_problem("- List three famous rivers please.", cfg)[0] == "starts_with_punctuation"
    assert candidate_problem("Élaborez une liste de trois fleuves.", cfg)[0] == "starts_non_ascii"
    assert candidate_problem("List three famous rivers of Europe.", cfg) is None


def test_self_instruct_from_public_format_accepts_num_novel_prompts(tmp_path):
    seeds = tmp_path / "seed_tasks.jsonl"
    rows = [{"id": f"seed_task_{i}", "name": f"t{i}", "instruction": text, "instances": [{"input": "", "output": ""}],
             "is_classification": False}
            for i, text in enumerate(["Name three rivers in Africa.", "Write a haiku about autumn leaves.",
                                      "Explain how a bicycle gear works.", "Give two tips for sleeping well.",
                                      "Summarise the plot of a fairy tale."])]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = assets.load_seeds(str(seeds))
    be = ScriptedBackend(rules=[{"text": " Name three rivers in Africa.\n7. Suggest a name for a pet turtle.\n"
                                         "8. Describe the smell of fresh bread to a friend.\n9. Draw a map of France.\n"
                                         "10. Suggest a name for a pet turtle!\n11. Explain why leaves turn red in"},
                                {"text": " Compose a short toast for a wedding dinner.\n7. List four board games "
                                         "for families.\n8. Explain what a prime number is."}])
    report = Report("generate")
    out = list(report.tally(self_instruct(pool, be, SelfInstruct(num=5, seed=1, batch_size=2), report)))
    kept = [r for r in out if isinstance(r, PromptRecord)]
    reasons = {d.drop_reason for d in out if isinstance(d, Dropped)}
    assert len(kept) == 5
    seeds_norm = {normalize_text(s) for s in pool}
    assert all(normalize_text(r.prompt) not in seeds_norm for r in kept)
    assert len({r.id for r in kept}) == 5
    assert {"duplicate", "not_text_only"} <= reasons
    assert report.kept == 5 and all(r.source == "self-instruct" for r in kept)


def test_red_team_keeps_question_type_and_topic(tmp_path):
    tg = tmp_path / "tgrt.jsonl"
    tg.write_text('{"topic": "tides", "question_type": "science", "question": "Why are there two tides a day?"}\n'
                  '{"topic": "Rome", "question_type": "history", "question": "Why did the Roman Empire fall?"}\n')
    types = assets.load_question_types(str(tg))
    be = ScriptedBackend(rules=[{"match": "List 10", "text": " volcanoes\n3. the printing press\n4. glaciers"},
                                {"match": "volcanoes\nQuestion:", "text": " What makes a volcano erupt suddenly?"},
                                {"match": "Question:", "text": " Who invented the printing press and why?"}])
    out = list(red_team(types, be, RedTeam(num=3, seed=0, topics_per_type=3), Report("g")))
    kept = [r for r in out if isinstance(r, PromptRecord)]
    assert len(kept) == 2  # the scripted model only knows two distinct questions: no duplicates kept
    assert all(r.question_type in {"science", "history"} and r.topic for r in kept)
    assert kept[0].topic == "tides" or kept[0].topic in {"volcanoes", "the printing press", "glaciers"}
