"""aiortc as a WHIP client (RFC 9725), for tests/whip.rs.

Usage: aiortc_whip.py BASE_URL TOKEN ROOM

Publishes aiortc's generated video (VP8 through PyAV/libvpx) and a data
channel "chat" to BASE_URL/whip/ROOM with a bearer token: one POST with
the complete offer (aiortc gathers before it returns the offer: no
trickle), the answer from the 201; sends three texts once the channel is
open and waits for them to come back; then DELETEs the session. HTTP
comes from the standard library (http.client, in a thread). Prints one
JSON line per step on stdout; exits non-zero on any failure.
"""

import asyncio
import http.client
import json
import sys
import urllib.parse

from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack


def request(base, method, path, headers, body):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def say(**kw):
    print(json.dumps(kw), flush=True)


async def main():
    base, token, room = sys.argv[1], sys.argv[2], sys.argv[3]
    auth = {"Authorization": f"Bearer {token}"}
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())
    chat = pc.createDataChannel("chat")
    opened = asyncio.Event()
    echoed = asyncio.Event()
    echoes = []

    @chat.on("open")
    def on_open():
        opened.set()

    @chat.on("message")
    def on_message(m):
        echoes.append(m)
        if len(echoes) == 3:
            echoed.set()

    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.to_thread(
        request,
        base,
        "POST",
        f"/whip/{room}",
        {**auth, "Content-Type": "application/sdp"},
        pc.localDescription.sdp.encode(),
    )
    location = headers.get("location")
    say(step="post", status=status, location=location, etag=headers.get("etag"),
        content_type=headers.get("content-type"))
    if status != 201 or not location:
        say(step="error", body=body.decode(errors="replace"))
        sys.exit(1)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))
    await asyncio.wait_for(opened.wait(), 20)
    say(step="open")
    for i in range(3):
        chat.send(f"hello {i}")
    await asyncio.wait_for(echoed.wait(), 20)
    say(step="echoed", messages=echoes)
    # Let video flow for a while.
    await asyncio.sleep(2)
    status, _, _ = await asyncio.to_thread(request, base, "DELETE", location, auth, None)
    say(step="delete", status=status)
    await pc.close()


asyncio.run(main())
