"""The WebSocket side of tests/image/run.sh (run with /usr/bin/python3, which has
Debian's python3-websockets).

  ws_client.py echo PORT           a text and a binary message come back unchanged
  ws_client.py drain PORT CMD...   the same, then CMD (`podman stop`: the container's
                                   SIGTERM) while the connection is open: the server
                                   must close it with 1001 "shutdown" (CONTRACT 9)
"""

import asyncio
import sys
import time

import websockets

MESSAGES = ("hello from tests/image", b"\x00\x01 binary \xff")


async def check_echo(ws):
    for message in MESSAGES:
        await ws.send(message)
        reply = await asyncio.wait_for(ws.recv(), 5)
        if reply != message:
            sys.exit(f"echo: sent {message!r}, received {reply!r}")


async def main(mode, port, command):
    url = f"ws://127.0.0.1:{port}/ws"
    # No client pings: the only frames are the test's own.
    async with websockets.connect(url, open_timeout=5, close_timeout=5,
                                  ping_interval=None) as ws:
        await check_echo(ws)
        if mode == "echo":
            print("echo: a text and a binary message came back unchanged")
            return
        started = time.monotonic()
        # Run without blocking the loop: the client must answer the server's close
        # while CMD (which waits for the container to exit) is still running.
        stop = await asyncio.create_subprocess_exec(*command,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        # drain_spread (2 s) paces the closes; drain_timeout (8 s) bounds them.
        try:
            await asyncio.wait_for(ws.wait_closed(), 15)
        except asyncio.TimeoutError:
            sys.exit("drain: the connection was still open 15 s after SIGTERM")
        took = time.monotonic() - started
        # Its stderr only when it fails: podman without systemd always complains that it
        # cannot remove the healthcheck timer.
        _, errors = await asyncio.wait_for(stop.communicate(), 30)
        if stop.returncode != 0:
            sys.exit(f"drain: {' '.join(command)} failed: {errors.decode(errors='replace')}")
        if ws.close_code != 1001 or ws.close_reason != "shutdown":
            sys.exit(f"drain: closed with {ws.close_code} {ws.close_reason!r}, "
                     "expected 1001 'shutdown'")
        print(f"drain: the open connection was closed with 1001 'shutdown' "
              f"{took:.1f} s after SIGTERM")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("echo", "drain") \
            or (sys.argv[1] == "drain" and len(sys.argv) < 4):
        sys.exit(__doc__)
    asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]), 60))
