"""Runs one queued fine-tune job to completion: `python -m scheduler.finetune.runner JOB_ID`.

Started detached by `launch_finetune` (DATABASE_URL in its environment). It claims the job with a
conditional UPDATE (queued → running, so two runners never both run it), runs the stored command with
output appended to the job's log file, then either renames the temp output folder to the final
artifact folder (exit 0 and a metrics.json present) or removes it, records exit code, log tail and
metrics, and posts the result summary to the campaign's channels.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bot.config import Settings
from scheduler.finetune.common import METRICS_FILE
from scheduler.finetune.notify import post_result, summary
from storage import queries as q
from storage.db import Database
from storage.models import Campaign, FinetuneJob, utcnow

TAIL_CHARS = 4000
SECRET_ENV = frozenset({"DATABASE_URL", "LABELBOT_TEST_DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET",
                        "SLACK_APP_TOKEN", "DISCORD_BOT_TOKEN", "LABELBOT_GENERATE_API_KEY",
                        "LABELBOT_DASHBOARD_TOKEN"})


def log_tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last `chars` characters of a log file (progress bars' carriage returns folded)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars * 4))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join(lines)[-chars:]


def trainer_env() -> dict[str, str]:
    """The runner's environment minus labelbot's own secrets: a trainer (or a cluster job) needs none of them."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def claim(db: Database, job_id: int) -> bool:
    with db.write() as s:
        result = s.execute(update(FinetuneJob).where(FinetuneJob.id == job_id, FinetuneJob.status == "queued")
                           .values(status="running", started_at=utcnow(), pid=os.getpid()))
        return result.rowcount == 1


def _read_metrics(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_job(db: Database, job_id: int, settings: Settings | None = None) -> str:
    """Run a queued job in this process (blocking); returns its final status."""
    if not claim(db, job_id):
        with db.read() as s:
            job = s.get(FinetuneJob, job_id)
            return job.status if job else "missing"
    with db.read() as s:
        job = s.get(FinetuneJob, job_id)
        assert job is not None
    tmp, final = Path(job.params["tmp_dir"]), Path(job.params["final_dir"])
    log_path = Path(job.log_path or f"finetune-job-{job_id}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    status, exit_code, error, metrics, artifact = "failed", None, None, {}, None
    proc: subprocess.Popen[bytes] | None = None

    def _terminate(signum: int, _frame: Any) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        with log_path.open("ab") as log:
            log.write(f"== job {job_id}: {job.method}/{job.variant} on {job.export_path} ({job.backend})\n"
                      f"== {job.command}\n".encode())
            log.flush()
            argv: Any = job.command if job.backend == "command" else shlex.split(job.command or "")
            env = trainer_env()
            proc = subprocess.Popen(argv, shell=job.backend == "command", stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            exit_code = proc.wait()
        metrics = _read_metrics(tmp)
        if exit_code != 0:
            error = f"the trainer exited with code {exit_code}"
        elif metrics is None:
            error = f"the trainer exited 0 but wrote no {METRICS_FILE}"
        else:
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
            status, artifact = "succeeded", str(final)
    except BaseException as exc:  # record why, then let SystemExit/KeyboardInterrupt end the process
        error = error or f"the runner stopped: {type(exc).__name__}: {exc}"[:500]
        if not isinstance(exc, Exception):
            _finish(db, job_id, status, exit_code, error, metrics or {}, artifact, log_path, started, tmp)
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    _finish(db, job_id, status, exit_code, error, metrics or {}, artifact, log_path, started, tmp)
    if status == "succeeded":
        _score_items(db, job_id)
    try:
        post_result(db, settings or _settings(), job_id)
    except Exception as exc:  # a failed notification never turns a trained model into a failed job
        print(f"could not post the result: {type(exc).__name__}: {exc}", flush=True)
    return status


def _score_items(db: Database, job_id: int) -> None:
    """A new reward model scores the open items, so `uncertainty` sampling can use it."""
    from scheduler.score import score_open_items

    with db.read() as s:
        job = s.get(FinetuneJob, job_id)
        camp = s.get(Campaign, job.campaign_id) if job else None
    if job is None or camp is None or job.method != "reward" or not job.artifact_path:
        return
    try:
        n = score_open_items(db, camp.name, Path(job.artifact_path), model_version=f"finetune-job-{job_id}")
        print(f"scored {n} open item(s) with the new reward model", flush=True)
    except Exception as exc:  # scoring is a bonus: never fail the trained job over it
        print(f"could not score open items: {type(exc).__name__}: {exc}", flush=True)


def _finish(db: Database, job_id: int, status: str, exit_code: int | None, error: str | None,
            metrics: dict[str, Any], artifact: str | None, log_path: Path, started: float, tmp: Path) -> None:
    if status != "succeeded":
        shutil.rmtree(tmp, ignore_errors=True)
    with db.write() as s:
        job = s.get(FinetuneJob, job_id)
        if job is None:
            return
        job.status = status
        job.exit_code = exit_code
        job.error = error
        job.metrics = {**metrics, "wall_seconds": round(time.monotonic() - started, 3)}
        job.artifact_path = artifact
        job.log_tail = log_tail(log_path)
        job.finished_at = utcnow()
        if status != "succeeded":
            job.dedupe_key = None  # a failed export/method pair may be retried
        camp = s.get(Campaign, job.campaign_id)
        if camp is not None:  # the summary lands with the final state; delivery follows in post_result
            job.result_message = summary(job, camp.name)
            job.notifications = {c.platform: "pending" for c in q.campaign_channels(s, camp.id)}
        q.add_audit(s, "finetune-runner", f"finetune.{status}", campaign_id=job.campaign_id, job_id=job_id,
                    exit_code=exit_code, artifact=artifact, error=error)


def _settings() -> Settings:
    from bot.config import get_settings

    return get_settings()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m scheduler.finetune.runner JOB_ID", file=sys.stderr)
        return 2
    settings = _settings()
    db = Database(settings.database_url)
    try:
        status = run_job(db, int(args[0]), settings)
    finally:
        db.dispose()
    print(f"== job {args[0]} {status}", flush=True)
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
