"""The tables every service's database holds for the event pipeline, in one place.

``outbox`` and ``inbox`` (publishing and consuming), ``dead_letters``,
``outbox_parked`` and ``pipeline_actions`` (what could not be delivered, and what ops
did about it), ``job_runs`` (each periodic job's last outcome) and ``erased_members``
(erasure tombstones). A service's ``db.py`` calls ``pipeline_tables(metadata)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import Connection

from loyalty_shared.db import make_metadata
from loyalty_shared.dead_letters import dead_letter_tables
from loyalty_shared.erasure import erased_members_table
from loyalty_shared.inbox import inbox_table
from loyalty_shared.outbox import outbox_table
from loyalty_shared.pipeline import job_runs_table


@dataclass(frozen=True)
class PipelineTables:
    outbox: Table
    inbox: Table
    dead_letters: Table
    outbox_parked: Table
    pipeline_actions: Table
    job_runs: Table
    erased_members: Table


def pipeline_tables(metadata: MetaData) -> PipelineTables:
    outbox = outbox_table(metadata)
    inbox = inbox_table(metadata)
    dead, parked, actions = dead_letter_tables(metadata)
    return PipelineTables(
        outbox,
        inbox,
        dead,
        parked,
        actions,
        job_runs_table(metadata),
        erased_members_table(metadata),
    )


# -- migrations ------------------------------------------------------------------------------
# The tables added by the "trust at the edges" migration of each service (points 0008,
# segmentation 0006, feedback 0005). Later changes to these tables get migrations of
# their own; this list stays as it was.
RESILIENCE_TABLES_V1 = (
    "dead_letters",
    "outbox_parked",
    "pipeline_actions",
    "job_runs",
    "erased_members",
)


def create_resilience_tables_v1(bind: Connection) -> None:
    metadata = make_metadata()
    pipeline_tables(metadata)
    metadata.create_all(bind, tables=[metadata.tables[n] for n in RESILIENCE_TABLES_V1])


def drop_resilience_tables_v1(bind: Connection) -> None:
    metadata = make_metadata()
    pipeline_tables(metadata)
    metadata.drop_all(bind, tables=[metadata.tables[n] for n in RESILIENCE_TABLES_V1])


# The outbox's ix_outbox_sent_at over sent rows only (every service's outbox, issue #18):
# its users (the relay's prune and its replay after a broker lost its data) ask for
# sent_at IS NOT NULL, and unsent rows are found by ix_outbox_unsent; the full index had an
# entry for every unsent row too, a NULL nobody looks up: one index insert of the four per
# outbox row, ~11% of the insert's CPU in the recompute's three million score change events.
def outbox_sent_at_index_partial(bind: Connection) -> None:
    bind.execute(text("DROP INDEX ix_outbox_sent_at"))
    bind.execute(
        text("CREATE INDEX ix_outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL")
    )


def outbox_sent_at_index_full(bind: Connection) -> None:
    bind.execute(text("DROP INDEX ix_outbox_sent_at"))
    bind.execute(text("CREATE INDEX ix_outbox_sent_at ON outbox (sent_at)"))
