"""The shared `/label` dispatcher both bots use: permissions, quality commands and their effects."""

from __future__ import annotations

from sqlmodel import select

from bot.adapters.commands import handle
from bot.config import Settings
from bot.core.events import VoteCast
from storage.models import AuditLog, Item
from tests.conftest import actor


def cfg(tmp_path) -> Settings:
    return Settings(database_url="sqlite://", labelbot_export_dir=str(tmp_path / "exports"))


def test_everyone_commands_and_help(service, campaign, tmp_path):
    reply = handle(service, cfg(tmp_path), actor("U1"), "help", channel="C123")
    assert "next" in reply.text and "resolve" not in reply.text  # admin commands hidden from others
    assert "resolve ITEM ANSWER" in handle(service, cfg(tmp_path), actor("UADMIN"), "help").text
    reply = handle(service, cfg(tmp_path), actor("U1"), "next", channel="C123")
    assert reply.task is not None and reply.task.campaign == "demo"
    assert "Guidelines for demo" in handle(service, cfg(tmp_path), actor("U1"), "guidelines", channel="C123").text
    assert not handle(service, cfg(tmp_path), actor("U1"), "frobnicate").ok


def test_admin_commands_refuse_others_and_change_nothing(service, campaign, db, tmp_path):
    for text in ("post 3", "pause", "resolve ext-0 model-0", "requeue", "quality", "finetune reward",
                 "export trl", "admin add <@U2>"):
        reply = handle(service, cfg(tmp_path), actor("U1"), text, channel="C123")
        assert not reply.ok and "only labelbot admins" in reply.text, text
    assert service.campaign("demo").status == "active"
    with db.read() as s:
        assert [a.action for a in s.exec(select(AuditLog))] == ["campaign.create", "items.import"]


def test_resolve_quality_and_finetune_usage_for_admins(service, campaign, db, tmp_path):
    view = service.prepare_posts("demo", "slack", "C123", 1)[0]
    for user, choice in (("U1", "A"), ("U2", "B")):
        service.cast_vote(VoteCast(actor(user), view.post_id, choice))
    admin = actor("UADMIN")
    reply = handle(service, cfg(tmp_path), admin, f"resolve {view.external_id} 2", channel="C123")
    assert reply.ok, reply.text
    with db.read() as s:
        item = s.exec(select(Item).where(Item.id == view.item_id)).one()
    assert item.status == "resolved" and item.resolution["ranking"][0] == 1
    assert "Flagged annotators" in handle(service, cfg(tmp_path), admin, "stats", channel="C123").text
    assert "Flagged annotators" not in handle(service, cfg(tmp_path), actor("U1"), "stats", channel="C123").text
    reply = handle(service, cfg(tmp_path), admin, "quality", channel="C123")
    assert reply.ok and "Quality — demo" in reply.text and "Flagged annotators" in reply.text
    reply = handle(service, cfg(tmp_path), admin, "finetune teleport", channel="C123")
    assert not reply.ok and "reward|dpo|sft" in reply.text
    reply = handle(service, cfg(tmp_path), admin, "resolve nope 1", channel="C123")
    assert not reply.ok and "No item 'nope'" in reply.text
