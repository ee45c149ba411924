from selfalign.io.jsonl import InputError, Output, read_records
from selfalign.records import PromptRecord, stable_id

from support import jsonl


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_is_read(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"prompt": "first"}\n\nnot json\n[1, 2]\n{"prompt": "bad \xff byte"}\n'
                     b'{"prompt": 3}\n{"id": "x"}\n{"prompt": "last"}\n')
    got = list(read_records(str(path), PromptRecord))
    good = [r.prompt for _, r in got if not isinstance(r, InputError)]
    errors = {n: str(r) for n, r in got if isinstance(r, InputError)}
    assert good == ["first", "last"]
    assert set(errors) == {2, 3, 4, 5, 6, 7}
    assert errors[2] == f"{path}:2: empty line"
    assert errors[3].startswith(f"{path}:3: contains invalid json")
    assert errors[4] == f"{path}:4: is not a JSON object"
    assert "utf-8" in errors[5]
    assert errors[6] == f"{path}:6: prompt: Input should be a valid string"
    assert errors[7].startswith(f"{path}:7: prompt: Field required")


def test_ids_are_stable_and_instruction_input_is_accepted():
    a = PromptRecord.model_validate({"prompt": "Hello  World!"})
    b = PromptRecord.model_validate({"prompt": "hello world"})
    assert a.id == b.id == stable_id("hello world")
    c = PromptRecord.model_validate({"instruction": "Sum these", "input": "1 2"})
    assert c.prompt == "Sum these\n\n1 2"
    assert PromptRecord.model_validate({"id": "mine", "prompt": "x"}).id == "mine"


def test_unknown_fields_survive_a_round_trip(tmp_path):
    rec = PromptRecord.model_validate({"prompt": "p", "category": "math"})
    out = tmp_path / "o.jsonl"
    with Output(str(out)) as w:
        w.write(rec)
    assert jsonl(out)[0]["category"] == "math"
