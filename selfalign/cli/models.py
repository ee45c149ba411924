"""The model commands: generate, principle, refine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from selfalign.cli.app import (
    TP,
    BackendName,
    BackendOpt,
    BaseUrl,
    BatchSize,
    Concurrency,
    Dropped,
    DType,
    ExecutorName,
    ExecutorOpt,
    Exemplars,
    GpuMem,
    Input,
    Keep,
    KeyEnv,
    KeyFile,
    MaxModelLen,
    Method,
    MinWords,
    ModelOpt,
    NoCache,
    OnErr,
    OnError,
    Output,
    Persona,
    Principles,
    Quant,
    Quarantine,
    Quiet,
    RayActors,
    RayAddress,
    RayCpus,
    RayGpus,
    ReportPath,
    Retries,
    Run,
    Seed,
    Shard,
    Timeout,
    _engine,
    _keep,
    _parse_shard,
    _ray_backend,
    _ray_executor,
    _start_ray,
    app,
    fail,
    make_backend,
)


@app.command()
def generate(
    num: Annotated[int, typer.Option("--num", "-n", help="Stop after this many accepted prompts.")] = 20,
    method: Annotated[Method, typer.Option("--method", help="self-instruct, red-team, or both.")] = Method.self_instruct,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Seed pool: our JSONL ({'prompt'}), the public "
                     "self-instruct format, a question-type list (.txt) or TGRT seed JSONL for red-team.")] = None,
    question_types: Annotated[str | None, typer.Option("--question-types", help="red-team question types "
                              "(.txt or TGRT .jsonl), when --method both.")] = None,
    ratio: Annotated[float, typer.Option("--ratio", help="--method both: share of self-instruct prompts.")] = 0.5,
    novelty_threshold: Annotated[float, typer.Option("--novelty-threshold", help="Reject a candidate whose "
                                 "embedding cosine to the pool is at or above this.")] = 0.85,
    no_embeddings: Annotated[bool, typer.Option("--no-embeddings", help="Novelty by exact match only.")] = False,
    topics_per_type: Annotated[int, typer.Option("--topics-per-type", help="red-team: topics per question type.")] = 10,
    max_types: Annotated[int | None, typer.Option("--max-types", help="red-team: use only this many question "
                         "types, sampled with --seed.")] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests", help="Give up after this many requests.")] = None,
    output: Output = None, dropped: Dropped = None, report: ReportPath = None, quiet: Quiet = False,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = None, api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = None, max_model_len: MaxModelLen = None, tensor_parallel_size: TP = None,
    gpu_memory_utilization: GpuMem = None, dtype: DType = None, quantization: Quant = None,
    no_cache: NoCache = False, max_retries: Retries = None, request_timeout: Timeout = None,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Synthesise prompts: self-instruct from a seed pool, or topic-guided red-teaming.

    Example: [bold]selfalign generate --num 8 > prompts.jsonl[/]
    """
    from selfalign import assets
    from selfalign.jsonl import InputError
    from selfalign.stages.generate import GenerateConfig, red_team, self_instruct

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    cfg = GenerateConfig(num=num, seed=seed or 0, novelty_threshold=novelty_threshold,
                         topics_per_type=topics_per_type, max_requests=max_requests, max_types=max_types,
                         **({"batch_size": batch_size} if batch_size else {}))
    try:
        if method is Method.self_instruct:
            pool, types = assets.load_seeds(seeds), None
        elif method is Method.red_team:
            pool, types = None, assets.load_question_types(seeds)
        else:
            pool, types = assets.load_seeds(seeds), assets.load_question_types(question_types)
    except InputError as e:
        fail(str(e), 1)
    run = Run("generate", output, dropped, report, OnError.skip, quiet)
    run.total = num
    if rx:
        _start_ray(rx, run)
    opts = _engine(backend, model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file,
                   seed=seed, concurrency=concurrency, max_model_len=max_model_len, max_retries=max_retries,
                   timeout=request_timeout, tensor_parallel_size=tensor_parallel_size,
                   gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, quantization=quantization)
    be = _ray_backend(rx, backend, not no_cache, opts) if rx else make_backend(backend, cache=not no_cache, **opts)
    embedder = None
    if not no_embeddings:
        from selfalign.embeddings import Embedder

        embedder = Embedder()

    def results() -> Iterator[Any]:
        if pool is not None and types is None:
            yield from self_instruct(pool, be, cfg, run.report, embedder)
        elif types is not None and pool is None:
            yield from red_team(types, be, cfg, run.report, embedder)
        else:
            n_si = round(num * ratio)
            yield from self_instruct(pool, be, cfg.model_copy(update={"num": n_si}), run.report, embedder)
            yield from red_team(types, be, cfg.model_copy(update={"num": num - n_si}), run.report, embedder)

    run.execute(results())


@app.command()
def principle(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None,
    principles: Principles = None, exemplars: Exemplars = None, persona: Persona = "Sage",
    rename: Annotated[str | None, typer.Option("--rename", help="Replace the persona's name in answers.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.5,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.95,
    max_tokens: Annotated[int, typer.Option(help="New tokens per answer.")] = 256,
    min_words: MinWords = 25, keep: Keep = None,
    no_apology_bias: Annotated[bool, typer.Option("--no-apology-bias", help="Do not push down 'Sorry' "
                               "(logit bias -100; transformers and vllm backends only, not openai).")] = False,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = None, api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = None, max_model_len: MaxModelLen = None, tensor_parallel_size: TP = None,
    gpu_memory_utilization: GpuMem = None, dtype: DType = None, quantization: Quant = None,
    no_cache: NoCache = False, max_retries: Retries = None, request_timeout: Timeout = None,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Answer each prompt under the principle set, with internal thoughts; parse and filter.

    Example: [bold]selfalign principle prompts.jsonl --dropped dropped.jsonl > aligned.jsonl[/]
    """
    from selfalign import assets
    from selfalign.jsonl import InputError
    from selfalign.records import PromptRecord
    from selfalign.stages.principle import PrincipleConfig, PrincipleStage

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    try:
        plist, elist = assets.load_principles(principles), assets.load_exemplars(exemplars)
    except InputError as e:
        fail(str(e), 1)
    cfg = PrincipleConfig(persona=persona, rename=rename, temperature=temperature, top_p=top_p,
                          max_tokens=max_tokens, seed=seed, min_words=min_words, keep=_keep(keep),
                          push_down_apologies=not no_apology_bias, **({"batch_size": batch_size} if batch_size else {}))
    run = Run("principle", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    run.shard = _parse_shard(shard)
    run.resume()
    run.principle_names = {p.id: p.name for p in plist}
    opts = _engine(backend, model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file,
                   seed=seed, concurrency=concurrency, max_model_len=max_model_len, max_retries=max_retries,
                   timeout=request_timeout, tensor_parallel_size=tensor_parallel_size,
                   gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, quantization=quantization)
    if rx:
        _start_ray(rx, run)
        run.execute(rx.map_stage("principle", run.records(input, PromptRecord), run.report, backend.value, opts,
                                 not no_cache, {"principles": plist, "exemplars": elist, "config": cfg}, batch_size))
        return
    be = make_backend(backend, cache=not no_cache, **opts)
    try:
        stage = PrincipleStage(be, plist, elist, cfg, run.report)
    except ValueError as e:
        fail(str(e))
    run.execute(stage.run(run.records(input, PromptRecord)))


@app.command()
def refine(
    input: Input = "-", output: Output = None, dropped: Dropped = None, report: ReportPath = None,
    on_error: OnErr = OnError.skip, quarantine: Quarantine = None, quiet: Quiet = False, shard: Shard = None, persona: Persona = "Sage",
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.3,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="New tokens per answer.")] = 512,
    repetition_penalty: Annotated[float, typer.Option(help="Repetition penalty.")] = 1.1,
    min_words: MinWords = 25, keep: Keep = None,
    backend: BackendOpt = BackendName.transformers, model: ModelOpt = None, base_url: BaseUrl = None,
    api_key_env: KeyEnv = None, api_key_file: KeyFile = None, batch_size: BatchSize = None, seed: Seed = None,
    concurrency: Concurrency = None, max_model_len: MaxModelLen = None, tensor_parallel_size: TP = None,
    gpu_memory_utilization: GpuMem = None, dtype: DType = None, quantization: Quant = None,
    no_cache: NoCache = False, max_retries: Retries = None, request_timeout: Timeout = None,
    executor: ExecutorOpt = ExecutorName.local, ray_address: RayAddress = None, ray_actors: RayActors = 1,
    ray_cpus_per_actor: RayCpus = 0.5, ray_gpus_per_actor: RayGpus = 0.0,
) -> None:
    """Verbose cloning: re-answer with a detailed persona; the concise answer is kept beside it.

    Example: [bold]selfalign refine aligned.jsonl > verbose.jsonl[/]
    """
    from selfalign.records import AlignedRecord
    from selfalign.stages.refine import RefineConfig
    from selfalign.stages.refine import refine as run_refine

    rx = _ray_executor(executor, ray_address, ray_actors, ray_cpus_per_actor, ray_gpus_per_actor)
    cfg = RefineConfig(persona=persona, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                       repetition_penalty=repetition_penalty, seed=seed, min_words=min_words, keep=_keep(keep),
                       **({"batch_size": batch_size} if batch_size else {}))
    run = Run("refine", output, dropped, report, on_error, quiet)
    run.quarantine = quarantine
    run.shard = _parse_shard(shard)
    run.resume()
    opts = _engine(backend, model=model, base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file,
                   seed=seed, concurrency=concurrency, max_model_len=max_model_len, max_retries=max_retries,
                   timeout=request_timeout, tensor_parallel_size=tensor_parallel_size,
                   gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, quantization=quantization)
    if rx:
        _start_ray(rx, run)
        run.execute(rx.map_stage("refine", run.records(input, AlignedRecord), run.report, backend.value, opts,
                                 not no_cache, {"config": cfg}, batch_size))
        return
    be = make_backend(backend, cache=not no_cache, **opts)
    run.execute(run_refine(run.records(input, AlignedRecord), be, cfg, run.report))


