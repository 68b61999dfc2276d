"""quality: item resolution and reward-model item scores

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-24 05:20:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolution', sa.JSON(none_as_null=True), nullable=True))
    op.create_table('itemscore',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('margin', sa.Float(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['item.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'model_version')
    )
    with op.batch_alter_table('itemscore', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_itemscore_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('itemscore', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_itemscore_item_id'))
    op.drop_table('itemscore')
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_column('resolution')
