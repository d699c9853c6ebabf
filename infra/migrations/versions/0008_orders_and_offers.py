"""orders with verification and two-party acceptance; offers and price plans

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import infra.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("listing_id", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("plan", sa.String(length=20), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period_unit", sa.String(length=10), nullable=True),
        sa.Column("period_length", sa.Integer(), nullable=True),
        sa.Column("renews", sa.Boolean(), nullable=False),
        sa.Column("training_price_per_million_tokens", sa.BigInteger(), nullable=False),
        sa.Column("uses", sa.JSON(), nullable=False),
        sa.Column("delivery_mode", sa.String(length=20), nullable=False),
        sa.Column("contract_parameters", sa.JSON(), nullable=False),
        sa.Column("buyer_organization_id", sa.String(length=40), nullable=True),
        sa.Column("approval", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_by_api_key_id", sa.String(length=40), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=False),
        sa.Column("created_at", infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["buyer_organization_id"],
            ["organizations.id"],
            name=op.f("fk_offers_buyer_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_offers_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_offers_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_offers_buyer_organization_id"), ["buyer_organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_offers_listing_id"), ["listing_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("offer_id", sa.String(length=40), nullable=False),
        sa.Column("listing_id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("buyer_organization_id", sa.String(length=40), nullable=False),
        sa.Column("seller_organization_id", sa.String(length=40), nullable=False),
        sa.Column("uses", sa.JSON(), nullable=False),
        sa.Column("verification", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=40), nullable=True),
        sa.Column("decided_at", infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("license_id", sa.String(length=40), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("filing_idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["buyer_organization_id"],
            ["organizations.id"],
            name=op.f("fk_orders_buyer_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["organizations.id"], name=op.f("fk_orders_decided_by_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["license_id"], ["licenses.id"], name=op.f("fk_orders_license_id_licenses")
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_orders_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(
            ["offer_id"], ["offers.id"], name=op.f("fk_orders_offer_id_offers")
        ),
        sa.ForeignKeyConstraint(
            ["seller_organization_id"],
            ["organizations.id"],
            name=op.f("fk_orders_seller_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_orders_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "buyer_organization_id",
            "idempotency_key",
            name=op.f("uq_orders_buyer_organization_id"),
        ),
        sa.UniqueConstraint("license_id", name=op.f("uq_orders_license_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_orders_buyer_organization_id"), ["buyer_organization_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_orders_offer_id"), ["offer_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_orders_seller_organization_id"),
            ["seller_organization_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)

    op.create_table(
        "contract_acceptances",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("party", sa.String(length=10), nullable=False),
        sa.Column("organization_id", sa.String(length=40), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=True),
        sa.Column("contract_sha256", sa.String(length=64), nullable=False),
        sa.Column("basis", sa.String(length=20), nullable=False),
        sa.Column("accepted_at", infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_contract_acceptances_contract_id_contracts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_contract_acceptances_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_acceptances")),
        sa.UniqueConstraint(
            "contract_id", "party", name=op.f("uq_contract_acceptances_contract_id")
        ),
    )
    with op.batch_alter_table("contract_acceptances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contract_acceptances_contract_id"), ["contract_id"], unique=False
        )

    # Contracts now exist before they are filed: generated on approval, accepted, then filed.
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("generated_at", infra.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("seller_api_key_id", sa.String(length=40), nullable=True))
        for column, kind in (
            ("license_id", sa.String(length=40)),
            ("filing_number", sa.String(length=32)),
            ("seller_accepted_at", infra.db.UTCDateTime(timezone=True)),
            ("buyer_accepted_at", infra.db.UTCDateTime(timezone=True)),
            ("buyer_api_key_id", sa.String(length=40)),
            ("filed_at", infra.db.UTCDateTime(timezone=True)),
        ):
            batch_op.alter_column(column, existing_type=kind, nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_contracts_order_id"), ["order_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_contracts_order_id_orders"), "orders", ["order_id"], ["id"]
        )
    # Contracts filed before orders were generated and filed in one moment.
    contracts = sa.table(
        "contracts",
        sa.column("generated_at", infra.db.UTCDateTime(timezone=True)),
        sa.column("filed_at", infra.db.UTCDateTime(timezone=True)),
    )
    op.get_bind().execute(contracts.update().values(generated_at=contracts.c.filed_at))
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.alter_column(
            "generated_at", existing_type=infra.db.UTCDateTime(timezone=True), nullable=False
        )

    # Licenses fix their plan's terms; earlier ones were one-off (or free) sales of a listing.
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offer_id", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("plan", sa.String(length=20), nullable=False, server_default="one_off")
        )
        batch_op.add_column(
            sa.Column(
                "training_price_per_million_tokens",
                sa.BigInteger(),
                nullable=False,
                server_default="0",
            )
        )
        batch_op.create_index(batch_op.f("ix_licenses_offer_id"), ["offer_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_licenses_offer_id_offers"), "offers", ["offer_id"], ["id"]
        )
    licenses = sa.table(
        "licenses",
        sa.column("listing_id", sa.String()),
        sa.column("price_amount", sa.BigInteger()),
        sa.column("plan", sa.String()),
        sa.column("training_price_per_million_tokens", sa.BigInteger()),
    )
    listings = sa.table(
        "listings",
        sa.column("id", sa.String()),
        sa.column("training_price_per_million_tokens", sa.BigInteger()),
    )
    bind = op.get_bind()
    bind.execute(licenses.update().where(licenses.c.price_amount == 0).values(plan="free"))
    bind.execute(
        licenses.update().values(
            training_price_per_million_tokens=sa.select(
                listings.c.training_price_per_million_tokens
            )
            .where(listings.c.id == licenses.c.listing_id)
            .scalar_subquery()
        )
    )
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.alter_column("plan", server_default=None)
        batch_op.alter_column("training_price_per_million_tokens", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("licenses", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_licenses_offer_id_offers"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_licenses_offer_id"))
        batch_op.drop_column("training_price_per_million_tokens")
        batch_op.drop_column("plan")
        batch_op.drop_column("offer_id")

    op.drop_table("contract_acceptances")
    # Contracts that were never filed have no place in the earlier schema.
    contracts = sa.table("contracts", sa.column("filed_at", infra.db.UTCDateTime(timezone=True)))
    op.get_bind().execute(contracts.delete().where(contracts.c.filed_at.is_(None)))
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_contracts_order_id_orders"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_contracts_order_id"), type_="unique")
        for column, kind in (
            ("license_id", sa.String(length=40)),
            ("filing_number", sa.String(length=32)),
            ("seller_accepted_at", infra.db.UTCDateTime(timezone=True)),
            ("buyer_accepted_at", infra.db.UTCDateTime(timezone=True)),
            ("buyer_api_key_id", sa.String(length=40)),
            ("filed_at", infra.db.UTCDateTime(timezone=True)),
        ):
            batch_op.alter_column(column, existing_type=kind, nullable=False)
        batch_op.drop_column("seller_api_key_id")
        batch_op.drop_column("generated_at")
        batch_op.drop_column("order_id")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        for index in ("status", "seller_organization_id", "offer_id", "buyer_organization_id"):
            batch_op.drop_index(batch_op.f(f"ix_orders_{index}"))
    op.drop_table("orders")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offers_listing_id"))
        batch_op.drop_index(batch_op.f("ix_offers_buyer_organization_id"))
    op.drop_table("offers")
