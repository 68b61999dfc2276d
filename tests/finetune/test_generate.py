"""`labelbot generate` against a fake OpenAI-compatible server on loopback and a local tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlmodel import select

from bot.core.errors import InvalidInput, NotFound
from scheduler.generate import ModelSpec, PromptIn, duel_latest, generate_items, parse_model_spec, read_prompts
from storage.models import FinetuneJob, Item, Response
from tests.finetune.conftest import ft_settings
from tests.finetune.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_openai():  # type: ignore[no-untyped-def]
    server = FakeOpenAI().start()
    yield server
    server.stop()


def items_of(db, prefix: str = "") -> list[tuple[Item, list[Response]]]:  # type: ignore[no-untyped-def]
    with db.read() as s:
        items = [i for i in s.exec(select(Item).order_by(Item.id)) if i.external_id.startswith(prefix)]
        return [(i, list(s.exec(select(Response).where(Response.item_id == i.id).order_by(Response.position))))
                for i in items]


def test_two_endpoints_make_items_through_the_import_path(sdb, fake_openai, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p1", "prompt": "What is 2+2?", "meta": {"topic": "math"}}\n'
                       '"Name a colour."\n\n'
                       '{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]}\n')
    settings = ft_settings(tmp_path, sdb.url, labelbot_generate_api_key=SecretStr("sk-test-123"))
    specs = [parse_model_spec(f"alpha={fake_openai.url}/v1"), parse_model_spec(f"beta={fake_openai.url}")]
    res = generate_items(sdb, settings, "demo", read_prompts(prompts), specs, max_tokens=64, temperature=0.0)
    assert (res.added, res.present, res.skipped, res.failures) == (3, 0, [], [])
    generated = [(i, r) for i, r in items_of(sdb) if i.meta.get("source") == "labelbot generate"]
    assert len(generated) == 3
    first, responses = generated[0]
    assert first.external_id.startswith("p1-") and first.prompt == "What is 2+2?" and first.meta["topic"] == "math"
    assert [r.model for r in responses] == ["alpha", "beta"]
    assert responses[0].text == "alpha says: the answer to 'What is 2+2?' (max 64 tokens)"
    assert first.meta["generation"]["models"]["alpha"] == f"{fake_openai.url}/v1/chat/completions"
    assert generated[2][0].prompt[0] == {"role": "system", "content": "Be brief."}
    assert {r["model"] for r in fake_openai.requests} == {"alpha", "beta"}
    assert all(h["Authorization"] == "Bearer sk-test-123" for h in fake_openai.headers)
    assert "sk-test-123" not in json.dumps([i.meta for i, _ in generated])
    # Running the same prompts against the same models again adds nothing.
    again = generate_items(sdb, settings, "demo", read_prompts(prompts), specs, max_tokens=64, temperature=0.0)
    assert (again.added, again.present) == (0, 3)


def test_failures_are_retried_or_reported_never_imported_with_one_answer(sdb, fake_openai, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    prompts = [PromptIn(None, "Question one?"), PromptIn(None, "Question two?")]
    specs = [parse_model_spec(f"flaky={fake_openai.url}/v1"), parse_model_spec(f"alpha={fake_openai.url}/v1"),
             parse_model_spec(f"down={fake_openai.url}/v1#broken")]
    res = generate_items(sdb, settings, "demo", prompts, specs, max_tokens=16)
    assert res.added == 2 and res.skipped == []  # 429 then success for `flaky`; `down` fails, two answers remain
    assert sorted(name for _, name, _ in res.failures) == ["down", "down"]
    assert all("HTTP 500" in err for _, _, err in res.failures)
    assert sum(r["model"] == "broken" for r in fake_openai.requests) == 2 * 4  # first try + 3 retries each
    _, responses = items_of(sdb, "gen-")[0]
    assert [r.model for r in responses] == ["flaky", "alpha"]
    only_one = generate_items(sdb, settings, "demo", [PromptIn("x", "Lonely?")],
                              [specs[1], parse_model_spec(f"gone={fake_openai.url}#broken")], max_tokens=16)
    assert only_one.added == 0 and only_one.skipped[0][1] == "only 1 model(s) answered"
    assert items_of(sdb, "x-") == []


def test_a_local_transformers_model_answers_alongside_an_endpoint(sdb, fake_openai, tiny_lm, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    specs = [parse_model_spec(f"tiny={tiny_lm}"), parse_model_spec(f"alpha={fake_openai.url}")]
    assert specs[0].kind == "local"
    res = generate_items(sdb, settings, "demo", [PromptIn("q", "How do I bake sourdough bread?")], specs,
                         max_tokens=8, temperature=0.0)
    assert res.added == 1, (res.failures, res.skipped)
    (_, responses), = items_of(sdb, "q-")
    assert responses[0].model == "tiny" and responses[0].text.strip()
    assert responses[1].model == "alpha"


def test_bad_specs_and_prompt_files_are_refused(sdb, tmp_path):
    for spec, message in [("alpha", "use NAME=SPEC"), ("=http://x", "name before ="), ("a=", "SPEC is empty"),
                          (f"a={tmp_path}", "neither an http")]:
        with pytest.raises(InvalidInput, match=message):
            parse_model_spec(spec)
    assert parse_model_spec("m=http://h:8000/v1/chat/completions").target == "http://h:8000/v1/chat/completions"
    assert parse_model_spec("m=https://u:pw@h/v1#llama3").served_model == "llama3"
    assert parse_model_spec("m=https://u:pw@h/v1").public == "https://h/v1/chat/completions"
    bad = tmp_path / "bad.jsonl"
    for text, message in [('{"prompt": ""}', "prompt must be"), ("{oops", "not valid JSON"), ("", "no prompts"),
                          ('{"id": true, "prompt": "x"}', "id must be"), ('{"q": 1}', "needs a prompt")]:
        bad.write_text(text)
        with pytest.raises(InvalidInput, match=message):
            read_prompts(bad)
    txt = tmp_path / "p.txt"
    txt.write_text("first\n\nsecond\n")
    assert [p.prompt for p in read_prompts(txt)] == ["first", "second"]
    settings = ft_settings(tmp_path, sdb.url)
    one = [ModelSpec("a", "endpoint", "http://127.0.0.1:9/v1/chat/completions", "a")]
    with pytest.raises(InvalidInput, match="at least two models"):
        generate_items(sdb, settings, "demo", [PromptIn(None, "x")], one)
    with pytest.raises(InvalidInput, match="distinct"):
        generate_items(sdb, settings, "demo", [PromptIn(None, "x")], one * 2)
    with pytest.raises(NotFound):
        generate_items(sdb, settings, "nope", [PromptIn(None, "x")], [one[0], ModelSpec("b", "endpoint", "u", "b")])


@pytest.mark.slow
def test_duel_pits_the_newest_trained_model_against_the_previous_one(sdb, tiny_lm, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    with pytest.raises(NotFound, match="no trained dpo or sft model"):
        duel_latest(sdb, settings, "demo", [PromptIn(None, "x")])
    from scheduler.finetune.launch import launch_finetune, wait_for_job
    from scheduler.finetune.synthetic import preference_rows, write_export

    export = write_export(tmp_path / "exports" / "demo" / "trl" / "v0001", preference_rows(16, seed=3),
                          preference_rows(4, seed=4), campaign="demo")
    first = launch_finetune(sdb, settings, "demo", "dpo", export, base_model=str(tiny_lm),
                            train_args=["--max-steps", "2"])
    assert wait_for_job(sdb, first, timeout=300).status == "succeeded"
    res = duel_latest(sdb, settings, "demo", [PromptIn("r1", "How do I brew pour-over coffee?")], max_tokens=6,
                      temperature=0.0)
    assert res.added == 1, (res.failures, res.skipped)
    (item, responses), = items_of(sdb, "r1-")
    assert [r.model for r in responses] == [f"dpo-job{first}", "base"]
    assert item.meta["duel"] == {"newest_job": first, "previous": "base"}
    # the scheduled duel: fresh prompts each round, none asked twice
    from scheduler.app import SchedulerApp
    from scheduler.schedules import set_schedule

    prompts = tmp_path / "duel.txt"
    prompts.write_text("Name a citrus fruit.\nWhat is rain?\nWhy do cats purr?\n")
    set_schedule(sdb, "demo", "duel", {"prompts": str(prompts), "count": 2, "every": "1d"}, "cli:test")
    app = SchedulerApp(settings, sdb)
    runs = []
    for _ in range(3):
        runs.append(app.run_now("duel", "demo"))
        time.sleep(1.1)  # one manual slot per second
    assert [r.status for r in runs] == ["done", "done", "skipped"], [(r.status, r.error, r.result) for r in runs]
    assert [r.result.get("added") for r in runs[:2]] == [2, 1]
    with sdb.read() as s:
        keys = [i.meta.get("prompt_key") for i in s.exec(select(Item)) if i.meta.get("duel")]
    assert len(keys) == 4 and len(set(keys)) == 4
    second = launch_finetune(sdb, settings, "demo", "dpo", export, base_model=str(tiny_lm), variant="lora",
                             train_args=["--max-steps", "2"])
    assert wait_for_job(sdb, second, timeout=300).status == "succeeded"
    with sdb.read() as s:
        assert len(list(s.exec(select(FinetuneJob)))) == 2
    res2 = duel_latest(sdb, settings, "demo", [PromptIn("r2", "How do I brew pour-over coffee?")], max_tokens=6,
                       temperature=0.0)
    (_, responses2), = items_of(sdb, "r2-")
    assert res2.added == 1 and [r.model for r in responses2] == [f"dpo-job{second}", f"dpo-job{first}"]


def test_cli_generate(sdb, fake_openai, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nWhat is a prime number?\n")
    env = {**os.environ, "DATABASE_URL": sdb.url, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "bot.cli", "generate", "--campaign", "demo", "--prompts", str(prompts)]
    ok = subprocess.run([*base, "--model", f"alpha={fake_openai.url}/v1", "--model", f"beta={fake_openai.url}/v1"],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "Added 2 item(s) to demo; 0 already present; 0 prompt(s) skipped" in ok.stdout
    bad = subprocess.run([*base, "--model", f"alpha={fake_openai.url}/v1", "--model", "beta"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "use NAME=SPEC" in bad.stderr
