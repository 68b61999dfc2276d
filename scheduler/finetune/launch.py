"""Queue a fine-tune job and start its runner: `launch_finetune(db, settings, campaign, method, export_path)`.

A job is a `finetune_job` row plus a detached runner process (`python -m scheduler.finetune.runner ID`)
that moves it queued → running → succeeded | failed, so a job outlives the CLI or scheduler tick that
started it. Everything the runner needs (rendered command, temp and final artifact folders, log file)
is decided here and stored on the row.

Backends:
- `local`: the runner starts `python -m scheduler.finetune.train_<method> --data … --out …` itself.
- `command`: the runner runs `LABELBOT_FINETUNE_COMMAND` through the shell, a template with placeholders
  ({python} {module} {method} {variant} {data} {train_file} {test_file} {output} {base_model} {args}
  {job_id} {campaign} {log}), each substituted shell-quoted. It must block until training ends
  (`accelerate launch`, `torchrun`, `sbatch --wait`, `ray job submit` without --no-wait) and leave the
  model and metrics.json in {output}, which must be on storage the runner can see.

An export version is trained once per method and variant: the row's unique `dedupe_key` makes a second
launch return the first job's id (a failed job releases the key, so it can be retried).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from bot.config import Settings
from bot.core.errors import InvalidInput, NotFound
from scheduler.finetune.common import DataError, read_manifest, resolve_export_dir
from scheduler.procs import pid_alive
from storage import queries as q
from storage.db import Database
from storage.models import ExportRecord, FinetuneJob, utcnow

REPO_ROOT = Path(__file__).resolve().parents[2]
METHODS = ("reward", "dpo", "sft")
BACKENDS = ("local", "command")
VARIANTS = {"reward": ("full", "lora", "head"), "dpo": ("full", "lora"), "sft": ("full", "lora")}
# Export formats each method reads, preferred first (what `labelbot finetune` exports when it must).
FORMATS = {"reward": ("reward", "trl", "trl-conversational", "correction-pairs"),
           "dpo": ("trl", "trl-conversational", "reward", "correction-pairs"),
           "sft": ("sft", "correction-pairs")}
PLACEHOLDERS = ("python", "module", "method", "variant", "data", "train_file", "test_file", "output", "base_model",
                "args", "job_id", "campaign", "log")
ACTIVE = ("queued", "running")


def trainer_module(method: str) -> str:
    return f"scheduler.finetune.train_{method}"


def base_model_for(settings: Settings, method: str, base_model: str | None) -> str:
    """The base model: explicit, else LABELBOT_<METHOD>_BASE_MODEL, else (reward only) the shipped MiniLM."""
    chosen = base_model or getattr(settings, f"labelbot_{method}_base_model", None)
    if chosen:
        return chosen
    if method == "reward":
        from scheduler.finetune.common import default_reward_base

        try:
            return default_reward_base()
        except DataError as exc:
            raise InvalidInput(str(exc)) from exc
    raise InvalidInput(f"{method} needs a base causal LM: pass --base or set LABELBOT_{method.upper()}_BASE_MODEL.")


def variant_args(method: str, variant: str) -> list[str]:
    if method == "reward":
        return ["--variant", variant]
    return ["--lora"] if variant == "lora" else []


def render_command(template: str, values: dict[str, str]) -> str:
    """Substitute shell-quoted values into a backend template; unknown placeholders are an error."""
    import string

    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in PLACEHOLDERS:
            raise InvalidInput(f"Unknown placeholder {{{field}}} in LABELBOT_FINETUNE_COMMAND; "
                               f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}.")
    quoted = {k: (v if k == "args" else shlex.quote(v)) for k, v in values.items()}
    return template.format(**quoted)


def _dedupe_key(campaign_id: int, method: str, variant: str, export_dir: Path) -> str:
    digest = hashlib.sha1(str(export_dir.resolve()).encode()).hexdigest()[:20]
    return f"{campaign_id}:{method}:{variant}:{digest}"


def launch(db: Database, settings: Settings, campaign: str, method: str, export_path: Path, backend: str = "local",
           *, variant: str = "full", base_model: str | None = None, train_args: list[str] | None = None,
           actor: str = "scheduler", start: bool = True) -> tuple[int, bool]:
    """Queue (and by default start) a job; returns (job id, created). created=False: already trained."""
    if method not in METHODS:
        raise InvalidInput(f"Unknown method {method!r}; choose {', '.join(METHODS)}.")
    if backend not in BACKENDS:
        raise InvalidInput(f"Unknown backend {backend!r}; choose {', '.join(BACKENDS)}.")
    if variant not in VARIANTS[method]:
        raise InvalidInput(f"{method} has no {variant!r} variant; choose {', '.join(VARIANTS[method])}.")
    extra = list(train_args or [])
    if not all(isinstance(a, str) for a in extra):
        raise InvalidInput("Training arguments must be strings.")
    try:
        export_dir = resolve_export_dir(Path(export_path)).resolve()
        manifest = read_manifest(export_dir)
    except DataError as exc:
        raise InvalidInput(str(exc)) from exc
    fmt = str(manifest.get("format") or "")
    if fmt and fmt not in FORMATS[method]:
        raise InvalidInput(f"{method} cannot train on a {fmt!r} export; it reads {', '.join(FORMATS[method])}.")
    if manifest.get("campaign") not in (None, campaign):
        raise InvalidInput(f"That export belongs to campaign {manifest['campaign']!r}, not {campaign!r}.")
    version = manifest.get("version")
    if version is None and export_dir.name[1:].isdigit():
        version = int(export_dir.name[1:])
    if backend == "local":  # the command backend trains elsewhere, in an environment of its own
        from bot.extras import require_training

        require_training(method, variant)
    base = base_model_for(settings, method, base_model)
    template = settings.labelbot_finetune_command
    if backend == "command" and not (template and template.strip()):
        raise InvalidInput("The command backend needs LABELBOT_FINETUNE_COMMAND, e.g. \"accelerate launch -m "
                           "{module} --data {data} --out {output} --base {base_model} {args}\".")
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        camp_id = camp.id
    key = _dedupe_key(camp_id, method, variant, export_dir)
    existing = _job_by_key(db, key)
    if existing is not None:
        return existing, False
    root = Path(settings.labelbot_artifact_dir).resolve() / campaign / "finetune"
    try:
        with db.write() as s:
            job = FinetuneJob(campaign_id=camp_id, method=method, variant=variant, backend=backend, status="queued",
                              dedupe_key=key, export_path=str(export_dir), export_format=fmt or "unknown",
                              export_version=version, base_model=base,
                              params={"train_args": extra, "host": socket.gethostname(), "actor": actor})
            s.add(job)
            s.flush()
            job_id = job.id
            label = f"{method}-{variant}-{fmt or 'data'}-v{version or 0:04d}-job{job_id}"
            final = root / label
            tmp = root / f".tmp-job{job_id}-{uuid.uuid4().hex[:8]}"
            log_path = root / "logs" / f"job-{job_id}.log"
            values = {
                "python": sys.executable, "module": trainer_module(method), "method": method, "variant": variant,
                "data": str(export_dir), "train_file": str(export_dir / "train.jsonl"),
                "test_file": str(export_dir / "test.jsonl"), "output": str(tmp), "base_model": base,
                "args": shlex.join([*variant_args(method, variant), *extra]), "job_id": str(job_id),
                "campaign": campaign, "log": str(log_path),
            }
            if backend == "local":
                command = shlex.join([sys.executable, "-m", trainer_module(method), "--data", str(export_dir),
                                      "--out", str(tmp), "--base", base, *variant_args(method, variant), *extra])
            else:
                command = render_command(template or "", values)
            job.command = command
            job.log_path = str(log_path)
            job.params = {**job.params, "tmp_dir": str(tmp), "final_dir": str(final)}
            q.add_audit(s, actor, "finetune.queued", campaign_id=camp_id, job_id=job_id, method=method,
                        variant=variant, backend=backend, export=str(export_dir))
    except IntegrityError:
        existing = _job_by_key(db, key)
        if existing is None:
            raise
        return existing, False
    if start:
        start_runner(db, job_id)
    return job_id, True


def launch_finetune(db: Database, settings: Settings, campaign: str, method: str, export_path: Path,
                    backend: str = "local", **options: Any) -> int:
    """Queue and start a fine-tune job of `export_path` with `method`; returns its id (an existing one when
    this export was already trained, or is being trained, with this method and variant)."""
    job_id, _ = launch(db, settings, campaign, method, export_path, backend, **options)
    return job_id


def _job_by_key(db: Database, key: str) -> int | None:
    with db.read() as s:
        job = s.exec(select(FinetuneJob).where(FinetuneJob.dedupe_key == key)).first()
        return job.id if job else None


def runner_env(db: Database) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = db.url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def start_runner(db: Database, job_id: int) -> int:
    """Start the detached runner process for a queued job; returns its pid."""
    with db.read() as s:
        job = s.get(FinetuneJob, job_id)
        if job is None:
            raise NotFound(f"No fine-tune job {job_id}.")
        log_path = Path(job.log_path or f"finetune-job-{job_id}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scheduler.finetune.runner", str(job_id)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=runner_env(db), start_new_session=True)
    # Reap the child when it ends so a long-lived scheduler process collects no zombies.
    threading.Thread(target=proc.wait, name=f"finetune-runner-{job_id}", daemon=True).start()
    with db.write() as s:
        job = s.get(FinetuneJob, job_id)
        if job is not None and job.pid is None:
            job.pid = proc.pid
    return proc.pid


def get_job(db: Database, job_id: int) -> FinetuneJob:
    with db.read() as s:
        job = s.get(FinetuneJob, job_id)
        if job is None:
            raise NotFound(f"No fine-tune job {job_id}.")
        return job


def list_jobs(db: Database, campaign: str | None = None, limit: int = 20) -> list[FinetuneJob]:
    with db.read() as s:
        stmt = select(FinetuneJob).order_by(FinetuneJob.id.desc()).limit(limit)  # type: ignore[union-attr]
        if campaign is not None:
            camp = q.campaign_by_name(s, campaign)
            if camp is None:
                raise NotFound(f"No campaign named {campaign!r}.")
            stmt = stmt.where(FinetuneJob.campaign_id == camp.id)
        return list(s.exec(stmt))


def wait_for_job(db: Database, job_id: int, *, timeout: float = 3600.0, poll: float = 0.5) -> FinetuneJob:
    """Block until the job has finished and its runner has posted the result; returns the job row."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(db, job_id)
        if job.status not in ACTIVE:
            # The runner posts the result after recording the final state: let it finish (briefly) too.
            if job.pid and job.params.get("host") == socket.gethostname():
                grace = time.monotonic() + min(30.0, max(0.0, deadline - time.monotonic()))
                while pid_alive(job.pid) and time.monotonic() < grace:
                    time.sleep(0.05)
                job = get_job(db, job_id)
            return job
        if time.monotonic() >= deadline:
            raise TimeoutError(f"fine-tune job {job_id} still {job.status} after {timeout:.0f} s")
        reap_vanished(db)
        time.sleep(poll)


def reap_vanished(db: Database) -> list[int]:
    """Mark failed the active jobs of this host whose runner process is gone (killed, machine rebooted)."""
    host = socket.gethostname()
    with db.read() as s:
        active = list(s.exec(select(FinetuneJob).where(FinetuneJob.status.in_(ACTIVE))))  # type: ignore[attr-defined]
    gone = [j.id for j in active if j.pid and j.params.get("host") == host and not pid_alive(j.pid)]
    failed = []
    for job_id in gone:
        with db.write() as s:
            job = s.get(FinetuneJob, job_id)
            if job is None or job.status not in ACTIVE or (job.pid and pid_alive(job.pid)):
                continue
            job.status = "failed"
            job.error = "the runner process ended without recording a result"
            job.finished_at = utcnow()
            job.dedupe_key = None
            failed.append(job_id)
    return failed


def latest_export(db: Database, campaign: str, method: str) -> ExportRecord | None:
    """The newest export of a format `method` reads whose folder still exists."""
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        records = s.exec(select(ExportRecord).where(ExportRecord.campaign_id == camp.id,
                                                    ExportRecord.format.in_(FORMATS[method]))  # type: ignore[attr-defined]
                         .order_by(ExportRecord.id.desc())).all()
    return next((r for r in records if (Path(r.path) / "train.jsonl").is_file()), None)


def export_for(db: Database, settings: Settings, campaign: str, method: str) -> Path:
    """The latest export `method` can read when no vote came in since; otherwise a fresh one."""
    from scheduler.export import FORMATS as EXPORT_FORMATS
    from scheduler.export import export_campaign

    record = latest_export(db, campaign, method)
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        assert camp is not None
        newest_vote = q.max_vote_id(s, camp.id)
    if record is not None and record.max_vote_id >= newest_vote:
        return Path(record.path)
    fmt = next((f for f in FORMATS[method] if f in EXPORT_FORMATS), FORMATS[method][0])
    out = Path(settings.labelbot_export_dir) / campaign / fmt
    return export_campaign(db, campaign, fmt, out).path
