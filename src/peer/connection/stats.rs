//! Statistics (W3C webrtc-stats shapes): the transport's, each track's and
//! each data channel's.

use super::*;

impl PeerConnection {
    /// `getStats()`: inbound and outbound RTP per stream, the transport and
    /// the data channels (see [`StatsReport`]).
    pub fn stats(&self) -> StatsReport {
        let inbound = self
            .receivers
            .iter()
            .map(|r| {
                let c = r.stream.stats();
                let (lost, jitter) = r.stream.loss_and_jitter();
                InboundRtpStats {
                    mid: r.mid.clone(),
                    rid: r.rid.map(|r| r.to_string()),
                    kind: r.kind,
                    ssrc: r.stream.ssrc(),
                    codec: r.current_name.clone(),
                    packets_received: c.packets_received,
                    bytes_received: c.bytes_received,
                    header_bytes_received: c.header_bytes_received,
                    packets_lost: lost,
                    jitter: Duration::from_nanos(
                        u64::from(jitter) * 1_000_000_000 / u64::from(r.stream.clock_rate()),
                    ),
                    rtx_packets_received: c.rtx_packets_received,
                    frames_received: c.frames_received,
                    keyframes_received: c.keyframes_received,
                    nack_count: c.nack_count,
                    pli_count: c.pli_count,
                    sender_reports_received: c.sender_reports_received,
                }
            })
            .collect();
        let outbound = self
            .senders
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let c = s.stream.stats();
                OutboundRtpStats {
                    track: TrackId(i),
                    mid: s.mid.clone(),
                    kind: s.kind,
                    ssrc: s.stream.ssrc(),
                    rtx_ssrc: s.rtx_ssrc,
                    codec: s.codec_name.clone(),
                    packets_sent: c.packets_sent,
                    bytes_sent: c.bytes_sent,
                    header_bytes_sent: c.header_bytes_sent,
                    retransmitted_packets_sent: c.retransmitted_packets_sent,
                    retransmitted_bytes_sent: c.retransmitted_bytes_sent,
                    frames_sent: c.frames_sent,
                    nack_count: c.nack_count,
                    pli_count: c.pli_count,
                    fir_count: c.fir_count,
                    sender_reports_sent: c.sender_reports_sent,
                    reports_received: c.reports_received,
                    round_trip_time: c.round_trip_time,
                    fraction_lost: c.fraction_lost,
                    remote_packets_lost: c.remote_packets_lost,
                }
            })
            .collect();
        let mut transport = self.transport_stats.clone();
        if let Some((l, r)) = self.transport.as_ref().and_then(|t| t.selected_pair()) {
            transport.remote_address = r.socket_addr();
            transport.selected_candidate_pair = Some((l.clone(), r.clone()));
        }
        transport.available_outgoing_bitrate = self.available_outgoing_bitrate();
        StatsReport {
            inbound,
            outbound,
            transport,
            data_channels: self.dc_stats,
        }
    }

    /// Media counters.
    pub fn media_stats(&self) -> MediaStats {
        self.media_stats
    }
}
