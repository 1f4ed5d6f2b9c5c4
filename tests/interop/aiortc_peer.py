"""An aiortc peer for rtclab's interop tests (tests/interop_aiortc.rs).

Signaling is JSON lines on stdin/stdout (tests/interop/harness.rs has the
protocol); logs go to stderr. The peer echoes every data-channel message,
creates the configured channels when it offers, sends the IVF clip's frames
as they are (aiortc packs pre-encoded packets without re-encoding), and
reports the SHA-256 of every encoded frame its receiver assembles (hooked in
front of the decoder, which still decodes it).
"""

import asyncio
import fractions
import hashlib
import json
import logging
import struct
import sys
import threading
import time

import av
import aiortc.rtcrtpreceiver as rtcrtpreceiver
from aiortc import (
    RTCRtpSender,
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

_out_lock = threading.Lock()


def out(msg):
    with _out_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def log(*args):
    print("aiortc_peer:", *args, file=sys.stderr, flush=True)


# Report each encoded frame the receiver assembled, then decode it as usual.
_get_decoder = rtcrtpreceiver.get_decoder


def canonical(codec, data):
    """What is hashed (tests/interop/harness.rs `canonical`): an H.264
    access unit as its NAL units without AUDs, each after 00 00 00 01."""
    if codec != "H264":
        return data
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    out = bytearray()
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        nal = data[s + 3:end].rstrip(b"\x00")
        if not nal or nal[0] & 0x1F == 9:
            continue
        out += b"\x00\x00\x00\x01" + nal
    return bytes(out)


def starts_frame(codec, payload):
    """Whether an RTP payload is the first packet of a frame: VP8's S bit
    with partition 0 (RFC 7741 §4.2), H.264 anything but an FU-A without
    its start bit (RFC 6184 §5.8)."""
    if not payload:
        return False
    if codec == "VP8":
        return payload[0] & 0x10 != 0 and payload[0] & 0x0F == 0
    if codec == "H264" and payload[0] & 0x1F == 28:
        return len(payload) > 1 and payload[1] & 0x80 != 0
    return True


def _hooked_get_decoder(codec):
    decoder = _get_decoder(codec)
    decode = decoder.decode
    decoded = [0]

    def hooked(encoded_frame):
        data = canonical(codec.name, bytes(encoded_frame.data))
        msg = {"type": "frame", "codec": codec.name, "len": len(data),
               "sha256": hashlib.sha256(data).hexdigest()}
        first = _LoggedJitterBuffer.first_payload
        if first is not None:
            # The first frame: aiortc's jitter buffer starts at whatever
            # packet comes first and assembles from there without looking
            # at the payload descriptor (jitterbuffer.py), so a lost first
            # packet makes a first frame without its start. Said, not
            # hidden: the harness counts such a frame as lost.
            _LoggedJitterBuffer.first_payload = None
            if not starts_frame(codec.name, first):
                log("the first packet aiortc got does not start a frame:",
                    first[:4].hex())
                msg["partial"] = True
        out(msg)
        frames = decode(encoded_frame)
        decoded[0] += len(frames)
        if decoded[0] % 20 == 0 and frames:
            log("decoded", decoded[0], "frames")
        return frames

    decoder.decode = hooked
    return decoder


rtcrtpreceiver.get_decoder = _hooked_get_decoder


class _LoggedJitterBuffer(rtcrtpreceiver.JitterBuffer):
    """aiortc's jitter buffer, logging to stderr the first video packets it
    is given (sequence number, timestamp, marker, payload size and first
    bytes) and, on `stuck()`, a hole it waits on: what a failed case needs
    to tell a packet lost on the way from a frame sent wrong."""

    video = []
    # The payload of the first video packet, until the first frame is out.
    first_payload = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._is_video:
            _LoggedJitterBuffer.video.append(self)

    def add(self, packet):
        seen = getattr(self, "_seen", 0)
        if self._is_video and seen == 0:
            _LoggedJitterBuffer.first_payload = bytes(packet.payload)
        if self._is_video and seen < 12:
            self._seen = seen + 1
            log("rtp in: seq", packet.sequence_number, "ts", packet.timestamp,
                "m", int(packet.marker), "pt", packet.payload_type,
                "len", len(packet.payload), "head", packet.payload[:4].hex())
        return super().add(packet)

    def stuck(self):
        """The sequence number of the first hole with packets after it."""
        if self._origin is None:
            return None
        held = [i for i in range(self.capacity)
                if self._packets[(self._origin + i) % self.capacity] is not None]
        if not held or held[0] == 0 and len(held) == held[-1] + 1:
            return None
        hole = next(i for i in range(self.capacity)
                    if self._packets[(self._origin + i) % self.capacity] is None)
        return ((self._origin + hole) & 0xFFFF, len(held))


rtcrtpreceiver.JitterBuffer = _LoggedJitterBuffer

_nack_add = rtcrtpreceiver.NackGenerator.add


def _logged_nack_add(self, packet):
    missed = _nack_add(self, packet)
    if missed:
        log("nack sent for", sorted(self.missing))
    return missed


rtcrtpreceiver.NackGenerator.add = _logged_nack_add

_unwrap_rtx = rtcrtpreceiver.unwrap_rtx


def _logged_unwrap_rtx(packet, payload_type, ssrc):
    original = _unwrap_rtx(packet, payload_type, ssrc)
    log("rtx in: seq", original.sequence_number)
    return original


rtcrtpreceiver.unwrap_rtx = _logged_unwrap_rtx
rtcrtpreceiver.JitterBuffer = _LoggedJitterBuffer


def read_ivf(path):
    """The frames of an IVF file: (timestamp, data), and its time base."""
    with open(path, "rb") as f:
        data = f.read()
    header_len = struct.unpack_from("<H", data, 6)[0]
    den, num = struct.unpack_from("<II", data, 16)
    frames = []
    offset = header_len
    while offset + 12 <= len(data):
        size, ts = struct.unpack_from("<IQ", data, offset)
        offset += 12
        frames.append((ts, data[offset:offset + size]))
        offset += size
    return frames, fractions.Fraction(num, den)


class ClipTrack(MediaStreamTrack):
    """Pre-encoded frames from an IVF file, at their own pace, once."""

    kind = "video"

    def __init__(self, path):
        super().__init__()
        self.frames, self.time_base = read_ivf(path)
        self.next = 0
        self.start = None

    async def recv(self):
        if self.next >= len(self.frames):
            self.stop()
            raise MediaStreamError
        ts, data = self.frames[self.next]
        if self.start is None:
            self.start = time.monotonic() - float(ts * self.time_base)
        delay = self.start + float(ts * self.time_base) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next += 1
        packet = av.Packet(data)
        packet.pts = ts
        packet.time_base = self.time_base
        return packet


async def main():
    loop = asyncio.get_running_loop()
    inbox = asyncio.Queue()

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(inbox.put_nowait, line)
        loop.call_soon_threadsafe(inbox.put_nowait, None)

    threading.Thread(target=reader, daemon=True).start()

    line = await inbox.get()
    config = json.loads(line)
    servers = []
    policy = RTCIceTransportPolicy.ALL
    if config.get("turn"):
        t = config["turn"]
        servers.append(RTCIceServer(urls=t["url"], username=t["username"],
                                    credential=t["credential"]))
        policy = RTCIceTransportPolicy.RELAY
    pc = RTCPeerConnection(RTCConfiguration(
        iceServers=servers, iceTransportPolicy=policy,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    done = asyncio.Event()
    sinks = []

    async def watch_holes():
        while True:
            await asyncio.sleep(1)
            for jb in _LoggedJitterBuffer.video:
                hole = jb.stuck()
                if hole:
                    log("video waits on seq", hole[0], "with", hole[1], "packets held")

    sinks.append(asyncio.ensure_future(watch_holes()))

    def watch_channel(channel):
        def report():
            out({"type": "channel", "label": channel.label,
                 "ordered": channel.ordered,
                 "maxRetransmits": channel.maxRetransmits,
                 "maxPacketLifeTime": channel.maxPacketLifeTime})

        @channel.on("message")
        def on_message(message):
            if channel.label not in ("bulk", "ordered"):
                log("echo on", channel.label, len(message), "bytes")
            channel.send(message)

        if channel.readyState == "open":
            report()
        else:
            channel.on("open", report)

    @pc.on("datachannel")
    def on_datachannel(channel):
        watch_channel(channel)

    @pc.on("connectionstatechange")
    async def on_state():
        out({"type": "state", "state": pc.connectionState})
        log("connection", pc.connectionState)
        if pc.connectionState == "failed":
            out({"type": "error", "message": "connection failed"})

    @pc.on("track")
    def on_track(track):
        log("track", track.kind)

        async def drain():
            try:
                while True:
                    await track.recv()
            except MediaStreamError:
                pass

        sinks.append(asyncio.ensure_future(drain()))

    video = config.get("video")
    sends = config.get("send_video", True)

    def video_transceiver():
        if sends:
            t = pc.addTransceiver(ClipTrack(config["clip"]), direction="sendrecv")
        else:
            t = pc.addTransceiver("video", direction="recvonly")
        want_codec(t)

    def want_codec(transceiver):
        if video:
            caps = [c for c in
                    RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() in ("video/" + video.lower(), "video/rtx")]
            transceiver.setCodecPreferences(caps)

    if config["role"] == "offer":
        # The transceiver first: with max-bundle, aiortc 1.16 stops the
        # shared transport on the answer when the SCTP transport was made
        # before any transceiver (it takes it for an unbundled one).
        if video:
            video_transceiver()
        for c in config["channels"]:
            ch = pc.createDataChannel(
                c["label"], ordered=c["ordered"],
                maxRetransmits=c["maxRetransmits"],
                maxPacketLifeTime=c["maxPacketLifeTime"])
            watch_channel(ch)
        await pc.setLocalDescription(await pc.createOffer())
        out({"type": "offer", "sdp": pc.localDescription.sdp})

    elif video:
        # aiortc fixes an answer's codecs when the offer is set, from the
        # preferences of a transceiver that exists then: make it now (the
        # offer's video m-line takes it).
        video_transceiver()

    while not done.is_set():
        line = await inbox.get()
        if line is None:
            break
        msg = json.loads(line)
        kind = msg.get("type")
        if kind == "offer":
            await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            out({"type": "answer", "sdp": pc.localDescription.sdp})
        elif kind == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        elif kind == "candidate":
            text = msg.get("candidate") or ""
            if text:
                cand = candidate_from_sdp(text.split(":", 1)[1])
                cand.sdpMid = msg.get("sdpMid")
                cand.sdpMLineIndex = msg.get("sdpMLineIndex")
                await pc.addIceCandidate(cand)
            else:
                await pc.addIceCandidate(None)
        elif kind == "bye":
            break
    for s in sinks:
        s.cancel()
    await pc.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if "-v" in sys.argv:
        logging.getLogger("aioice").setLevel(logging.DEBUG)

    asyncio.run(main())
