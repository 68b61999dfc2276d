"""Fine-tune jobs end to end: launch → detached runner → trainer subprocess → artifact, metrics, result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.adapters import NOTIFIERS
from bot.core.errors import InvalidInput, NotFound
from scheduler.export import export_campaign
from scheduler.finetune.launch import get_job, launch, launch_finetune, reap_vanished, wait_for_job
from scheduler.finetune.notify import mark_result_posted, pending_results, post_result
from scheduler.finetune.runner import claim
from scheduler.finetune.synthetic import write_export
from storage.models import AuditLog, FinetuneJob
from tests.finetune import notifier_sink
from tests.finetune.conftest import ft_settings, vote_all

ROOT = Path(__file__).resolve().parents[2]


def jobs_count(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.exec(select(func.count()).select_from(FinetuneJob)).one()


def leftovers(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    root = Path(settings.labelbot_artifact_dir) / "demo" / "finetune"
    return list(root.glob(".tmp-*")) if root.exists() else []


@pytest.mark.slow
def test_reward_job_on_an_export_of_real_votes(service, campaign, db, db_url, tmp_path):
    vote_all(service, db, campaign, prefer=0)
    export = export_campaign(db, campaign, "trl", tmp_path / "exports", test_fraction=0.5)
    assert export.train_rows > 0 and export.test_rows > 0
    settings = ft_settings(tmp_path, db_url)
    job_id = launch_finetune(db, settings, campaign, "reward", export.path, "local", train_args=["--max-steps", "3"])
    assert get_job(db, job_id).status in ("queued", "running")
    job = wait_for_job(db, job_id, timeout=300)
    assert job.status == "succeeded", job.log_tail
    assert job.exit_code == 0 and job.error is None
    assert job.export_format == "trl" and job.export_version == export.version
    assert job.metrics["steps"] == 3 and job.metrics["test_pairs"] == export.test_rows
    assert 0.0 <= job.metrics["eval_accuracy"] <= 1.0 and job.metrics["train_loss"] > 0
    artifact = Path(job.artifact_path)
    assert artifact.name == f"reward-full-trl-v{export.version:04d}-job{job_id}"
    assert json.loads((artifact / "metrics.json").read_text())["steps"] == 3
    assert (artifact / "config.json").is_file() and leftovers(settings) == []
    assert "step 3/3" in job.log_tail and Path(job.log_path).is_file()
    assert job.result_message.startswith("✅ Reward model (full) for *demo*")
    assert job.notifications == {"slack": "pending", "discord": "pending"}
    with db.read() as s:
        actions = [a.action for a in s.exec(select(AuditLog).where(AuditLog.action.like("finetune.%")))]
    assert actions == ["finetune.queued", "finetune.succeeded", "finetune.result"]
    # The same export is trained once per method and variant.
    assert launch_finetune(db, settings, campaign, "reward", export.path) == job_id
    assert jobs_count(db) == 1


@pytest.mark.slow
def test_dpo_and_sft_jobs_run_end_to_end_on_a_tiny_model(sdb, pref_export, sft_export, tiny_lm, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    dpo = launch_finetune(sdb, settings, "demo", "dpo", pref_export, base_model=str(tiny_lm),
                          train_args=["--max-steps", "3"])
    sft = launch_finetune(sdb, settings, "demo", "sft", sft_export, base_model=str(tiny_lm),
                          train_args=["--max-steps", "3"])
    dpo_job, sft_job = wait_for_job(sdb, dpo, timeout=300), wait_for_job(sdb, sft, timeout=300)
    assert dpo_job.status == "succeeded", dpo_job.log_tail
    assert sft_job.status == "succeeded", sft_job.log_tail
    assert dpo_job.metrics["test_pairs"] == 32 and dpo_job.metrics["eval_accuracy"] is not None
    assert sft_job.metrics["eval_loss"] is not None and sft_job.metrics["test_rows"] == 8
    for job in (dpo_job, sft_job):
        assert (Path(job.artifact_path) / "model.safetensors").is_file()
    assert "DPO model (full)" in dpo_job.result_message and "SFT model (full)" in sft_job.result_message


def test_failed_job_keeps_exit_code_and_log_tail_and_can_be_retried(sdb, tmp_path):
    bad = write_export(tmp_path / "exports" / "demo" / "trl" / "v0007",
                       [{"prompt": "p", "chosen": "a"}], [], fmt="trl", campaign="demo", version=7)
    settings = ft_settings(tmp_path, sdb.url)
    job_id = launch_finetune(sdb, settings, "demo", "reward", bad)
    job = wait_for_job(sdb, job_id, timeout=120)
    assert job.status == "failed" and job.exit_code == 2
    assert job.error == "the trainer exited with code 2"
    assert "needs chosen and rejected" in job.log_tail
    assert job.artifact_path is None and job.dedupe_key is None and leftovers(settings) == []
    assert job.result_message.startswith("❌ Reward model (full) for *demo* on export trl v0007 failed")
    retry = launch_finetune(sdb, settings, "demo", "reward", bad)
    assert retry != job_id
    assert wait_for_job(sdb, retry, timeout=120).status == "failed"


@pytest.mark.slow
def test_command_backend_substitutes_quoted_placeholders(sdb, pref_export, tiny_lm, tmp_path):
    spaced = tmp_path / "exp dir" / "v0001"
    spaced.parent.mkdir()
    pref_export.rename(spaced)
    template = "{python} -m {module} --data {data} --out {output} --base {base_model} {args} --max-steps 2"
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command=template)
    job_id = launch_finetune(sdb, settings, "demo", "dpo", spaced, "command", base_model=str(tiny_lm),
                             variant="lora")
    job = wait_for_job(sdb, job_id, timeout=300)
    assert job.status == "succeeded", job.log_tail
    assert f"'{spaced}'" in job.command and "--lora" in job.command and "scheduler.finetune.train_dpo" in job.command
    assert job.backend == "command" and job.metrics["variant"] == "lora"
    assert (Path(job.artifact_path) / "adapter" / "adapter_config.json").is_file()


def test_command_backend_failure_is_recorded(sdb, pref_export, tmp_path):
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command="echo submitting job {job_id} for {method}; "
                                                                        "exit 7")
    job_id = launch_finetune(sdb, settings, "demo", "reward", pref_export, "command")
    job = wait_for_job(sdb, job_id, timeout=120)
    assert job.status == "failed" and job.exit_code == 7
    assert f"submitting job {job_id} for reward" in job.log_tail


def test_a_command_that_writes_no_metrics_fails(sdb, pref_export, tmp_path):
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command="mkdir -p {output} && touch {output}/x")
    job = wait_for_job(sdb, launch_finetune(sdb, settings, "demo", "reward", pref_export, "command"), timeout=120)
    assert job.status == "failed" and job.exit_code == 0 and "no metrics.json" in job.error
    assert leftovers(settings) == []


def test_bad_launches_are_refused_and_change_nothing(sdb, pref_export, sft_export, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    cases = [
        (dict(method="ppo"), "Unknown method"),
        (dict(backend="slurm"), "Unknown backend"),
        (dict(method="dpo", variant="head", base_model="x"), "no 'head' variant"),
        (dict(export_path=sft_export), "cannot train on a 'sft' export"),
        (dict(method="sft", export_path=pref_export, base_model="x"), "cannot train on a 'trl' export"),
        (dict(export_path=tmp_path / "nowhere"), "not an export folder"),
        (dict(method="dpo"), "needs a base causal LM"),
        (dict(backend="command"), "LABELBOT_FINETUNE_COMMAND"),
        (dict(backend="command", settings=ft_settings(tmp_path, sdb.url, labelbot_finetune_command="run {dataset}")),
         "Unknown placeholder {dataset}"),
        (dict(campaign="other"), "belongs to campaign 'demo'"),
    ]
    for overrides, message in cases:
        kw = {"campaign": "demo", "method": "reward", "export_path": pref_export, "backend": "local",
              "settings": settings, **overrides}
        with pytest.raises(InvalidInput, match=message):
            launch(sdb, kw.pop("settings"), kw.pop("campaign"), kw.pop("method"), kw.pop("export_path"),
                   kw.pop("backend"), **kw)
    write_export(tmp_path / "other", [{"prompt": "p", "chosen": "a", "rejected": "b"}], [], campaign="ghost")
    (tmp_path / "other" / "manifest.json").unlink()
    with pytest.raises(NotFound):
        launch(sdb, settings, "ghost", "reward", tmp_path / "other", start=False)
    assert jobs_count(sdb) == 0


def test_results_go_to_registered_notifiers_and_wait_for_the_rest(sdb, pref_export, tmp_path, monkeypatch):
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command="exit 3")
    job_id = launch_finetune(sdb, settings, "demo", "reward", pref_export, "command")
    assert wait_for_job(sdb, job_id, timeout=120).status == "failed"
    assert [p.job_id for p in pending_results(sdb, "slack")] == [job_id]
    notifier_sink.SENT.clear()
    monkeypatch.setitem(NOTIFIERS, "slack", "tests.finetune.notifier_sink:notify")
    monkeypatch.setitem(NOTIFIERS, "discord", "tests.finetune.notifier_sink:broken")
    outcomes = post_result(sdb, settings, job_id)
    assert outcomes == {"slack": "sent", "discord": "error: ConnectionError"}
    assert [("demo", "C123", get_job(sdb, job_id).result_message)] == notifier_sink.SENT
    assert "exited with code 3" in notifier_sink.SENT[0][2]
    assert pending_results(sdb, "slack") == []
    pending = pending_results(sdb, "discord")
    assert [(p.job_id, p.channel) for p in pending] == [(job_id, "200000000000000001")]
    mark_result_posted(sdb, job_id, "discord")
    assert pending_results(sdb, "discord") == [] and get_job(sdb, job_id).notified_at is not None


def test_a_job_is_claimed_once_and_vanished_runners_are_reaped(sdb, pref_export, tmp_path):
    settings = ft_settings(tmp_path, sdb.url)
    job_id, created = launch(sdb, settings, "demo", "reward", pref_export, start=False)
    assert created and get_job(sdb, job_id).status == "queued"
    assert claim(sdb, job_id) is True
    assert claim(sdb, job_id) is False
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sdb.write() as s:
        s.get(FinetuneJob, job_id).pid = dead.pid
    assert reap_vanished(sdb) == [job_id]
    job = get_job(sdb, job_id)
    assert job.status == "failed" and "runner process ended" in job.error and job.dedupe_key is None


@pytest.mark.slow
def test_cli_finetune_exports_trains_and_lists(sdb, tmp_path):
    from bot.core.service import LabelingService
    from tests.conftest import ADMINS

    vote_all(LabelingService(sdb, ADMINS, seed=1), sdb, "demo", prefer=1)
    env = {**os.environ, "DATABASE_URL": sdb.url, "LABELBOT_EXPORT_DIR": str(tmp_path / "exports"),
           "LABELBOT_ARTIFACT_DIR": str(tmp_path / "artifacts"), "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    first = cli("finetune", "--campaign", "demo", "--method", "reward", "--max-steps", "2", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Started fine-tune job 1 (reward, full)" in first.stdout and "succeeded" in first.stdout
    # A fresh export in the best format the exporter offers for reward models (`reward`, else `trl`).
    made = list((tmp_path / "exports" / "demo").glob("*/v0001/train.jsonl"))
    assert len(made) == 1 and made[0].parent.parent.name in ("reward", "trl")
    again = cli("finetune", "--campaign", "demo", "--method", "reward")
    assert again.returncode == 0 and "already trained with reward (full): job 1" in again.stdout
    listing = cli("finetune", "jobs", "--campaign", "demo")
    assert listing.returncode == 0 and "succeeded" in listing.stdout and "reward/full" in listing.stdout
    missing = cli("finetune", "--campaign", "demo")
    assert missing.returncode == 1 and "give --campaign and --method" in missing.stderr
    nope = cli("finetune", "--campaign", "nope", "--method", "reward")
    assert nope.returncode == 1 and "No campaign named 'nope'" in nope.stderr


@pytest.mark.slow
def test_command_backend_runs_the_reward_trainer_distributed_under_torchrun(sdb, pref_export, tiny_lm, tmp_path):
    template = ("{python} -m torch.distributed.run --nproc_per_node 2 -m {module} --data {data} --out {output} "
                "--base {base_model} {args} --max-steps 3 --batch-size 8")
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command=template)
    job = wait_for_job(sdb, launch_finetune(sdb, settings, "demo", "reward", pref_export, "command",
                                            base_model=str(tiny_lm)), timeout=300)
    assert job.status == "succeeded", job.log_tail
    assert job.metrics["processes"] == 2 and job.metrics["steps"] == 3
    assert "on 2 process(es)" in job.log_tail
    assert (Path(job.artifact_path) / "model.safetensors").is_file()


def test_trainers_never_see_labelbot_secrets(sdb, pref_export, tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-token")
    monkeypatch.setenv("HF_TOKEN", "hf-kept")
    settings = ft_settings(tmp_path, sdb.url, labelbot_finetune_command=(
        "printenv DATABASE_URL || echo no-database-url; printenv SLACK_BOT_TOKEN || echo no-slack-token; "
        "printenv HF_TOKEN; exit 4"))
    job = wait_for_job(sdb, launch_finetune(sdb, settings, "demo", "reward", pref_export, "command"), timeout=120)
    assert job.exit_code == 4
    assert "no-database-url" in job.log_tail and "no-slack-token" in job.log_tail and "hf-kept" in job.log_tail
    assert "xoxb-secret-token" not in job.log_tail and sdb.url not in job.log_tail
