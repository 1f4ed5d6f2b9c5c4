"""A GStreamer webrtcbin peer for rtclab's interop tests
(tests/interop_gstreamer.rs), driven through python3-gi.

Signaling is JSON lines on stdin/stdout (tests/interop/harness.rs has the
protocol); logs go to stderr. The peer echoes every data-channel message,
creates the configured channels when it offers, sends the IVF clip's frames
unchanged (appsrc ! rtpvp8pay, or rtph264pay for H.264), and reports the
SHA-256 of every frame the depayloader hands its appsink (H.264 access
units in the harness's canonical form). ICE uses 127.0.0.1 only (libnice's
add-local-ip-address).
"""

import hashlib
import json
import struct
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

_out_lock = threading.Lock()


def out(msg):
    with _out_lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def log(*args):
    print("gst_peer:", *args, file=sys.stderr, flush=True)


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
    result = b""
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(data)
        nal = data[s + 3:end].rstrip(b"\x00")
        if not nal or nal[0] & 0x1F == 9:
            continue
        result += b"\x00\x00\x00\x01" + nal
    return result


# Per codec: appsrc caps, payloader, payload type, RTP caps, depayloader
# (H.264: pre-encoded access units as they are, packetization-mode 1).
CODECS = {
    "VP8": ("video/x-vp8,width=%d,height=%d,framerate=30/1", "rtpvp8pay", 96,
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            "rtpvp8depay"),
    "H264": ("video/x-h264,stream-format=byte-stream,alignment=au,"
             "width=%d,height=%d,framerate=30/1", "rtph264pay", 102,
             "application/x-rtp,media=video,encoding-name=H264,payload=102,"
             "clock-rate=90000,packetization-mode=(string)1,"
             "profile-level-id=(string)42e01f",
             "rtph264depay"),
}


def read_ivf(path):
    with open(path, "rb") as f:
        data = f.read()
    header_len = struct.unpack_from("<H", data, 6)[0]
    width, height = struct.unpack_from("<HH", data, 12)
    den, num = struct.unpack_from("<II", data, 16)
    frames = []
    offset = header_len
    while offset + 12 <= len(data):
        size, ts = struct.unpack_from("<IQ", data, offset)
        offset += 12
        frames.append((ts * num / den, data[offset:offset + size]))
        offset += size
    return frames, width, height


class Peer:
    def __init__(self, config, loop):
        self.config = config
        self.loop = loop
        self.pipe = Gst.Pipeline.new("peer")
        w = Gst.ElementFactory.make("webrtcbin", "w")
        self.w = w
        w.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        turn = config.get("turn")
        if turn:
            w.set_property("turn-server", "turn://%s:%s@%s:%d" % (
                turn["username"], turn["credential"], turn["host"], turn["port"]))
            w.set_property("ice-transport-policy",
                           GstWebRTC.WebRTCICETransportPolicy.RELAY)
        self.pipe.add(w)
        # Kept for the peer's life: PyGObject takes the agent's floating
        # reference, and dropping the wrapper would free it under webrtcbin.
        self.ice = w.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        w.connect("on-ice-candidate", self.on_ice_candidate)
        w.connect("on-data-channel", lambda _w, ch: self.watch_channel(ch))
        w.connect("pad-added", self.on_pad_added)
        # NACK and RTX both ways (webrtcbin has them off by default): a
        # packet lost on a busy loopback is then resent, not a stalled video.
        w.connect("on-new-transceiver", lambda _w, t: t.set_property("do-nack", True))
        w.connect("notify::connection-state", self.on_connection_state)
        w.connect("notify::ice-gathering-state", self.on_gathering_state)
        self.channels = []
        self.src = None
        self.sending = False
        if config.get("video"):
            if config["video"] not in CODECS:
                raise SystemExit("codec %s not wired in this peer" % config["video"])
            src_caps, pay_name, pt, rtp_caps, _ = CODECS[config["video"]]
            self.frames, width, height = read_ivf(config["clip"])
            src = Gst.ElementFactory.make("appsrc")
            src.set_property("is-live", True)
            src.set_property("format", Gst.Format.TIME)
            src.set_property("do-timestamp", True)
            src.set_property("caps", Gst.Caps.from_string(src_caps % (width, height)))
            pay = Gst.ElementFactory.make(pay_name)
            pay.set_property("pt", pt)
            if config.get("mtu"):
                pay.set_property("mtu", config["mtu"])
            caps = Gst.ElementFactory.make("capsfilter")
            # (Not the fmtp: rtph264pay derives profile-level-id from the
            # clip's SPS; the offer's comes from the codec preferences.)
            caps.set_property("caps", Gst.Caps.from_string(
                ",".join(rtp_caps.split(",")[:5])))
            chain = [src, pay, caps]
            if config["video"] == "H264":
                # Fills in the profile and level rtph264pay checks against
                # the negotiated profile-level-id; the bytes pass unchanged.
                parse = Gst.ElementFactory.make("h264parse")
                bytestream = Gst.ElementFactory.make("capsfilter")
                bytestream.set_property("caps", Gst.Caps.from_string(
                    "video/x-h264,stream-format=byte-stream,alignment=au"))
                chain[1:1] = [parse, bytestream]
            for e in chain:
                self.pipe.add(e)
            for a, b in zip(chain, chain[1:]):
                a.link(b)
            sink = w.request_pad_simple("sink_%u")
            # The offer's codec from the start: rtph264pay sets its caps
            # only from a first frame, which waits for the connection.
            sink.get_property("transceiver").set_property(
                "codec-preferences", Gst.Caps.from_string(rtp_caps))
            caps.get_static_pad("src").link(sink)
            self.src = src
        if config["role"] == "offer":
            w.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.pipe.set_state(Gst.State.PLAYING)

    # ---- signaling ---------------------------------------------------

    def on_negotiation_needed(self, w):
        if getattr(self, "offered", False):
            return
        self.offered = True
        for c in self.config["channels"]:
            opts = Gst.Structure.new_empty("options")
            opts.set_value("ordered", c["ordered"])
            if c["maxRetransmits"] is not None:
                opts.set_value("max-retransmits", c["maxRetransmits"])
            if c["maxPacketLifeTime"] is not None:
                opts.set_value("max-packet-lifetime", c["maxPacketLifeTime"])
            ch = w.emit("create-data-channel", c["label"], opts)
            if ch is None:
                out({"type": "error", "message": "create-data-channel %s failed" % c["label"]})
            else:
                self.watch_channel(ch)
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        w.emit("create-offer", None, promise)

    def on_offer_created(self, promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.w.emit("set-local-description", offer, Gst.Promise.new())
        out({"type": "offer", "sdp": offer.sdp.as_text()})

    def set_remote(self, kind, text):
        res, msg = GstSdp.SDPMessage.new_from_text(text)
        if res != GstSdp.SDPResult.OK:
            out({"type": "error", "message": "cannot parse the %s" % kind})
            return
        typ = GstWebRTC.WebRTCSDPType.OFFER if kind == "offer" else GstWebRTC.WebRTCSDPType.ANSWER
        desc = GstWebRTC.WebRTCSessionDescription.new(typ, msg)
        if kind == "offer":
            promise = Gst.Promise.new_with_change_func(self.on_remote_offer_set, None)
        else:
            promise = Gst.Promise.new()
        self.w.emit("set-remote-description", desc, promise)

    def on_remote_offer_set(self, promise, _):
        promise = Gst.Promise.new_with_change_func(self.on_answer_created, None)
        self.w.emit("create-answer", None, promise)

    def on_answer_created(self, promise, _):
        reply = promise.get_reply()
        answer = reply.get_value("answer")
        if answer is None:
            out({"type": "error", "message": "create-answer failed: %s" % reply})
            return
        self.w.emit("set-local-description", answer, Gst.Promise.new())
        out({"type": "answer", "sdp": answer.sdp.as_text()})

    def on_ice_candidate(self, _w, mline, candidate):
        out({"type": "candidate", "candidate": candidate, "sdpMLineIndex": mline})

    def on_gathering_state(self, w, _):
        state = w.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            out({"type": "candidate", "candidate": "", "sdpMLineIndex": 0})

    def on_connection_state(self, w, _):
        state = w.get_property("connection-state")
        name = state.value_nick
        out({"type": "state", "state": name})
        log("connection", name)
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and self.src and not self.sending:
            self.sending = True
            self.next = 0
            self.start = time.monotonic()
            GLib.timeout_add(5, self.pump)
        if state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            out({"type": "error", "message": "connection failed"})

    def handle(self, msg):
        kind = msg.get("type")
        if kind in ("offer", "answer"):
            self.set_remote(kind, msg["sdp"])
        elif kind == "candidate":
            text = msg.get("candidate") or ""
            if text:
                self.w.emit("add-ice-candidate", msg.get("sdpMLineIndex") or 0, text)
        elif kind == "bye":
            self.pipe.set_state(Gst.State.NULL)
            self.loop.quit()
        return False

    # ---- media -------------------------------------------------------

    def pump(self):
        now = time.monotonic() - self.start
        while self.next < len(self.frames) and self.frames[self.next][0] <= now:
            data = self.frames[self.next][1]
            self.src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
            self.next += 1
        if self.next >= len(self.frames):
            log("sent", self.next, "frames")
            return False
        return True

    def on_pad_added(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps()
        log("incoming stream", caps)
        name = caps.get_structure(0).get_string("encoding-name") if caps else None
        self.codec_in = "H264" if name == "H264" else "VP8"
        depay = Gst.ElementFactory.make(CODECS[self.codec_in][4])
        # H.264: whole access units in byte-stream form, as rtclab sends.
        filt = Gst.ElementFactory.make("capsfilter")
        if self.codec_in == "H264":
            filt.set_property("caps", Gst.Caps.from_string(
                "video/x-h264,stream-format=byte-stream,alignment=au"))
        sink = Gst.ElementFactory.make("appsink")
        sink.set_property("emit-signals", True)
        sink.set_property("sync", False)
        sink.connect("new-sample", self.on_sample)
        for e in (depay, filt, sink):
            self.pipe.add(e)
            e.sync_state_with_parent()
        depay.link(filt)
        filt.link(sink)
        pad.link(depay.get_static_pad("sink"))

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            data = bytes(info.data)
            buf.unmap(info)
            codec = getattr(self, "codec_in", "VP8")
            out({"type": "frame", "codec": codec, "len": len(data),
                 "sha256": hashlib.sha256(canonical(codec, data)).hexdigest()})
        return Gst.FlowReturn.OK

    # ---- data channels -----------------------------------------------

    def watch_channel(self, ch):
        self.channels.append(ch)

        def report(*_):
            mr = ch.get_property("max-retransmits")
            ml = ch.get_property("max-packet-lifetime")
            out({"type": "channel", "label": ch.get_property("label"),
                 "ordered": ch.get_property("ordered"),
                 "maxRetransmits": None if mr < 0 else mr,
                 "maxPacketLifeTime": None if ml < 0 else ml})

        ch.connect("on-open", report)
        ch.connect("on-message-string", lambda c, s: c.emit("send-string", s))
        ch.connect("on-message-data", lambda c, b: c.emit("send-data", b))
        ch.connect("on-error", lambda c, e: log("channel error", e))
        if ch.get_property("ready-state") == GstWebRTC.WebRTCDataChannelState.OPEN:
            report()


def main():
    Gst.init(None)
    loop = GLib.MainLoop()
    config = json.loads(sys.stdin.readline())
    peer = Peer(config, loop)

    def reader():
        for line in sys.stdin:
            GLib.idle_add(peer.handle, json.loads(line))
        GLib.idle_add(peer.handle, {"type": "bye"})

    threading.Thread(target=reader, daemon=True).start()
    loop.run()


if __name__ == "__main__":
    main()
