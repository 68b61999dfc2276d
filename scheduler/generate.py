"""Create items by asking two or more models the same prompts (`labelbot generate`).

A model is given as NAME=SPEC. SPEC is either an OpenAI-compatible endpoint (vLLM, TGI, Ollama,
llama.cpp server, OpenAI itself all serve POST /v1/chat/completions), e.g. `http://gpu1:8000/v1`,
optionally with `#served-model-name` when the server's model id differs from NAME; or a local
transformers model folder (a causal LM with its tokenizer, e.g. a fine-tune artifact).

Items go through the core's import path (the same validation as `labelbot import`), with a
deterministic id per (prompt, models) so re-running a prompts file adds nothing twice. A prompt for
which fewer than two models answered is skipped and reported, never imported with one response.
`duel_latest` pits the newest DPO/SFT model of a campaign against the previous one (or its base).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.core.errors import InvalidInput, NotFound
from bot.core.events import Actor
from bot.core.importer import MAX_TEXT_CHARS, ROLES, validate_row
from storage import queries as q
from storage.db import Database

MAX_PROMPTS = 10_000
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
GENERATOR = Actor("cli", "", "labelbot-generate")


class GenerationError(Exception):
    """One model could not answer one prompt."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "endpoint" | "local"
    target: str  # chat-completions URL or model folder
    served_model: str  # the "model" field sent to an endpoint

    @property
    def public(self) -> str:
        """What is safe to store: the endpoint without credentials or query, or the folder."""
        if self.kind == "endpoint":
            from urllib.parse import urlsplit

            parts = urlsplit(self.target)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{host}{port}{parts.path}"
        return self.target


@dataclass(frozen=True)
class PromptIn:
    key: str | None
    prompt: Any  # str or list of {role, content}
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerateResult:
    added: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (prompt id, why)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (prompt id, model, error)
    item_ids: list[str] = field(default_factory=list)


def parse_model_spec(text: str) -> ModelSpec:
    """NAME=URL[#served-name] or NAME=/path/to/model."""
    if "=" not in text:
        raise InvalidInput(f"--model {text!r}: use NAME=SPEC (an http(s) endpoint or a local model folder).")
    name, spec = (part.strip() for part in text.split("=", 1))
    if not name or len(name) > 200:
        raise InvalidInput("--model: the name before = must be 1 to 200 characters.")
    if not spec:
        raise InvalidInput(f"--model {name}: SPEC is empty.")
    if spec.startswith(("http://", "https://")):
        url, _, served = spec.partition("#")
        url = url.rstrip("/")
        if not url.endswith("/chat/completions"):
            url = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
        return ModelSpec(name, "endpoint", url, served or name)
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise InvalidInput(f"--model {name}: {spec} is neither an http(s) endpoint nor a local model folder "
                           "(no config.json there).")
    from bot.extras import GENERATION_MODULES, require

    require(f"--model {name} (a local model)", GENERATION_MODULES)
    return ModelSpec(name, "local", str(path.resolve()), name)


def _check_prompt(prompt: Any, where: str) -> Any:
    if isinstance(prompt, str) and prompt.strip():
        if len(prompt) > MAX_TEXT_CHARS:
            raise InvalidInput(f"{where}: prompt longer than {MAX_TEXT_CHARS} characters.")
        return prompt
    if isinstance(prompt, list) and prompt and all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in prompt):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise InvalidInput(f"{where}: prompt must be non-empty text or a list of {{role, content}} messages.")


def read_prompts(path: Path) -> list[PromptIn]:
    """JSONL rows ({"id"?, "prompt", "meta"?} or a bare JSON string), or a .txt file with one prompt per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text.") from exc
    prompts: list[PromptIn] = []
    as_text = path.suffix.lower() == ".txt"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        if as_text:
            prompts.append(PromptIn(None, _check_prompt(line.strip(), where)))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{where}: not valid JSON ({exc.msg}).") from exc
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict) or "prompt" not in row:
            raise InvalidInput(f"{where}: each row needs a prompt.")
        key = row.get("id")
        if key is not None and (not isinstance(key, str | int) or isinstance(key, bool) or not str(key).strip()):
            raise InvalidInput(f"{where}: id must be a non-empty string.")
        meta = row.get("meta") or {}
        if not isinstance(meta, dict):
            raise InvalidInput(f"{where}: meta must be an object.")
        prompts.append(PromptIn(str(key) if key is not None else None, _check_prompt(row["prompt"], where), meta))
    if not prompts:
        raise InvalidInput(f"{path} has no prompts.")
    if len(prompts) > MAX_PROMPTS:
        raise InvalidInput(f"{path} has {len(prompts)} prompts; at most {MAX_PROMPTS} per run.")
    return prompts


def prompt_key(prompt: PromptIn) -> str:
    """A stable name for a prompt: its id from the file, else a hash of its text."""
    import hashlib

    if prompt.key:
        return prompt.key
    return hashlib.sha1(json.dumps(prompt.prompt, sort_keys=True).encode()).hexdigest()[:16]


def as_messages(prompt: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


# ---------------------------------------------------------------------------------------------- backends


class EndpointClient:
    """POST /v1/chat/completions with retries on 429/5xx and connection errors (Retry-After honoured)."""

    def __init__(self, settings: Settings, *, max_tokens: int, temperature: float, concurrency: int = 8,
                 retries: int = 3) -> None:
        self.settings = settings
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.semaphore = asyncio.Semaphore(concurrency)

    async def __aenter__(self) -> EndpointClient:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.settings.labelbot_generate_timeout)
        self.session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.session.close()

    async def complete(self, spec: ModelSpec, prompt: Any) -> str:
        import aiohttp

        headers = {"Content-Type": "application/json"}
        key = self.settings.labelbot_generate_api_key
        if key is not None and key.get_secret_value():
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        body = {"model": spec.served_model, "messages": as_messages(prompt), "max_tokens": self.max_tokens,
                "temperature": self.temperature, "stream": False}
        last = "no attempt"
        for attempt in range(self.retries + 1):
            delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
            try:
                async with self.semaphore, self.session.post(spec.target, json=body, headers=headers) as resp:
                    if resp.status == 200:
                        return _content(await resp.json(content_type=None), spec)
                    last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                    if resp.status not in RETRY_STATUSES:
                        break
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        delay = min(60.0, float(retry_after))
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = f"{type(exc).__name__}: {exc}"[:200]
            except ValueError as exc:  # unparseable body
                last = f"bad response: {exc}"[:200]
                break
            if attempt < self.retries:
                await asyncio.sleep(delay)
        raise GenerationError(last)


def _content(payload: Any, spec: ModelSpec) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GenerationError(f"{spec.name}: the response has no choices[0].message.content") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise GenerationError(f"{spec.name}: the message content is not text")
    return content.strip()


class LocalModel:
    """A transformers causal LM from a folder; generation runs in a worker thread."""

    def __init__(self, spec: ModelSpec, *, max_tokens: int, temperature: float, seed: int = 0) -> None:
        from bot.extras import GENERATION_MODULES, require

        require(f"Generating with {spec.name} (a local model)", GENERATION_MODULES)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(spec.target)
        self.model = AutoModelForCausalLM.from_pretrained(spec.target)
        self.model.eval()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed

    def complete(self, prompt: Any) -> str:
        import torch

        tok = self.tokenizer
        if tok.chat_template:
            text = tok.apply_chat_template(as_messages(prompt), tokenize=False, add_generation_prompt=True)
        else:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        enc = tok(text, return_tensors="pt", add_special_tokens=not tok.chat_template)
        torch.manual_seed(self.seed)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_tokens, "pad_token_id": pad}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature)
        else:
            kwargs.update(do_sample=False)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


async def generate_responses(prompts: list[PromptIn], specs: list[ModelSpec], settings: Settings, *,
                             max_tokens: int = 512, temperature: float = 0.7, concurrency: int = 8,
                             progress: Callable[[int], None] | None = None) -> list[dict[str, str | Exception]]:
    """For each prompt, {model name: text or the exception it failed with}."""
    results: list[dict[str, str | Exception]] = [{} for _ in prompts]
    endpoints = [s for s in specs if s.kind == "endpoint"]
    locals_ = [s for s in specs if s.kind == "local"]
    done = 0

    async def one(i: int, spec: ModelSpec, client: EndpointClient) -> None:
        nonlocal done
        try:
            results[i][spec.name] = await client.complete(spec, prompts[i].prompt)
        except GenerationError as exc:
            results[i][spec.name] = exc
        done += 1
        if progress:
            progress(done)

    async def run_local(spec: ModelSpec) -> None:
        nonlocal done
        model = await asyncio.to_thread(LocalModel, spec, max_tokens=max_tokens, temperature=temperature)
        for i, p in enumerate(prompts):
            try:
                results[i][spec.name] = await asyncio.to_thread(model.complete, p.prompt)
            except Exception as exc:
                results[i][spec.name] = GenerationError(f"{type(exc).__name__}: {exc}"[:200])
            done += 1
            if progress:
                progress(done)

    async with EndpointClient(settings, max_tokens=max_tokens, temperature=temperature,
                              concurrency=concurrency) as client:
        tasks = [one(i, s, client) for s in endpoints for i in range(len(prompts))]
        # Local models run one at a time (each fills the CPU/GPU); endpoints run concurrently alongside.
        local_chain = _chain([run_local(s) for s in locals_])
        await asyncio.gather(*tasks, local_chain)
    return results


async def _chain(coros: list[Any]) -> None:
    for c in coros:
        await c


def item_id_for(prompt: PromptIn, specs: list[ModelSpec]) -> str:
    digest = hashlib.sha1(json.dumps([prompt.prompt, [(s.name, s.public, s.served_model) for s in specs]],
                                     sort_keys=True).encode()).hexdigest()[:16]
    return f"{prompt.key}-{digest[:8]}" if prompt.key else f"gen-{digest}"


def generate_items(db: Database, settings: Settings, campaign: str, prompts: list[PromptIn], specs: list[ModelSpec],
                   *, actor: Actor = GENERATOR, max_tokens: int = 512, temperature: float = 0.7,
                   concurrency: int = 8, extra_meta: dict[str, Any] | None = None,
                   progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Ask every model every prompt and import one item per prompt with all the answers."""
    from bot.core.service import LabelingService

    if len(specs) < 2:
        raise InvalidInput("Give at least two models (--model NAME=SPEC, twice or more).")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidInput("Model names must be distinct.")
    if len(specs) > 8:
        raise InvalidInput("At most 8 models per item.")
    if max_tokens < 1 or not 0 <= temperature <= 2:
        raise InvalidInput("max tokens must be positive and temperature within [0, 2].")
    service = LabelingService(db, settings.admins)
    service.campaign(campaign)  # NotFound before any model is asked
    answers = asyncio.run(generate_responses(prompts, specs, settings, max_tokens=max_tokens,
                                             temperature=temperature, concurrency=concurrency, progress=progress))
    result = GenerateResult()
    items = []
    for number, (prompt, got) in enumerate(zip(prompts, answers, strict=True), start=1):
        ext = item_id_for(prompt, specs)
        responses = []
        for spec in specs:
            value = got.get(spec.name)
            if isinstance(value, Exception):
                result.failures.append((ext, spec.name, str(value)))
            elif not value:
                result.failures.append((ext, spec.name, "empty answer"))
            elif len(value) > MAX_TEXT_CHARS:
                result.failures.append((ext, spec.name, f"answer longer than {MAX_TEXT_CHARS} characters"))
            else:
                responses.append({"model": spec.name, "text": value})
        if len(responses) < 2:
            result.skipped.append((ext, f"only {len(responses)} model(s) answered"))
            continue
        meta = {**prompt.meta, **(extra_meta or {}), "source": "labelbot generate", "prompt_key": prompt_key(prompt),
                "generation": {"models": {s.name: s.public for s in specs}, "max_tokens": max_tokens,
                               "temperature": temperature}}
        row = {"id": ext, "prompt": prompt.prompt, "responses": responses, "meta": meta}
        item, problems = validate_row(row, number)
        if item is None:
            result.skipped.append((ext, "; ".join(f"{f}: {m}" for _, f, m in problems)))
            continue
        items.append(item)
        result.item_ids.append(ext)
    if items:
        result.added, result.present = service.import_items(campaign, items, actor)
    return result


def duel_latest(db: Database, settings: Settings, campaign: str, prompts: list[PromptIn], *,
                methods: tuple[str, ...] = ("dpo", "sft"), **options: Any) -> GenerateResult:
    """Pit the newest succeeded DPO/SFT model of `campaign` against the previous one (or its base model)
    on `prompts`, so each round is judged by the same people. For the scheduler's recurring job."""
    from sqlmodel import select

    from storage.models import FinetuneJob

    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        jobs = list(s.exec(select(FinetuneJob).where(FinetuneJob.campaign_id == camp.id,
                                                     FinetuneJob.status == "succeeded",
                                                     FinetuneJob.method.in_(methods))  # type: ignore[attr-defined]
                           .order_by(FinetuneJob.finished_at.desc(), FinetuneJob.id.desc())))  # type: ignore[union-attr]
    jobs = [j for j in jobs if j.artifact_path and (Path(j.artifact_path) / "config.json").is_file()]
    if not jobs:
        raise NotFound(f"{campaign} has no trained {' or '.join(methods)} model yet.")
    newest = jobs[0]
    specs = [ModelSpec(f"{newest.method}-job{newest.id}", "local", newest.artifact_path or "", "")]
    if len(jobs) > 1:
        prev = jobs[1]
        specs.append(ModelSpec(f"{prev.method}-job{prev.id}", "local", prev.artifact_path or "", ""))
    elif (Path(newest.base_model) / "config.json").is_file():
        specs.append(ModelSpec("base", "local", str(Path(newest.base_model).resolve()), ""))
    else:
        raise NotFound(f"{campaign} has one trained model and its base {newest.base_model!r} is not a local folder.")
    return generate_items(db, settings, campaign, prompts, specs,
                          extra_meta={"duel": {"newest_job": newest.id, "previous": specs[1].name}}, **options)
