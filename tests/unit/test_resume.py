"""Nothing lost, nothing repeated: the completion cache, resume with -o, SIGKILL and Ctrl-C."""


from selfalign.io.jsonl import done_ids



def test_torn_last_line_is_repaired(tmp_path):
    f = tmp_path / "out.jsonl"
    f.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "y"}\n{"id": "c", "pro')
    assert done_ids(str(f)) == {"a", "b"}
    assert f.read_text().endswith('"y"}\n')
