import pytest

from selfalign import assets
from selfalign.io.jsonl import InputError


def test_default_assets_load():
    ps = assets.load_principles()
    assert len(ps) == 16 and ps[0].id == "1" and ps[0].name == "ethical"
    assert len(assets.load_exemplars()) == 5
    assert len(assets.load_seeds()) >= 30
    assert len(assets.load_question_types()) == 20


def test_plain_numbered_text_principles(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("My rules\n\n1 (kind). Be kind.\n2 (brief): Be brief.\n- 7 (exact). Quote numbers exactly.\n")
    ps = assets.load_principles(str(f))
    assert [(p.id, p.name, p.text) for p in ps] == [
        ("1", "kind", "Be kind."), ("2", "brief", "Be brief."), ("7", "exact", "Quote numbers exactly.")]


def test_yaml_principles(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("principles:\n  - {id: safe, name: safety, text: Stay safe.}\n  - {name: honesty, text: Be honest.}\n")
    assert [p.id for p in assets.load_principles(str(f))] == ["safe", "2"]


def test_file_without_principles_is_a_clear_error(tmp_path):
    f = tmp_path / "empty.md"
    f.write_text("# nothing here\n")
    with pytest.raises(InputError, match=r"empty\.md: no principles found"):
        assets.load_principles(str(f))


def test_exemplar_without_thoughts_names_file_and_line(tmp_path):
    f = tmp_path / "ex.jsonl"
    f.write_text('{"user": "q", "thoughts": "t", "answer": "a"}\n{"user": "q2", "answer": "a2"}\n')
    with pytest.raises(InputError, match=r"ex\.jsonl:2: exemplar 2 has no 'thoughts'"):
        assets.load_exemplars(str(f))


def test_public_self_instruct_and_tgrt_formats(tmp_path):
    si = tmp_path / "seed_tasks.jsonl"
    si.write_text('{"id": "seed_task_0", "name": "x", "instruction": "Name three rivers.", '
                  '"instances": [{"input": "", "output": "Nile"}], "is_classification": false}\n')
    assert assets.load_seeds(str(si)) == ["Name three rivers."]
    tg = tmp_path / "tgrt.jsonl"
    tg.write_text('{"topic": "tides", "question_type": "science", "question": "Why are there two tides a day?"}\n'
                  '{"topic": "bees", "question_type": "science", "question": "How do bees see?"}\n'
                  '{"topic": "Rome", "question_type": "history", "question": "Why did Rome fall?"}\n')
    types = assets.load_question_types(str(tg))
    assert [t.name for t in types] == ["science", "history"]
    assert types[0].examples[1] == {"topic": "bees", "question": "How do bees see?"}
