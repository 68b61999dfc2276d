"""Import: JSONL and CSV, all-or-nothing validation with line and field, idempotent re-import."""

from __future__ import annotations

import json

import pytest
from sqlmodel import func, select

from bot.core.errors import ImportFailed, InvalidInput
from bot.core.importer import parse_file
from bot.core.service import CampaignSpec
from storage.models import Item, Response
from tests.conftest import CLI, make_items


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def items_in(db) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(Item)).one()


def test_jsonl_with_chat_prompts_media_and_gold(tmp_path, service, db):
    service.create_campaign(CampaignSpec("c"), CLI)
    rows = [
        {"id": "a", "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
         "responses": [{"model": "m1", "text": "Hello"}, {"model": "m2", "text": "", "image": "https://x/y.png"},
                       {"model": "m3", "text": "Hey", "audio": "clip.mp3"}],
         "meta": {"source": "t"}, "gold": {"best": 2, "explanation": "friendlier"}},
        {"id": 7, "prompt": "Q", "responses": [{"model": "m1", "text": "x"}, {"model": "m2", "text": "y"}]},
    ]
    items = parse_file(write_jsonl(tmp_path / "items.jsonl", rows))
    assert service.import_items("c", items, CLI) == (2, 0)
    assert service.import_items("c", items, CLI) == (0, 2)
    with db.read() as s:
        item = s.exec(select(Item).where(Item.external_id == "a")).one()
        responses = s.exec(select(Response).where(Response.item_id == item.id).order_by(Response.position)).all()
    assert item.n_responses == 3 and item.gold["best"] == 2 and item.meta == {"source": "t"}
    assert item.prompt[0]["role"] == "system"
    assert responses[1].image == "https://x/y.png" and responses[2].audio == "clip.mp3"


def test_csv_with_flattened_columns(tmp_path, service, db):
    service.create_campaign(CampaignSpec("c"), CLI)
    path = tmp_path / "items.csv"
    path.write_text(
        "id,prompt,responses.0.model,responses.0.text,responses.1.model,responses.1.text,gold.best,meta.source\n"
        'q1,"What is 2+2?",m1,4,m2,"five, I think",0,csv\n'
        "q2,Name a colour,m1,red,m2,blue,,\n",
        encoding="utf-8",
    )
    items = parse_file(path)
    assert [i.external_id for i in items] == ["q1", "q2"]
    assert items[0].responses[1]["text"] == "five, I think" and items[0].gold == {"best": 0}
    assert items[0].meta == {"source": "csv"} and items[1].gold is None
    assert service.import_items("c", items, CLI) == (2, 0)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": "x", "responses": [{"text": "a"}, {"text": "b"}]}, "id"),
        ({"id": "1", "prompt": "", "responses": [{"text": "a"}, {"text": "b"}]}, "prompt"),
        ({"id": "1", "prompt": "x", "responses": [{"text": "a"}]}, "responses"),
        ({"id": "1", "prompt": "x", "responses": [{"text": "a"}, {"text": 5}]}, "responses[1].text"),
        ({"id": "1", "prompt": "x", "responses": [{"text": "a"}, {"text": "b" * 40_001}]}, "responses[1].text"),
        ({"id": "1", "prompt": "x", "responses": [{"text": "a"}, {"text": "b"}], "gold": {"best": 5}}, "gold.best"),
        ({"id": "1", "prompt": [{"role": "bot", "content": "x"}], "responses": [{"text": "a"}, {"text": "b"}]},
         "prompt[0]"),
        ({"id": "1", "prompt": "x", "responses": [{"text": "a"}, {"text": "b"}], "extra": 1}, "extra"),
    ],
)
def test_each_invalid_row_is_reported_with_line_and_field(tmp_path, row, field):
    good = make_items(2)
    path = write_jsonl(tmp_path / "bad.jsonl", [*good, row])
    with pytest.raises(ImportFailed) as err:
        parse_file(path)
    assert (3, field) in [(ln, f) for ln, f, _ in err.value.problems]


def test_broken_files_import_nothing(tmp_path, service, db):
    service.create_campaign(CampaignSpec("c"), CLI)
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(make_items(1)[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ImportFailed) as err:
        parse_file(path)
    assert err.value.problems[0][:2] == (2, "row") and "line 2" in err.value.message
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ImportFailed):
        parse_file(binary)
    dup = write_jsonl(tmp_path / "dup.jsonl", make_items(2) + make_items(1))
    with pytest.raises(ImportFailed) as err:
        parse_file(dup)
    assert "duplicate of line 1" in err.value.message
    with pytest.raises(InvalidInput):
        parse_file(tmp_path / "items.xlsx")
    assert items_in(db) == 0


def test_import_is_one_transaction(service, db):
    """If writing fails part-way (unknown campaign), nothing lands."""
    from bot.core.errors import NotFound
    from bot.core.importer import validate_row

    items = [validate_row(r, 1)[0] for r in make_items(3)]
    with pytest.raises(NotFound):
        service.import_items("missing", items, CLI)
    assert items_in(db) == 0
