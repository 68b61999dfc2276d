"""Versioned, streamed dataset exports (JSONL + Parquet, manifest, deterministic split).

Items, responses and votes are read as three cursors ordered by item id and merge-joined, so memory
stays flat however many votes there are. Each export is written to a hidden temp folder and renamed
into place: a crash leaves earlier versions untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, text

from bot.core import aggregate
from bot.core.errors import InvalidInput, NotFound
from bot.core.replies import prompt_as_text
from storage import queries as q
from storage.db import Database
from storage.models import ExportRecord

FORMATS = ("trl", "trl-conversational", "votes")
BATCH = 20_000


@dataclass
class ItemRecord:
    item_id: int
    external_id: str
    prompt: Any
    n: int
    status: str
    gold: Any
    models: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    votes: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    version: int
    rows: int
    train_rows: int
    test_rows: int
    manifest: dict[str, Any]


def split_of(campaign: str, external_id: str, test_fraction: float) -> str:
    """Deterministic train/test assignment by item (same item, same split, every export)."""
    digest = hashlib.sha1(f"{campaign}:{external_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") < test_fraction * 2**32 else "train"


_JSON = JSON(none_as_null=True)


def iter_items(db: Database, campaign_id: int, *, max_vote_id: int, with_vote_details: bool = False,
               only_complete: bool = True) -> Iterator[ItemRecord]:
    """Each item of a campaign with its responses and votes, streamed in item-id order."""
    status_filter = "AND i.status IN ('complete', 'resolved')" if only_complete else ""
    item_sql = text(
        "SELECT i.id, i.external_id, i.prompt, i.n_responses, i.status, i.gold FROM item i "
        f"WHERE i.campaign_id = :c {status_filter} ORDER BY i.id"
    ).columns(prompt=_JSON, gold=_JSON)
    resp_sql = text(
        "SELECT r.item_id, r.model, r.text FROM response r JOIN item i ON i.id = r.item_id "
        f"WHERE i.campaign_id = :c {status_filter} ORDER BY r.item_id, r.position"
    )
    detail = (", v.annotator_id, v.shown_choice, v.guideline_version, v.created_at, v.scores, v.reason, "
              "v.updated_at") if with_vote_details else ""
    # rankings are only needed (and decoded) where the winner alone does not say it all
    ranking = "v.ranking" if with_vote_details else "CASE WHEN i.n_responses > 2 THEN v.ranking END AS ranking"
    vote_sql = text(
        f"SELECT v.item_id, v.outcome, v.winner, {ranking}, v.id{detail} FROM vote v JOIN item i ON i.id = v.item_id "
        f"WHERE i.campaign_id = :c AND v.id <= :m {status_filter} ORDER BY v.item_id, v.id"
    ).columns(ranking=_JSON, **({"scores": _JSON} if with_vote_details else {}))
    params = {"c": campaign_id, "m": max_vote_id}
    with db.engine.connect() as c_items, db.engine.connect() as c_resp, db.engine.connect() as c_votes:
        def rows(conn: Any, sql: Any) -> Iterator[Any]:
            result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(sql, params)
            for part in result.partitions(BATCH):
                yield from part

        resp_it = rows(c_resp, resp_sql)
        vote_it = rows(c_votes, vote_sql)
        resp = next(resp_it, None)
        vote = next(vote_it, None)
        for item_id, ext, prompt, n, status, gold in rows(c_items, item_sql):
            rec = ItemRecord(item_id, ext, prompt, n, status, gold)
            while resp is not None and resp[0] < item_id:
                resp = next(resp_it, None)
            while resp is not None and resp[0] == item_id:
                rec.models.append(resp[1])
                rec.texts.append(resp[2])
                resp = next(resp_it, None)
            while vote is not None and vote[0] < item_id:
                vote = next(vote_it, None)
            while vote is not None and vote[0] == item_id:
                rec.votes.append(vote)
                vote = next(vote_it, None)
            yield rec


def _vote_lite(row: tuple[Any, ...], n: int) -> aggregate.VoteLite:
    outcome, winner, ranking = row[1], row[2], row[3]
    if outcome in ("tie", "both_bad"):
        return aggregate.VoteLite(outcome, None)
    if n == 2 and winner is not None:
        return aggregate.VoteLite(outcome, (winner, 1 - winner))
    return aggregate.VoteLite(outcome, tuple(ranking or ()))


def consensus_of(rec: ItemRecord) -> aggregate.ItemConsensus:
    return aggregate.item_consensus([_vote_lite(v, rec.n) for v in rec.votes], rec.n)


def _as_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _pair_rows(rec: ItemRecord, conversational: bool) -> Iterator[dict[str, Any]]:
    cons = consensus_of(rec)
    for pair in cons.pairs:
        base = {
            "item_id": rec.external_id,
            "chosen_model": rec.models[pair.chosen],
            "rejected_model": rec.models[pair.rejected],
            "votes": len(rec.votes),
            "agreement": round(pair.agreement, 4),
        }
        if conversational:
            yield {
                "prompt": _as_messages(rec.prompt),
                "chosen": [{"role": "assistant", "content": rec.texts[pair.chosen]}],
                "rejected": [{"role": "assistant", "content": rec.texts[pair.rejected]}],
                **base,
            }
        else:
            yield {"prompt": prompt_as_text(rec.prompt), "chosen": rec.texts[pair.chosen],
                   "rejected": rec.texts[pair.rejected], **base}


def _vote_rows(rec: ItemRecord) -> Iterator[dict[str, Any]]:
    for v in rec.votes:
        lite = _vote_lite(v, rec.n)
        yield {
            "item_id": rec.external_id,
            "vote_id": int(v[4]),
            "annotator_id": int(v[5]),
            "outcome": v[1],
            "ranking": list(lite.ranking) if lite.ranking else None,
            "ranking_models": [rec.models[p] for p in lite.ranking] if lite.ranking else None,
            "models": list(rec.models),
            "shown_choice": v[6],
            "guideline_version": int(v[7]),
            "created_at": str(v[8]),
            "scores": json.dumps(v[9]) if v[9] is not None else None,
            "reason": v[10],
        }


def _schema(fmt: str) -> Any:
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    provenance = [("item_id", pa.string()), ("chosen_model", pa.string()), ("rejected_model", pa.string()),
                  ("votes", pa.int64()), ("agreement", pa.float64())]
    if fmt == "trl":
        return pa.schema([("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()), *provenance])
    if fmt == "trl-conversational":
        return pa.schema([("prompt", msg), ("chosen", msg), ("rejected", msg), *provenance])
    return pa.schema([
        ("item_id", pa.string()), ("vote_id", pa.int64()), ("annotator_id", pa.int64()), ("outcome", pa.string()),
        ("ranking", pa.list_(pa.int64())), ("ranking_models", pa.list_(pa.string())),
        ("models", pa.list_(pa.string())), ("shown_choice", pa.string()), ("guideline_version", pa.int64()),
        ("created_at", pa.string()), ("scores", pa.string()), ("reason", pa.string()),
    ])


class _SplitWriter:
    """JSONL + Parquet writers for one split, flushing Parquet in row batches."""

    def __init__(self, folder: Path, split: str, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.jsonl_path = folder / f"{split}.jsonl"
        self.parquet_path = folder / f"{split}.parquet"
        self.jsonl = self.jsonl_path.open("w", encoding="utf-8")
        self.schema = schema
        self.parquet = pq.ParquetWriter(self.parquet_path, schema, compression="zstd")
        self.buffer: list[dict[str, Any]] = []
        self.rows = 0
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(self, row: dict[str, Any]) -> None:
        self.jsonl.write(self._dumps(row))
        self.jsonl.write("\n")
        self.buffer.append(row)
        self.rows += 1
        if len(self.buffer) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            self.parquet.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.buffer = []

    def close(self) -> None:
        self._flush()
        self.parquet.close()
        self.jsonl.flush()
        os.fsync(self.jsonl.fileno())
        self.jsonl.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _next_version(root: Path) -> int:
    versions = [int(p.name[1:]) for p in root.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return max(versions, default=0) + 1


def export_campaign(
    db: Database,
    campaign: str,
    fmt: str,
    out: Path,
    *,
    test_fraction: float = 0.1,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write a new version folder `out/vN` for `campaign` in format `fmt`."""
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if not 0 <= test_fraction < 1:
        raise InvalidInput("The test fraction must be in [0, 1).")
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        max_vote = q.max_vote_id(s, camp.id)
        camp_id, guideline_version, overlap = camp.id, camp.guideline_version, camp.overlap
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{uuid.uuid4().hex[:8]}-", dir=out))
    tmp.chmod(0o755)
    try:
        schema = _schema(fmt)
        writers = {name: _SplitWriter(tmp, name, schema) for name in ("train", "test")}
        items = item_count = votes = 0
        for rec in iter_items(db, camp_id, max_vote_id=max_vote, with_vote_details=fmt == "votes",
                              only_complete=fmt != "votes"):
            item_count += 1
            votes += len(rec.votes)
            split = split_of(campaign, rec.external_id, test_fraction)
            rows = _vote_rows(rec) if fmt == "votes" else _pair_rows(rec, fmt == "trl-conversational")
            wrote = False
            for row in rows:
                writers[split].write(row)
                wrote = True
            items += wrote
            if progress is not None:
                progress(item_count)
        for w in writers.values():
            w.close()
        files = {}
        for w in writers.values():
            for path in (w.jsonl_path, w.parquet_path):
                files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size, "rows": w.rows}
        train_rows, test_rows = writers["train"].rows, writers["test"].rows
        while True:
            version = _next_version(out)
            manifest = {
                "campaign": campaign,
                "format": fmt,
                "version": version,
                "created_at": datetime.now(UTC).isoformat(),
                "counts": {"rows": train_rows + test_rows, "train": train_rows, "test": test_rows,
                           "items_with_rows": items, "items_read": item_count, "votes_read": votes},
                "filters": {"items": "all" if fmt == "votes" else f"reached quorum (k={overlap})",
                            "pairs": None if fmt == "votes" else "plurality consensus; ties and both-bad give none",
                            "max_vote_id": max_vote},
                "vote_range": {"max_vote_id": max_vote},
                "guideline_version": guideline_version,
                "split": {"method": "sha1(campaign:item_id)", "test_fraction": test_fraction},
                "files": files,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            final = out / f"v{version:04d}"
            try:
                os.rename(tmp, final)
                break
            except OSError:
                if not final.exists():
                    raise
        _point_latest(out, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with db.write() as s:
        s.add(ExportRecord(campaign_id=camp_id, format=fmt, version=version, path=str(final),
                           rows=train_rows + test_rows, max_vote_id=max_vote, manifest=manifest))
    return ExportResult(final, version, train_rows + test_rows, train_rows, test_rows, manifest)


def _point_latest(root: Path, target: Path) -> None:
    """Atomically repoint `root/latest` at the newest version (a symlink swapped by rename)."""
    link = root / f".latest-{uuid.uuid4().hex[:8]}"
    os.symlink(target.name, link)
    os.replace(link, root / "latest")
