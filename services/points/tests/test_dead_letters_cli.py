"""``loyalty-points dead-letters ...``: the work list from a shell, on the service's database."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty_shared import dead_letters
from loyalty_shared.testing import Infra


async def _cli(infra: Infra, db: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "POINTS_ENVIRONMENT": "test",
        "POINTS_DATABASE_URL": db,
        "POINTS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "POINTS_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "POINTS_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "points",
        "dead-letters",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_list_show_discard_and_a_second_action_refused(infra: Infra, points_db: str) -> None:
    engine = create_async_engine(points_db)
    event_id = f"e-{uuid.uuid4().hex}"
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "loyalty.feedback.events",
        1,
        int(uuid.uuid4().int % 10**12),
        0,
        0,
        b"m-cli",
        json.dumps({"id": event_id}).encode(),
        None,
        0,
        0,
        (),
    )
    async with engine.begin() as conn:
        await dead_letters.record_dead_letter(
            conn,
            group="points",
            record=record,
            event_id=event_id,
            event_type="loyalty.survey.completed.v1",
            error="KeyError: 'x'",
            error_type="KeyError",
            attempts=3,
        )
    await engine.dispose()

    code, out, _ = await _cli(infra, points_db, "list", "--json")
    assert code == 0
    (mine,) = [i for i in json.loads(out) if i["event_id"] == event_id]
    ref = mine["ref"]
    assert mine["error_type"] == "KeyError" and mine["status"] == "open"
    code, out, _ = await _cli(infra, points_db, "discard", ref, "--reason", "test data")
    assert (code, out.strip()) == (0, f"discarded {ref}")

    code, out, _ = await _cli(infra, points_db, "show", ref)
    shown = json.loads(out)
    assert shown["status"] == "discarded" and shown["payload"] == {"id": event_id}
    code, _, err = await _cli(infra, points_db, "replay", ref)
    assert code == 1 and "already discarded" in err
