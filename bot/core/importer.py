"""Parse and validate import files (JSONL, or CSV with the same columns flattened).

Every row is checked before anything is written; one bad row rejects the file with the line number
and field of each problem, so an import never lands half-way.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.core.errors import ImportFailed, InvalidInput
from bot.core.events import ItemIn
from storage.domain import NEUTRAL_OUTCOMES

MAX_TEXT_CHARS = 40_000
MAX_RESPONSES = 8
MAX_ID_CHARS = 200
ROLES = ("system", "user", "assistant")
GOLD_OUTCOMES = NEUTRAL_OUTCOMES

Problem = tuple[int, str, str]


def validate_row(raw: Any, line: int) -> tuple[ItemIn | None, list[Problem]]:
    """Check one decoded row against the documented item shape."""
    problems: list[Problem] = []

    def bad(field: str, msg: str) -> None:
        problems.append((line, field, msg))

    if not isinstance(raw, dict):
        bad("row", "must be a JSON object")
        return None, problems
    ext = raw.get("id")
    if isinstance(ext, int) and not isinstance(ext, bool):
        ext = str(ext)
    if not isinstance(ext, str) or not ext.strip():
        bad("id", "required, a non-empty string")
    elif len(ext) > MAX_ID_CHARS:
        bad("id", f"longer than {MAX_ID_CHARS} characters")
    prompt = raw.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            bad("prompt", "empty")
        elif len(prompt) > MAX_TEXT_CHARS:
            bad("prompt", f"longer than {MAX_TEXT_CHARS} characters")
    elif isinstance(prompt, list) and prompt:
        for i, msg in enumerate(prompt):
            if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
                bad(f"prompt[{i}]", "each message needs role (system, user or assistant) and content text")
            elif len(msg["content"]) > MAX_TEXT_CHARS:
                bad(f"prompt[{i}].content", f"longer than {MAX_TEXT_CHARS} characters")
    else:
        bad("prompt", "required: text or a list of {role, content} messages")
    responses = raw.get("responses")
    clean: list[dict[str, Any]] = []
    if not isinstance(responses, list) or len(responses) < 2:
        bad("responses", "needs at least two responses")
    elif len(responses) > MAX_RESPONSES:
        bad("responses", f"at most {MAX_RESPONSES} responses per item")
    else:
        for i, resp in enumerate(responses):
            if not isinstance(resp, dict):
                bad(f"responses[{i}]", "must be an object with model and text")
                continue
            text = resp.get("text", "")
            if text is None:
                text = ""
            if not isinstance(text, str):
                bad(f"responses[{i}].text", "must be text")
                continue
            if len(text) > MAX_TEXT_CHARS:
                bad(f"responses[{i}].text", f"longer than {MAX_TEXT_CHARS} characters")
            media = {k: resp.get(k) for k in ("image", "audio") if resp.get(k)}
            for k, v in media.items():
                if not isinstance(v, str) or len(v) > 2000:
                    bad(f"responses[{i}].{k}", "must be a URL or path of at most 2000 characters")
            if not text.strip() and not media:
                bad(f"responses[{i}]", "needs text, image or audio")
            model = resp.get("model", "")
            if model is None:
                model = ""
            if not isinstance(model, str) or len(model) > 200:
                bad(f"responses[{i}].model", "must be a name of at most 200 characters")
                continue
            clean.append({"model": model or f"model-{i}", "text": text, **media})
    meta = raw.get("meta") or {}
    if not isinstance(meta, dict):
        bad("meta", "must be an object")
    gold = raw.get("gold")
    if gold is not None:
        if not isinstance(gold, dict):
            bad("gold", "must be an object like {\"best\": 0}")
        elif "best" in gold:
            best = gold["best"]
            if isinstance(best, str) and best.isdigit():
                best = int(best)
                gold = {**gold, "best": best}
            if not isinstance(best, int) or isinstance(best, bool) or not (
                isinstance(responses, list) and 0 <= best < len(responses)
            ):
                bad("gold.best", "must be the index of one of the responses")
        elif gold.get("outcome") not in GOLD_OUTCOMES:
            bad("gold", "needs best (a response index) or outcome (tie or both_bad)")
    unknown = set(raw) - {"id", "prompt", "responses", "meta", "gold"}
    if unknown:
        bad(sorted(unknown)[0], "unknown field")
    if problems:
        return None, problems
    return ItemIn(external_id=ext.strip(), prompt=prompt, responses=clean, meta=meta, gold=gold), []


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    """CSV columns `responses.0.text`, `gold.best`, `meta.x` (or JSON in `meta`) -> nested dict."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue
        key = key.strip()
        if key in ("prompt", "meta", "gold", "responses") and value.lstrip()[:1] in "[{":
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                if key != "prompt":
                    out[key] = value
                    continue
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt: Any = value if last else ([] if parts[i + 1].isdigit() else {})
            if isinstance(node, list):
                idx = int(part)
                while len(node) <= idx:
                    node.append(None)
                if node[idx] is None or last:
                    node[idx] = nxt
                node = node[idx]
            else:
                if part not in node or last:
                    node[part] = nxt
                node = node[part]
    if isinstance(out.get("gold"), dict) and isinstance(out["gold"].get("best"), str) and out["gold"]["best"].isdigit():
        out["gold"]["best"] = int(out["gold"]["best"])
    return out


def iter_rows(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, decoded row or None, decode error) for a JSONL or CSV file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv"):
        raise InvalidInput(f"{path.name}: unsupported file type (use .jsonl or .csv).")
    try:
        handle = path.open("r", encoding="utf-8", newline="")
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from exc
    with handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "id" not in reader.fieldnames:
                raise ImportFailed([(1, "header", "CSV needs a header row with id, prompt, responses.N.text ...")])
            for row in reader:
                yield reader.line_num, _unflatten(row), None
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def parse_file(path: Path, progress: Callable[[int], None] | None = None) -> list[ItemIn]:
    """Validate a whole file; raises ImportFailed listing every bad row, or returns all items."""
    items: list[ItemIn] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    try:
        for line, raw, error in iter_rows(path):
            if progress:
                progress(line)
            if error:
                problems.append((line, "row", error))
                continue
            item, row_problems = validate_row(raw, line)
            problems.extend(row_problems)
            if item is not None:
                if item.external_id in seen:
                    problems.append((line, "id", f"duplicate of line {seen[item.external_id]}"))
                    continue
                seen[item.external_id] = line
                items.append(item)
    except UnicodeDecodeError as exc:
        raise ImportFailed([(0, "file", f"not UTF-8 text ({exc.reason})")]) from exc
    except csv.Error as exc:
        raise ImportFailed([(0, "file", f"broken CSV ({exc})")]) from exc
    if problems:
        raise ImportFailed(problems)
    if not items:
        raise ImportFailed([(0, "file", "no items found")])
    return items


