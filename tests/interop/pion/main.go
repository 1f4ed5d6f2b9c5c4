// A pion v3 peer for rtclab's interop tests (tests/interop_pion.rs), built
// in GOPATH mode against Debian's golang-github-pion-webrtc.v3-dev.
//
// Signaling is JSON lines on stdin/stdout (tests/interop/harness.rs has the
// protocol); logs go to stderr. The peer echoes every data-channel message,
// creates the configured channels when it offers, sends the IVF clip's
// frames unchanged (TrackLocalStaticSample packetizes them), and reports the
// SHA-256 of every frame its sample builder assembles.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v3"
	"github.com/pion/webrtc/v3/pkg/media"
	"github.com/pion/webrtc/v3/pkg/media/ivfreader"
	"github.com/pion/webrtc/v3/pkg/media/samplebuilder"
)

type channelSpec struct {
	Label             string  `json:"label"`
	Ordered           bool    `json:"ordered"`
	MaxRetransmits    *uint16 `json:"maxRetransmits"`
	MaxPacketLifeTime *uint16 `json:"maxPacketLifeTime"`
}

type turnConfig struct {
	URL        string `json:"url"`
	Username   string `json:"username"`
	Credential string `json:"credential"`
}

type message struct {
	Type      string        `json:"type"`
	Role      string        `json:"role,omitempty"`
	Channels  []channelSpec `json:"channels,omitempty"`
	Video     *string       `json:"video,omitempty"`
	Clip      string        `json:"clip,omitempty"`
	Turn      *turnConfig   `json:"turn,omitempty"`
	SDP       string        `json:"sdp,omitempty"`
	Candidate *string       `json:"candidate,omitempty"`
	SDPMid    *string       `json:"sdpMid,omitempty"`
}

var outMu sync.Mutex

func out(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "pion_peer: "+format+"\n", args...)
}

func fail(err error) {
	out(map[string]string{"type": "error", "message": err.Error()})
	logf("error: %v", err)
	os.Exit(1)
}

// canonicalH264 is what is hashed of an H.264 access unit
// (tests/interop/harness.rs canonical): its NAL units without AUDs, each
// after a 4-byte start code.
func canonicalH264(data []byte) []byte {
	var starts []int
	for i := 0; i+3 <= len(data); {
		if data[i] == 0 && data[i+1] == 0 && data[i+2] == 1 {
			starts = append(starts, i)
			i += 3
		} else {
			i++
		}
	}
	var out []byte
	for k, s := range starts {
		end := len(data)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		nal := data[s+3 : end]
		for len(nal) > 0 && nal[len(nal)-1] == 0 {
			nal = nal[:len(nal)-1]
		}
		if len(nal) == 0 || nal[0]&0x1f == 9 {
			continue
		}
		out = append(out, 0, 0, 0, 1)
		out = append(out, nal...)
	}
	return out
}

func watchChannel(dc *webrtc.DataChannel) {
	report := func() {
		out(map[string]interface{}{
			"type": "channel", "label": dc.Label(), "ordered": dc.Ordered(),
			"maxRetransmits": dc.MaxRetransmits(), "maxPacketLifeTime": dc.MaxPacketLifeTime(),
		})
	}
	dc.OnOpen(report)
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		var err error
		if msg.IsString {
			err = dc.SendText(string(msg.Data))
		} else {
			err = dc.Send(msg.Data)
		}
		if err != nil {
			logf("echo on %s: %v", dc.Label(), err)
		}
	})
}

// sendClip writes the clip's frames at their own pace, once.
func sendClip(track *webrtc.TrackLocalStaticSample, path string) {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	reader, header, err := ivfreader.NewWith(f)
	if err != nil {
		fail(err)
	}
	type frame struct {
		ts   uint64
		data []byte
	}
	var frames []frame
	for {
		data, fh, err := reader.ParseNextFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(err)
		}
		frames = append(frames, frame{fh.Timestamp, data})
	}
	unit := time.Second * time.Duration(header.TimebaseNumerator) / time.Duration(header.TimebaseDenominator)
	start := time.Now()
	for i, fr := range frames {
		at := start.Add(time.Duration(fr.ts) * unit)
		time.Sleep(time.Until(at))
		d := 33 * time.Millisecond
		if i+1 < len(frames) {
			d = time.Duration(frames[i+1].ts-fr.ts) * unit
		}
		if err := track.WriteSample(media.Sample{Data: fr.data, Duration: d}); err != nil {
			logf("write sample: %v", err)
			return
		}
	}
	logf("sent %d frames", len(frames))
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	if !in.Scan() {
		return
	}
	var config message
	if err := json.Unmarshal(in.Bytes(), &config); err != nil {
		fail(err)
	}

	m := &webrtc.MediaEngine{}
	if config.Video != nil && *config.Video == "H264" {
		// H.264 only, so that pion offers and answers nothing else.
		feedback := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: feedback},
			PayloadType: 112,
		}, webrtc.RTPCodecTypeVideo); err != nil {
			fail(err)
		}
	} else if err := m.RegisterDefaultCodecs(); err != nil {
		fail(err)
	}
	registry := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, registry); err != nil {
		fail(err)
	}
	s := webrtc.SettingEngine{}
	s.SetIncludeLoopbackCandidate(true)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(0 /* ice.MulticastDNSModeDisabled */)
	s.SetIPFilter(nil)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(registry), webrtc.WithSettingEngine(s))

	pcConfig := webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}
	if config.Turn != nil {
		pcConfig.ICEServers = []webrtc.ICEServer{{
			URLs: []string{config.Turn.URL}, Username: config.Turn.Username,
			Credential: config.Turn.Credential, CredentialType: webrtc.ICECredentialTypePassword,
		}}
		pcConfig.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(pcConfig)
	if err != nil {
		fail(err)
	}

	pc.OnDataChannel(watchChannel)
	pc.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		logf("track %s", track.Codec().MimeType)
		var depacketizer rtp.Depacketizer = &codecs.VP8Packet{}
		h264 := strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeH264)
		if h264 {
			depacketizer = &codecs.H264Packet{}
		}
		if h264 {
			// Access units by marker bit: pion 3.1's sample builder gave
			// only 2 of the 40 access units rtclab sent (not looked into).
			var pkt codecs.H264Packet
			var frame []byte
			for {
				p, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				if data, err := pkt.Unmarshal(p.Payload); err == nil {
					frame = append(frame, data...)
				}
				if p.Marker {
					sum := sha256.Sum256(canonicalH264(frame))
					out(map[string]interface{}{"type": "frame", "codec": "H264", "len": len(frame), "sha256": hex.EncodeToString(sum[:])})
					frame = nil
				}
			}
		}
		builder := samplebuilder.New(64, depacketizer, 90000)
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			builder.Push(pkt)
			for sample := builder.Pop(); sample != nil; sample = builder.Pop() {
				sum := sha256.Sum256(sample.Data)
				out(map[string]interface{}{"type": "frame", "codec": strings.TrimPrefix(track.Codec().MimeType, "video/"), "len": len(sample.Data), "sha256": hex.EncodeToString(sum[:])})
			}
		}
	})

	var track *webrtc.TrackLocalStaticSample
	if config.Video != nil {
		mime := webrtc.MimeTypeVP8
		if *config.Video == "H264" {
			mime = webrtc.MimeTypeH264
		} else if *config.Video != "VP8" {
			fail(fmt.Errorf("codec %s not wired in this peer", *config.Video))
		}
		track, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, "video", "pion")
		if err != nil {
			fail(err)
		}
	}
	addTrack := func() {
		sender, err := pc.AddTrack(track)
		if err != nil {
			fail(err)
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		out(map[string]string{"type": "state", "state": state.String()})
		logf("connection %s", state)
		if state == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
		if state == webrtc.PeerConnectionStateFailed {
			fail(fmt.Errorf("connection failed"))
		}
	})
	if track != nil {
		go func() {
			<-connected
			sendClip(track, config.Clip)
		}()
	}

	// Non-trickle: our description goes out with every candidate in it.
	local := func(kind string, sdp webrtc.SessionDescription) {
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(sdp); err != nil {
			fail(err)
		}
		<-gathered
		out(map[string]string{"type": kind, "sdp": pc.LocalDescription().SDP})
	}

	if config.Role == "offer" {
		if track != nil {
			addTrack()
		}
		for _, c := range config.Channels {
			ordered := c.Ordered
			dc, err := pc.CreateDataChannel(c.Label, &webrtc.DataChannelInit{
				Ordered: &ordered, MaxRetransmits: c.MaxRetransmits, MaxPacketLifeTime: c.MaxPacketLifeTime,
			})
			if err != nil {
				fail(err)
			}
			watchChannel(dc)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			fail(err)
		}
		local("offer", offer)
	}

	for in.Scan() {
		var msg message
		if err := json.Unmarshal(in.Bytes(), &msg); err != nil {
			fail(err)
		}
		switch msg.Type {
		case "offer":
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: msg.SDP}); err != nil {
				fail(err)
			}
			if track != nil {
				addTrack()
			}
			answer, err := pc.CreateAnswer(nil)
			if err != nil {
				fail(err)
			}
			local("answer", answer)
		case "answer":
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: msg.SDP}); err != nil {
				fail(err)
			}
		case "candidate":
			if msg.Candidate == nil || *msg.Candidate == "" {
				continue
			}
			c := strings.TrimPrefix(*msg.Candidate, "a=")
			if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c, SDPMid: msg.SDPMid}); err != nil {
				logf("candidate %q: %v", c, err)
			}
		case "bye":
			pc.Close()
			return
		}
	}
	pc.Close()
}
