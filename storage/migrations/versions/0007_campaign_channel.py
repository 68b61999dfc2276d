"""campaign channels as rows (campaign_channel), replacing campaign.slack_channel / discord_channel

Existing campaigns keep their channels: each non-empty column value becomes a row.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02 19:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign_channel',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('platform', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('workspace', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'platform', 'workspace', 'channel', name='uq_campaign_channel')
    )
    with op.batch_alter_table('campaign_channel', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_channel_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index('ix_campaign_channel_lookup', ['platform', 'channel'], unique=False)
    for platform in ('slack', 'discord'):
        op.execute(
            "INSERT INTO campaign_channel (campaign_id, platform, workspace, channel, created_at) "
            f"SELECT id, '{platform}', '', {platform}_channel, created_at FROM campaign "
            f"WHERE {platform}_channel IS NOT NULL AND {platform}_channel <> ''"
        )
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.drop_column('slack_channel')
        batch_op.drop_column('discord_channel')


def downgrade() -> None:
    with op.batch_alter_table('campaign', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slack_channel', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('discord_channel', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    for platform in ('slack', 'discord'):
        op.execute(
            f"UPDATE campaign SET {platform}_channel = (SELECT MIN(cc.channel) FROM campaign_channel cc "
            f"WHERE cc.campaign_id = campaign.id AND cc.platform = '{platform}')"
        )
    with op.batch_alter_table('campaign_channel', schema=None) as batch_op:
        batch_op.drop_index('ix_campaign_channel_lookup')
        batch_op.drop_index(batch_op.f('ix_campaign_channel_campaign_id'))
    op.drop_table('campaign_channel')
