"""Child process for the SIGKILL test of the alarm store (tests/rtls/test_service_store.py).

``python store_child.py DB N``: raises, acknowledges and commits alarm after alarm (with a ward
sign-out event and document each time) and prints each alarm id only once its commit returned.
"""

from __future__ import annotations

import asyncio
import sys

from rtls.alarm import AlarmBook, AlarmType, Condition
from rtls.service.store import AlarmStore


async def main(path: str, n: int) -> None:
    book = AlarmBook()
    async with await AlarmStore.open(path) as store:
        (await store.load()).restore(book)
        t = 1000.0 + book.next_id
        for i in range(n):
            t += 1.0
            trs = book.apply([Condition(AlarmType.SOS, f"W{i}", True, t)], t)
            aid = trs[0].alarm_id
            trs += book.acknowledge(aid, f"nurse{i % 3}", t + 0.5)
            event = {"actor": "nurse0", "action": "ward.sign_out", "subject": f"B{i}",
                     "detail": {"escort": f"M{i}", "alarm": aid}}  # fmt: skip
            await store.commit(trs, book=book, events=[event], ward={"ward": {"last": aid}},
                               now=t)  # fmt: skip
            print(aid, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
