"""Option parsing, in this process (typer's CliRunner): every command's --help, a misspelled option or a bad
value named in one line, the shared backend options reaching the engine, an option of another backend refused,
`--set` typos in a recipe named, and --executor ray without Ray. Nothing here starts a model or Ray."""

import sys

import pytest

from support import invoke, one_error_line, write_jsonl

GOOD = ("Tides come from the Moon's gravity pulling on the oceans. The side of the Earth facing the Moon and the "
        "far side both bulge, so most coasts see two high tides and two low tides every day.")
INSTALL = "--executor ray needs Ray: pip install 'selfalign[ray]'"
MODEL_COMMANDS = ("generate", "principle", "refine")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFALIGN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("command", [*MODEL_COMMANDS, "dedup", "export", "run", "report", "cache info", "cache clear"])
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0 and "Example:" in result.stdout


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_the_model_commands_share_every_backend_and_executor_option(command):
    text = invoke(command, "--help").stdout
    for opt in ("--backend", "--model", "--base-url", "--api-key-env", "--api-key-file", "--batch-size", "--seed",
                "--concurrency", "--max-model-len", "--tensor-parallel-size", "--gpu-memory-utilization",
                "--dtype", "--quantization", "--tokenizer", "--no-cache", "--max-retries", "--request-timeout",
                "--executor", "--ray-address", "--ray-actors", "--ray-cpus-per-actor", "--ray-gpus-per-actor"):
        assert opt in text, (command, opt)
    assert "selfalign[ray]" in text  # the install hint keeps its brackets


@pytest.mark.parametrize(("args", "named"), [
    (["principle", "--temprature", "0.3"], "No such option: --temprature"),
    (["dedup", "--treshold", "0.8"], "No such option: --treshold"),
    (["export", "--format", "csv"], "Invalid value for '--format'"),
    (["principle", "--shard", "3/3"], "Invalid value for '--shard': 3/3: need 0 <= I < N"),
    (["principle", "--shard", "half"], "Invalid value for '--shard': expected I/N"),
    (["refine", "--backend", "llama"], "Invalid value for '--backend'"),
    (["generate", "--num", "many"], "Invalid value for '--num'"),
    (["principle", "--executor", "ray", "--ray-actors", "0"], "--ray-actors must be at least 1"),
])
def test_a_bad_option_is_one_line_naming_it(args, named):
    result = invoke(*args, stdin="")
    assert result.exit_code == 2 and result.stdout == ""
    assert named in one_error_line(result)


def test_a_misspelled_option_suggests_the_right_one():
    line = one_error_line(invoke("principle", "--temprature", "0.3", stdin=""))
    assert "--temperature" in line and "selfalign principle --help" in line


@pytest.fixture
def engine_options(monkeypatch, tmp_path):
    """Capture what the CLI hands the backend loader; answer with the scripted backend instead."""
    from selfalign import backends
    from selfalign.backends.scripted import ScriptedBackend

    rules = write_jsonl(tmp_path / "rules.jsonl", [{"text": f" {GOOD} It is a steady rhythm sailors have used."}])
    seen = []

    def load(name, **options):
        seen.append((name, options))
        return ScriptedBackend(model=str(rules))

    monkeypatch.setattr(backends, "load_backend", load)
    return seen


ALIGNED = '{"prompt": "Why are there tides?", "thoughts": "By 2.", "response": "%s"}\n' % GOOD


def test_vllm_options_reach_the_engine(engine_options):
    result = invoke("refine", "--backend", "vllm", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.5",
                    "--max-model-len", "4096", "--dtype", "bfloat16", "--quantization", "awq", "--no-cache", "-q",
                    "--keep", "all", stdin=ALIGNED)  # (every gate off: no embedding model to load)
    assert result.exit_code == 0, result.stderr
    assert engine_options == [("vllm", {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                                        "max_model_len": 4096, "dtype": "bfloat16", "quantization": "awq"})]
    assert '"verbose_response"' in result.stdout


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_openai_options_reach_the_engine_from_every_model_command(engine_options, command):
    result = invoke(command, "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                    "--max-model-len", "2048", "--tokenizer", "tiktoken:o200k_base", "--concurrency", "3",
                    "--max-retries", "1", "--request-timeout", "5", "--seed", "7", "--no-cache", "-q",
                    *(["--num", "0", "--no-embeddings"] if command == "generate" else []), stdin="")
    assert result.exit_code == 0, result.stderr
    assert engine_options == [("openai", {"model": "m", "base_url": "http://127.0.0.1:9/v1", "max_model_len": 2048,
                                          "tokenizer": "tiktoken:o200k_base", "concurrency": 3, "max_retries": 1,
                                          "request_timeout": 5.0, "seed": 7})]


@pytest.mark.parametrize(("args", "named"), [
    (["principle", "--backend", "scripted", "--model", "x", "--tensor-parallel-size", "4"],
     "--tensor-parallel-size: not an option of the scripted backend"),
    (["refine", "--backend", "transformers", "--concurrency", "4"],
     "--concurrency: not an option of the transformers backend"),
    (["generate", "--backend", "vllm", "--tokenizer", "tiktoken:o200k_base"],
     "--tokenizer: not an option of the vllm backend"),
])
def test_an_option_of_another_backend_is_one_line_naming_it(args, named):
    result = invoke(*args, stdin='{"prompt": "q"}\n')
    assert result.exit_code == 2 and result.stdout == ""
    assert named in one_error_line(result)


RECIPE = """
out = "{out}"
[backend]
name = "scripted"
[[stage]]
kind = "load"
path = "prompts.jsonl"
[[stage]]
kind = "principle"
[[stage]]
kind = "export"
name = "sft"
"""


@pytest.mark.parametrize(("setting", "named"), [
    ("principle.temprature=0.3", "temprature"),
    ("sft.fromat=alpaca", "fromat"),
    ("backend.modle=/models/x", "modle"),
    ("princple.temperature=0.3", "no stage is called 'princple'"),
    ("principle", "expected NAME.FIELD=VALUE"),
])
def test_set_typos_in_a_recipe_are_named(tmp_path, setting, named):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(out=tmp_path / "out"))
    result = invoke("run", str(recipe), "--set", setting, "--dry-run")
    assert result.exit_code == 2 and result.stdout == ""
    assert named in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_set_changes_the_plan(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(out=tmp_path / "out"))
    result = invoke("run", str(recipe), "--set", "principle.temperature=0.3", "--set", "sft.format=alpaca", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "'temperature': 0.3" in result.stdout and "'format': 'alpaca'" in result.stdout


def test_without_ray_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    rules = str(write_jsonl(tmp_path / "rules.jsonl", [{"text": f" By 2 (informative).\n\nSage: {GOOD}"}]))
    for cmd in (["principle"], ["refine"], ["generate", "--num", "1"]):
        result = invoke(*cmd, "--backend", "scripted", "--model", rules, "--executor", "ray", stdin='{"prompt": "q"}\n')
        assert result.exit_code == 2 and result.stdout == ""
        assert one_error_line(result) == f"error: {INSTALL}"
    result = invoke("dedup", "--executor", "ray", stdin='{"prompt": "q"}\n')
    assert result.exit_code == 2 and one_error_line(result) == f"error: {INSTALL}"
    # the local executor does not need it
    result = invoke("principle", "--backend", "scripted", "--model", rules, "-q", stdin='{"prompt": "q"}\n')
    assert result.exit_code == 0 and result.stdout
