"""Versioned, streamed dataset exports (JSONL + Parquet, manifest, deterministic split).

Items, responses and votes are read as three cursors ordered by item id and merge-joined, so memory
stays flat however many votes there are. Each export is written to a hidden temp folder and renamed
into place: a crash leaves earlier versions untouched (and a leftover temp folder of a dead process
is swept by the next export).

Versions are cumulative (everything up to the newest vote) or incremental: only what changed since
the previous version of the same campaign and format, by vote id range. For pair formats an
incremental version holds every item that received a vote in the range (with consensus over all its
votes so far), so a consumer keeps the newest row per `item_id`; for `votes` it holds the new votes;
for `sft` and `correction-pairs` the new corrections.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bot.core import aggregate
from bot.core.errors import InvalidInput, NotFound
from bot.core.replies import prompt_as_text
from scheduler.procs import pid_alive
from storage import queries as q
from storage.db import Database
from storage.domain import NEUTRAL_OUTCOMES, ExportFormat, Outcome
from storage.models import ExportRecord

FORMATS = tuple(ExportFormat)
CORRECTION_FORMATS = frozenset({ExportFormat.SFT, ExportFormat.CORRECTION_PAIRS})
PAIR_FORMATS = frozenset(FORMATS) - CORRECTION_FORMATS - {ExportFormat.VOTES}
# What each format is for (shown in the CLI help and the manifest).
DESCRIPTIONS = {
    "trl": "prompt/chosen/rejected, explicit prompt (TRL DPOTrainer, RewardTrainer)",
    "trl-conversational": "prompt/chosen/rejected as chat messages (TRL, conversational)",
    "reward": "prompt/chosen/rejected + margin from vote strength (TRL RewardTrainer)",
    "kto": "prompt/completion/label, unpaired (TRL KTOTrainer)",
    "sft": "prompt/completion from annotator corrections (TRL SFTTrainer)",
    "correction-pairs": "prompt/chosen/rejected: corrected answer chosen over the original",
    "hh": "chosen/rejected Human:/Assistant: transcripts (Anthropic HH-RLHF layout)",
    "openai-preference": "input/preferred_output/non_preferred_output (OpenAI preference fine-tuning)",
    "votes": "every raw vote with annotator, ranking, scores and guideline version",
}
BATCH = 20_000
TMP_PREFIX = ".tmp-"


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
    resolution: Any = None  # an admin's settlement (`labelbot resolve`), which overrides the votes


@dataclass(frozen=True)
class ExportResult:
    path: Path
    version: int
    rows: int
    train_rows: int
    test_rows: int
    manifest: dict[str, Any]
    created: bool = True  # False: incremental export with nothing new, no folder written


@dataclass(frozen=True)
class Pair:
    """A consensus preference of one item: `chosen` beat `rejected` with `support` of `total` votes."""

    chosen: int
    rejected: int
    support: float
    against: float
    total: float

    @property
    def agreement(self) -> float:
        return self.support / self.total if self.total else 0.0

    @property
    def margin(self) -> float:
        """Net share of votes for the chosen side, in (0, 1]: 1 = unanimous, near 0 = a narrow win."""
        return (self.support - self.against) / self.total if self.total else 0.0


def split_of(campaign: str, external_id: str, test_fraction: float) -> str:
    """Deterministic train/test assignment by item (same item, same split, every export)."""
    digest = hashlib.sha1(f"{campaign}:{external_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") < test_fraction * 2**32 else "train"


def _loads(value: Any) -> Any:
    """JSON columns are selected as text (CAST ... AS TEXT) so SQLite and PostgreSQL both give a JSON string."""
    return json.loads(value) if isinstance(value, str) else value


def _stream(conn: Any, sql: Any, params: dict[str, Any]) -> Iterator[Any]:
    """Rows as plain tuples in batches: a server-side cursor on PostgreSQL; on SQLite the driver's cursor
    directly (SQLAlchemy's Row objects cost about a third of a million-vote export there)."""
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(str(sql), params)
            while batch := cursor.fetchmany(BATCH):
                yield from batch
        finally:
            cursor.close()
        return
    result = conn.execution_options(stream_results=True, yield_per=BATCH).execute(sql, params)
    for part in result.partitions(BATCH):
        yield from part


def iter_items(db: Database, campaign_id: int, *, max_vote_id: int, with_vote_details: bool = False,
               only_complete: bool = True, after_vote_id: int = 0, votes_after_only: bool = False
               ) -> Iterator[ItemRecord]:
    """Each item of a campaign with its responses and votes (id <= max_vote_id), in item-id order.

    `after_vote_id` keeps only items with a vote in (after_vote_id, max_vote_id]; `votes_after_only`
    also drops the older votes of those items (the `votes` format's incremental rows).
    """
    status_filter = "AND i.status IN ('complete', 'resolved')" if only_complete else ""
    changed = ("AND EXISTS (SELECT 1 FROM vote nv WHERE nv.item_id = i.id AND nv.id > :lo AND nv.id <= :m)"
               if after_vote_id else "")
    item_sql = text(
        "SELECT i.id, i.external_id, CAST(i.prompt AS TEXT), i.n_responses, i.status, CAST(i.gold AS TEXT), "
        f"CAST(i.resolution AS TEXT) FROM item i WHERE i.campaign_id = :c {status_filter} {changed} ORDER BY i.id"
    )
    resp_sql = text(
        "SELECT r.item_id, r.model, r.text FROM response r JOIN item i ON i.id = r.item_id "
        f"WHERE i.campaign_id = :c {status_filter} ORDER BY r.item_id, r.position"
    )
    detail = (", v.shown_choice, v.guideline_version, v.created_at, CAST(v.scores AS TEXT), "
              "v.reason, v.updated_at") if with_vote_details else ""
    low = "AND v.id > :lo" if votes_after_only else ""
    vote_sql = text(
        f"SELECT v.item_id, v.outcome, v.winner, CAST(v.ranking AS TEXT), v.id, v.annotator_id{detail} FROM vote v "
        "JOIN item i ON i.id = v.item_id "
        f"WHERE i.campaign_id = :c AND v.id <= :m {low} {status_filter} ORDER BY v.item_id, v.id"
    )
    params = {"c": campaign_id, "m": max_vote_id, "lo": after_vote_id}
    with db.engine.connect() as c_items, db.engine.connect() as c_resp, db.engine.connect() as c_votes:
        resp_it = _stream(c_resp, resp_sql, params)
        vote_it = _stream(c_votes, vote_sql, params)
        resp = next(resp_it, None)
        vote = next(vote_it, None)
        for item_id, ext, prompt, n, status, gold, resolution in _stream(c_items, item_sql, params):
            rec = ItemRecord(item_id, ext, _loads(prompt), n, status, _loads(gold), resolution=_loads(resolution))
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


def _vote_lite(row: tuple[Any, ...], n: int, weights: dict[int, float] | None = None) -> aggregate.VoteLite:
    outcome, winner, ranking = row[1], row[2], row[3]
    weight = weights.get(row[5], 1.0) if weights else 1.0
    if outcome in NEUTRAL_OUTCOMES:
        return aggregate.VoteLite(outcome, None, weight)
    if n == 2 and winner is not None:
        return aggregate.VoteLite(outcome, (winner, 1 - winner), weight)
    return aggregate.VoteLite(outcome, tuple(_loads(ranking) or ()), weight)


def consensus_of(rec: ItemRecord, weights: dict[int, float] | None = None) -> aggregate.ItemConsensus:
    if rec.resolution:
        return aggregate.resolved_consensus(rec.resolution, len(rec.votes), rec.n)
    return aggregate.item_consensus([_vote_lite(v, rec.n, weights) for v in rec.votes], rec.n)


def consensus_pairs(rec: ItemRecord, weights: dict[int, float] | None = None) -> list[Pair]:
    """The item's consensus pairs (same rule as `aggregate.item_consensus`), with votes against each.

    An admin's resolution wins over the votes; `weights` (annotator id -> reliability) gives the
    weighted consensus. Unweighted two-response items (nearly all of them) take a counting fast path:
    this loop runs once per item of a 300,000-item export.
    """
    votes = rec.votes
    total = len(votes)
    if rec.resolution:
        cons = aggregate.resolved_consensus(rec.resolution, total, rec.n)
        return [Pair(p.chosen, p.rejected, float(total), 0.0, float(total)) for p in cons.pairs]
    if not total:
        return []
    if rec.n == 2 and not weights:
        w0 = w1 = 0
        for v in votes:
            outcome = v[1]
            if outcome in NEUTRAL_OUTCOMES:
                continue
            winner = v[2]
            if winner is None:
                ranking = _loads(v[3]) or ()
                winner = ranking[0] if ranking else None
            if winner == 0:
                w0 += 1
            elif winner == 1:
                w1 += 1
        if w0 > w1 and w0 > total - w0 - w1:
            return [Pair(0, 1, float(w0), float(w1), float(total))]
        if w1 > w0 and w1 > total - w0 - w1:
            return [Pair(1, 0, float(w1), float(w0), float(total))]
        return []
    lites = [_vote_lite(v, rec.n, weights) for v in votes]
    cons = aggregate.item_consensus(lites, rec.n)
    if not cons.pairs:
        return []
    against: dict[tuple[int, int], float] = {}
    for lite in lites:
        if lite.outcome in NEUTRAL_OUTCOMES:
            continue
        for better, worse in aggregate.implied_pairs(lite.ranking or (), rec.n):
            against[(worse, better)] = against.get((worse, better), 0.0) + lite.weight
    return [Pair(p.chosen, p.rejected, p.support, against.get((p.chosen, p.rejected), 0.0), p.total)
            for p in cons.pairs]


def _as_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


HH_ROLES = {"user": "Human", "assistant": "Assistant", "system": "System"}


def hh_transcript(prompt: Any, answer: str) -> str:
    """Anthropic HH-RLHF layout: "\\n\\nHuman: ...\\n\\nAssistant: ..." turns, the answer last."""
    parts = [f"\n\n{HH_ROLES.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in _as_messages(prompt)]
    parts.append(f"\n\nAssistant: {answer}")
    return "".join(parts)


# ------------------------------------------------------------------------------------------ row builders


def _consensus_rows(rec: ItemRecord, fmt: str, weights: dict[int, float] | None = None,
                    keep: Callable[[ItemRecord, Pair], bool] | None = None) -> Iterator[dict[str, Any]]:
    pairs = consensus_pairs(rec, weights)
    if keep is not None:
        pairs = [p for p in pairs if keep(rec, p)]
    if fmt == "kto":
        yield from _kto_rows(rec, pairs, weights)
        return
    if not pairs:
        return
    nvotes = len(rec.votes)
    if fmt in ("trl", "reward"):
        prompt: Any = prompt_as_text(rec.prompt)
    elif fmt in ("trl-conversational", "openai-preference"):
        prompt = _as_messages(rec.prompt)
    else:
        prompt = rec.prompt
    for pair in pairs:
        chosen, rejected = rec.texts[pair.chosen], rec.texts[pair.rejected]
        if fmt == "openai-preference":
            yield {"input": {"messages": prompt},
                   "preferred_output": [{"role": "assistant", "content": chosen}],
                   "non_preferred_output": [{"role": "assistant", "content": rejected}]}
            continue
        if fmt == "hh":
            row: dict[str, Any] = {"chosen": hh_transcript(prompt, chosen), "rejected": hh_transcript(prompt, rejected)}
        elif fmt == "trl-conversational":
            row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                   "rejected": [{"role": "assistant", "content": rejected}]}
        else:
            row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            if fmt == "reward":
                row["margin"] = round(pair.margin, 4)
        row["item_id"] = rec.external_id
        row["chosen_model"] = rec.models[pair.chosen]
        row["rejected_model"] = rec.models[pair.rejected]
        row["votes"] = nvotes
        row["agreement"] = round(pair.agreement, 4)
        yield row


def _kto_rows(rec: ItemRecord, pairs: list[Pair], weights: dict[int, float] | None = None) -> Iterator[dict[str, Any]]:
    """Unpaired labels: responses that only win are desirable, ones that only lose (or all, when the
    consensus is "both bad") undesirable; a response that both wins and loses says nothing alone."""
    if pairs:
        winners = {p.chosen for p in pairs}
        losers = {p.rejected for p in pairs}
        labels = {p: True for p in winners - losers} | {p: False for p in losers - winners}
        agreement = min(p.agreement for p in pairs)
    else:
        cons = consensus_of(rec, weights)
        if cons.outcome != Outcome.BOTH_BAD:
            return
        labels = dict.fromkeys(range(rec.n), False)
        agreement = cons.agreement
    prompt = prompt_as_text(rec.prompt)
    for pos in sorted(labels):
        yield {"prompt": prompt, "completion": rec.texts[pos], "label": labels[pos], "item_id": rec.external_id,
               "model": rec.models[pos], "votes": len(rec.votes), "agreement": round(agreement, 4)}


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
            "scores": json.dumps(_loads(v[9])) if v[9] is not None else None,
            "reason": v[10],
        }


def iter_corrections(db: Database, campaign_id: int, *, max_id: int, after_id: int = 0) -> Iterator[dict[str, Any]]:
    """The newest correction per (item, annotator, response) with the prompt and original answer.

    Flagged items are left out. Streams in correction-id order.
    """
    sql = text(
        "SELECT c.id, c.annotator_id, c.position, c.text, c.guideline_version, i.external_id, CAST(i.prompt AS TEXT), "
        "r.model, r.text FROM correction c JOIN item i ON i.id = c.item_id "
        "JOIN response r ON r.item_id = c.item_id AND r.position = c.position "
        "WHERE i.campaign_id = :c AND i.status <> 'flagged' AND c.id > :lo AND c.id <= :m AND c.id IN ("
        "SELECT MAX(c2.id) FROM correction c2 JOIN item i2 ON i2.id = c2.item_id "
        "WHERE i2.campaign_id = :c AND c2.id <= :m GROUP BY c2.item_id, c2.annotator_id, c2.position) "
        "ORDER BY c.id"
    )
    with db.engine.connect() as conn:
        for cid, ann, pos, corrected, gv, ext, prompt, model, original in _stream(
                conn, sql, {"c": campaign_id, "m": max_id, "lo": after_id}):
            yield {"correction_id": int(cid), "annotator_id": int(ann), "position": int(pos), "text": corrected,
                   "guideline_version": int(gv), "item_id": ext, "prompt": _loads(prompt), "model": model,
                   "original": original}


def _correction_row(c: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    prompt = prompt_as_text(c["prompt"])
    meta = {"item_id": c["item_id"], "correction_id": c["correction_id"], "annotator_id": c["annotator_id"],
            "position": c["position"], "guideline_version": c["guideline_version"]}
    if fmt == "sft":
        return {"prompt": prompt, "completion": c["text"], "original_model": c["model"], **meta}
    if c["text"].strip() == (c["original"] or "").strip():
        return None  # an unchanged "correction" is no preference
    return {"prompt": prompt, "chosen": c["text"], "rejected": c["original"], "rejected_model": c["model"], **meta}


# ------------------------------------------------------------------------------------------ schemas


def schema_of(fmt: str) -> Any:
    """The Arrow schema of a format (the Parquet files' schema; JSONL rows carry the same keys)."""
    import pyarrow as pa

    s, i64, f64 = pa.string(), pa.int64(), pa.float64()
    msg = pa.list_(pa.struct([("role", s), ("content", s)]))
    provenance = [("item_id", s), ("chosen_model", s), ("rejected_model", s), ("votes", i64), ("agreement", f64)]
    correction_meta = [("item_id", s), ("correction_id", i64), ("annotator_id", i64), ("position", i64),
                       ("guideline_version", i64)]
    schemas = {
        "trl": [("prompt", s), ("chosen", s), ("rejected", s), *provenance],
        "trl-conversational": [("prompt", msg), ("chosen", msg), ("rejected", msg), *provenance],
        "reward": [("prompt", s), ("chosen", s), ("rejected", s), ("margin", f64), *provenance],
        "kto": [("prompt", s), ("completion", s), ("label", pa.bool_()), ("item_id", s), ("model", s),
                ("votes", i64), ("agreement", f64)],
        "sft": [("prompt", s), ("completion", s), ("original_model", s), *correction_meta],
        "correction-pairs": [("prompt", s), ("chosen", s), ("rejected", s), ("rejected_model", s), *correction_meta],
        "hh": [("chosen", s), ("rejected", s), *provenance],
        "openai-preference": [("input", pa.struct([("messages", msg)])), ("preferred_output", msg),
                              ("non_preferred_output", msg)],
        "votes": [("item_id", s), ("vote_id", i64), ("annotator_id", i64), ("outcome", s),
                  ("ranking", pa.list_(i64)), ("ranking_models", pa.list_(s)), ("models", pa.list_(s)),
                  ("shown_choice", s), ("guideline_version", i64), ("created_at", s), ("scores", s), ("reason", s)],
    }
    return pa.schema(schemas[fmt])


class _SplitWriter:
    """JSONL + Parquet writers for one split; Parquet gets column batches of BATCH rows."""

    def __init__(self, folder: Path, split: str, schema: Any) -> None:
        import pyarrow.parquet as pq

        self.jsonl_path = folder / f"{split}.jsonl"
        self.parquet_path = folder / f"{split}.parquet"
        self.jsonl = self.jsonl_path.open("w", encoding="utf-8", buffering=1 << 20)
        self.schema = schema
        self.names = schema.names
        self.parquet = pq.ParquetWriter(self.parquet_path, schema, compression="zstd")
        self.columns: list[list[Any]] = [[] for _ in self.names]
        self.pending = 0
        self.rows = 0
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write(self, row: dict[str, Any]) -> None:
        self.jsonl.write(self._dumps(row) + "\n")
        for col, name in zip(self.columns, self.names, strict=True):
            col.append(row[name])
        self.pending += 1
        self.rows += 1
        if self.pending >= BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            arrays = [pa.array(col, type=f.type) for col, f in zip(self.columns, self.schema, strict=True)]
            self.parquet.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
            self.columns = [[] for _ in self.names]
            self.pending = 0

    def close(self) -> None:
        self._flush()
        self.parquet.close()
        self.jsonl.flush()
        os.fsync(self.jsonl.fileno())
        self.jsonl.close()

    def abort(self) -> None:
        try:
            self.parquet.close()
        finally:
            self.jsonl.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _folder_versions(root: Path) -> list[int]:
    return [int(p.name[1:]) for p in root.glob("v*") if p.is_dir() and p.name[1:].isdigit()]


def sweep_stale_temp(root: Path) -> list[Path]:
    """Remove temp folders left by exports whose process died (a crash mid-export)."""
    removed = []
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        parts = tmp.name[len(TMP_PREFIX):].split("-")
        if tmp.is_dir() and parts and parts[0].isdigit() and not pid_alive(int(parts[0])):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    for link in root.glob(".latest-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)
    return removed


def latest_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of the newest version folder under `out`, if any."""
    versions = sorted(_folder_versions(Path(out)))
    if not versions:
        return None
    return json.loads((Path(out) / f"v{versions[-1]:04d}" / "manifest.json").read_text(encoding="utf-8"))


def export_campaign(
    db: Database,
    campaign: str,
    fmt: str,
    out: Path,
    *,
    test_fraction: float = 0.1,
    incremental: bool = False,
    progress: Callable[[int], None] | None = None,
    trigger: dict[str, Any] | None = None,
    balance_length: bool = False,
    _before_rename: Callable[[Path], None] | None = None,
) -> ExportResult:
    """Write a new version folder `out/vNNNN` for `campaign` in format `fmt`.

    Cumulative by default; `incremental=True` exports only what is new since the previous version of
    this campaign and format (no folder is written when there is nothing new). `trigger` (the
    scheduler's job and slot) is recorded in the manifest.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if not 0 <= test_fraction < 1:
        raise InvalidInput("The test fraction must be in [0, 1).")
    with db.read() as s:
        camp = q.campaign_by_name(s, campaign)
        if camp is None:
            raise NotFound(f"No campaign named {campaign!r}.")
        max_vote = q.max_vote_id(s, camp.id)
        max_corr = _max_correction_id(s, camp.id)
        camp_id, guideline_version, overlap = camp.id, camp.guideline_version, camp.overlap
        consensus_method = (camp.settings or {}).get("consensus", "majority")
        prev = q.latest_export(s, camp_id, fmt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale_temp(out)
    corrections = fmt in CORRECTION_FORMATS
    hi = max_corr if corrections else max_vote
    lo = 0
    base_version = None
    if incremental and prev is not None:
        base_version = prev.version
        lo = int(prev.manifest.get("source_range", {}).get("max_id", prev.max_vote_id) or 0)
        if lo >= hi:
            return ExportResult(Path(prev.path), prev.version, 0, 0, 0, dict(prev.manifest), created=False)
    weights = _reliability_weights(db, campaign) if consensus_method == "weighted" else None
    keep = (_length_balancer(db, camp_id, hi, lo, fmt, weights, campaign)
            if balance_length and fmt in PAIR_FORMATS else None)
    alpha = aggregate.AlphaAccumulator()
    tmp = out / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o755)
    writers: dict[str, _SplitWriter] = {}
    try:
        schema = schema_of(fmt)
        writers = {name: _SplitWriter(tmp, name, schema) for name in ("train", "test")}
        items = item_count = votes = 0
        if corrections:
            seen: set[str] = set()
            for c in iter_corrections(db, camp_id, max_id=hi, after_id=lo):
                item_count += 1
                row = _correction_row(c, fmt)
                if row is not None:
                    writers[split_of(campaign, c["item_id"], test_fraction)].write(row)
                    seen.add(c["item_id"])
            items = len(seen)
        else:
            is_votes = fmt == "votes"
            for rec in iter_items(db, camp_id, max_vote_id=hi, with_vote_details=is_votes, only_complete=not is_votes,
                                  after_vote_id=lo, votes_after_only=is_votes):
                item_count += 1
                votes += len(rec.votes)
                alpha.add(_categories(rec))
                writer = writers[split_of(campaign, rec.external_id, test_fraction)]
                wrote = False
                for row in (_vote_rows(rec) if is_votes else _consensus_rows(rec, fmt, weights, keep)):
                    writer.write(row)
                    wrote = True
                items += wrote
                if progress and item_count % 1000 == 0:
                    progress(item_count)
        for w in writers.values():
            w.close()
        files = {}
        for w in writers.values():
            for path in (w.jsonl_path, w.parquet_path):
                files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size, "rows": w.rows}
        train_rows, test_rows = writers["train"].rows, writers["test"].rows
        with db.read() as s:
            db_max = _max_recorded_version(s, camp_id, fmt)
        while True:
            version = max([*_folder_versions(out), db_max], default=0) + 1
            manifest = {
                "campaign": campaign,
                "format": fmt,
                "description": DESCRIPTIONS[fmt],
                "version": version,
                "mode": "incremental" if incremental else "cumulative",
                "base_version": base_version,
                "created_at": datetime.now(UTC).isoformat(),
                "counts": {"rows": train_rows + test_rows, "train": train_rows, "test": test_rows,
                           "items_with_rows": items, "items_read": item_count,
                           ("corrections_read" if corrections else "votes_read"): item_count if corrections else votes},
                "filters": _filters(fmt, overlap),
                "source_range": {"table": "correction" if corrections else "vote", "after_id": lo, "max_id": hi},
                "vote_range": {"after_vote_id": 0 if corrections else lo, "max_vote_id": max_vote},
                "guideline_version": guideline_version,
                "agreement": {"krippendorff_alpha": None if corrections else _round(alpha.value())},
                "consensus": {"method": "admin resolution, else " + consensus_method,
                              "weights": None if weights is None else {str(k): v for k, v in sorted(weights.items())},
                              "length_balanced": keep is not None},
                "split": {"method": "sha1(campaign:item_id)", "test_fraction": test_fraction},
                "columns": list(schema.names),
                "files": files,
                "trigger": trigger,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if _before_rename is not None:
                _before_rename(tmp)
            final = out / f"v{version:04d}"
            try:
                os.rename(tmp, final)
                break
            except OSError:
                if not final.exists():
                    raise
        _fsync_dir(out)
        _point_latest(out, final)
    except BaseException:
        for w in writers.values():
            with contextlib.suppress(Exception):
                w.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with db.write() as s:
        s.add(ExportRecord(campaign_id=camp_id, format=fmt, version=version, path=str(final),
                           rows=train_rows + test_rows, max_vote_id=max_vote, manifest=manifest))
    return ExportResult(final, version, train_rows + test_rows, train_rows, test_rows, manifest)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _categories(rec: ItemRecord) -> list[str]:
    """Each vote of an item as a category label (for Krippendorff's alpha)."""
    out = []
    for v in rec.votes:
        if v[1] in NEUTRAL_OUTCOMES:
            out.append(v[1])
        elif rec.n == 2 and v[2] is not None:
            out.append(str(v[2]))
        else:
            out.append(str(_loads(v[3])))
    return out


def _reliability_weights(db: Database, campaign: str) -> dict[int, float]:
    """Annotator reliability (gold accuracy x agreement with the crowd) for the weighted consensus."""
    from bot.core.quality import quality_report

    return quality_report(db, campaign).weights()


def _length_balancer(db: Database, campaign_id: int, hi: int, lo: int, fmt: str,
                     weights: dict[int, float] | None, campaign: str) -> Callable[[ItemRecord, Pair], bool]:
    """A pair filter that leaves as many "chosen is longer" as "chosen is shorter" pairs.

    A first pass counts both kinds; the larger kind is then subsampled by a hash of the item and pair,
    so the choice is deterministic and unrelated to content. A reward model trained on the result
    cannot learn that longer wins.
    """
    longer = shorter = 0
    for rec in iter_items(db, campaign_id, max_vote_id=hi, after_vote_id=lo):
        for p in consensus_pairs(rec, weights):
            a, b = len(rec.texts[p.chosen]), len(rec.texts[p.rejected])
            longer += a > b
            shorter += a < b
    keep_longer = min(1.0, shorter / longer) if longer else 1.0
    keep_shorter = min(1.0, longer / shorter) if shorter else 1.0

    def keep(rec: ItemRecord, p: Pair) -> bool:
        a, b = len(rec.texts[p.chosen]), len(rec.texts[p.rejected])
        if a == b:
            return True
        rate = keep_longer if a > b else keep_shorter
        digest = hashlib.sha1(f"{campaign}:{rec.external_id}:{p.chosen}:{p.rejected}".encode()).digest()
        return int.from_bytes(digest[:4], "big") < rate * 2**32

    return keep


def _filters(fmt: str, overlap: int) -> dict[str, Any]:
    if fmt == "votes":
        return {"items": "all", "votes": "all"}
    if fmt in CORRECTION_FORMATS:
        return {"items": "not flagged", "corrections": "newest per (item, annotator, response)",
                "pairs": "unchanged corrections dropped" if fmt == "correction-pairs" else None}
    pairs = "plurality consensus; ties and both-bad give none"
    if fmt == "kto":
        pairs = "winners desirable, losers undesirable, both-bad consensus all undesirable; ties none"
    return {"items": f"reached quorum (k={overlap})", "pairs": pairs}


def _max_correction_id(session: Any, campaign_id: int) -> int:
    value = session.connection().execute(text(
        "SELECT MAX(c.id) FROM correction c JOIN item i ON i.id = c.item_id WHERE i.campaign_id = :c"),
        {"c": campaign_id}).scalar()
    return int(value or 0)


def _max_recorded_version(session: Any, campaign_id: int, fmt: str) -> int:
    rec = q.latest_export(session, campaign_id, fmt)
    return rec.version if rec else 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _point_latest(root: Path, target: Path) -> None:
    """Atomically repoint `root/latest` at the newest version (a symlink swapped by rename)."""
    link = root / f".latest-{uuid.uuid4().hex[:8]}"
    os.symlink(target.name, link)
    os.replace(link, root / "latest")
