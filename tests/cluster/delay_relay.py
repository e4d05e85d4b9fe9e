"""A TCP relay that holds every chunk it forwards for a set time, both ways: the added delay
of a slow link, on a kernel without `tc netem` (this project's CI machines answer
"Specified qdisc kind is unknown" to it).

    python delay_relay.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_FILE

DELAY_FILE holds the delay in seconds (a missing or empty file means none); it is reread
for every chunk, so a test changes the delay while connections are open. Order within a
connection is kept: a chunk leaves no earlier than the one before it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def delay(path: Path) -> float:
    try:
        return max(0.0, float(path.read_text().strip() or 0))
    except (OSError, ValueError):
        return 0.0


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_file: Path) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay(delay_file), data))
    except ConnectionError:
        pass
    queue.put_nowait((loop.time() + delay(delay_file), None))
    try:
        await sender
    except ConnectionError:
        pass


async def main(listen: str, target: str, delay_file: Path) -> None:
    target_host, target_port = target.rsplit(":", 1)

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay_file), pump(server_reader, client_writer, delay_file)
        )

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(relay, host, int(port))
    print(f"relaying {listen} -> {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
