"""`/label` slash commands as admin and non-admin, answered through the response_url."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from bot.adapters.slack.render import check_blocks
from storage.models import AuditLog, Campaign, Role
from tests.slack.payloads import block_actions, slash_command


async def run(env, text: str, user: str = "U1", name: str = "r") -> dict:
    before = len(env.fake.responses)
    status, body = await env.command(slash_command(text, user=user, response_url=env.fake.response_url(name)))
    assert status == 200 and body == ""  # acked at once, answered later through the response_url
    await env.settle()
    new = env.fake.responses[before:]
    assert new, f"no reply to /label {text}"
    for _, reply in new:
        assert not check_blocks(reply.get("blocks", []))
    return new[0][1]


def audit(env, action: str) -> list[AuditLog]:
    with env.db.read() as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == action)))


async def test_everyone_commands(slack_env):
    env = slack_env
    reply = await run(env, "help")
    assert reply["response_type"] == "ephemeral" and "`next`" in reply["text"] and "Admin commands" not in reply["text"]
    assert "Admin commands" in (await run(env, "help", user="UADMIN"))["text"]
    assert "Guidelines for demo" in (await run(env, "guidelines"))["text"]
    assert "0/6 items complete" in (await run(env, "stats"))["text"]
    # the chart goes to the person's DM as a PNG file (Slack has no ephemeral files)
    assert env.fake.ok_calls("conversations.open")[-1]["users"] == "U1"
    done = env.fake.ok_calls("files.completeUploadExternal")[-1]
    assert done["channel_id"] == "DU1" and "stats-demo" in str(done["files"])
    assert any(data.startswith(b"\x89PNG") for data in env.fake.uploads.values())
    assert "No votes in *demo* yet" in (await run(env, "leaderboard"))["text"]

    before = len(env.fake.responses)
    await run(env, "next", user="U2", name="next")
    replies = [r for _, r in env.fake.responses[before:]]
    task = replies[1]
    ids = [el["action_id"] for b in task["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert any(i.startswith("lbl:vote:") and i.endswith(":A") for i in ids)
    assert task["response_type"] == "ephemeral"


async def test_admin_commands_refused_politely_for_others(slack_env):
    env = slack_env
    with env.db.read() as s:
        audits_before = len(list(s.exec(select(AuditLog))))
    for text in ("post 1", "export votes", "pause", "resume", "admin add <@U9|nine>"):
        reply = await run(env, text, user="U1")
        assert reply["response_type"] == "ephemeral"
        assert "only labelbot admins" in reply["text"]
    assert not env.fake.ok_calls("chat.postMessage")
    assert env.service.campaign("demo").status == "active"
    with env.db.read() as s:
        assert not list(s.exec(select(Role)))
    with env.db.read() as s:
        assert len(list(s.exec(select(AuditLog)))) == audits_before  # a refusal changes nothing


async def test_admin_post_pause_resume_export_and_grant(slack_env, tmp_path: Path):
    env = slack_env
    reply = await run(env, "post 2", user="UADMIN")
    assert "Posting up to 2" in reply["text"]
    posted = env.fake.ok_calls("chat.postMessage")
    assert len(posted) == 2 and {m["channel"] for m in posted} == {"C123"}
    assert "Posted 2 item(s)" in env.fake.responses[-1][1]["text"]
    assert audit(env, "items.post")[0].actor == "slack:UADMIN"

    reply = await run(env, "pause", user="UADMIN")
    assert reply["response_type"] == "in_channel" and "paused" in reply["text"]
    with env.db.read() as s:
        assert s.exec(select(Campaign)).one().status == "paused"
    assert audit(env, "campaign.pause")
    # votes are refused politely while paused, and nothing is stored
    ts = posted[0]
    post_id = next(el["action_id"] for b in ts["blocks"] if b["type"] == "actions"
                   for el in b["elements"]).split(":")[2]
    await env.interact(block_actions(f"lbl:vote:{post_id}:A", user="U1"))
    await env.settle()
    assert "paused" in env.fake.ok_calls("chat.postEphemeral")[-1]["text"]
    await run(env, "resume", user="UADMIN")
    assert audit(env, "campaign.resume")

    reply = await run(env, "export votes", user="UADMIN")
    assert "Exported" in reply["text"] and audit(env, "export.run")
    assert list((Path(env.settings.labelbot_export_dir) / "demo" / "votes").rglob("manifest.json"))

    reply = await run(env, "admin add <@U9|nine>", user="UADMIN")
    assert "slack:U9 is now an admin" in reply["text"] and audit(env, "admin.add")
    assert "Posting up to 1" in (await run(env, "post 1", user="U9"))["text"]
