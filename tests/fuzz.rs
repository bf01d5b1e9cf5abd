//! Mutation fuzzing of everything a remote party can send: the memcache request parsers (text and
//! binary) and the peer protocol decoders (handshake and established connections). Seeds are
//! valid streams; each run mutates one (bit flips, byte insertions and deletions, splices, hostile
//! numbers), feeds it in random chunks, and checks that decoding never panics and memory stays
//! bounded.
//!
//! `KAITEST_FUZZ_ITERS` sets the runs per target (default 20,000; `docs/reliability.md` records
//! long runs).

use bytes::{Bytes, BytesMut};
use kai_proto::binary::BinaryDecoder;
use kai_proto::cluster::{GossipState, Intent, NodeState, RingId, RingMember, RingState};
use kai_proto::memcache::{Limits, RequestDecoder};
use kai_proto::peer::{
    ClusterSettings, Frame, FrameCodec, HandshakeCodec, HandshakeFrame, Hello, PeerRequest, PeerResponse,
};
use kai_proto::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
use kai_proto::sync::{SyncCall, SyncRequest, SyncResponse};
use kai_proto::{BucketId, Key, NodeId, Record, Tag, WriterId};
use rand::{Rng, SeedableRng};
use tokio_util::codec::{Decoder, Encoder};

fn iterations() -> usize {
    std::env::var("KAITEST_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

const HOSTILE_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"99999999999",
    b"+1",
    b"1e9",
    b"",
];

fn mutate(rng: &mut rand::rngs::StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let at = rng.random_range(0..=data.len());
        match rng.random_range(0..7) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.insert(at, rng.random()),
            2 if at < data.len() => {
                let end = (at + rng.random_range(1..16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                data.splice(at..at, other[from..].iter().copied());
            }
            4 => data.truncate(at),
            5 => {
                let n = HOSTILE_NUMBERS[rng.random_range(0..HOSTILE_NUMBERS.len())];
                data.splice(at..at, n.iter().copied());
            }
            _ => {
                let len = data.len();
                if len > 0 {
                    let i = rng.random_range(0..len);
                    let chunk: Vec<u8> = data[i..(i + 8).min(len)].to_vec();
                    data.splice(at..at, chunk);
                }
            }
        }
    }
    data
}

/// Feeds `data` to `decoder` in random chunks; returns items decoded; panics if the buffer grows
/// past `bound`.
fn feed<D: Decoder>(rng: &mut rand::rngs::StdRng, decoder: &mut D, data: &[u8], bound: usize) -> usize {
    let mut buf = BytesMut::new();
    let mut items = 0;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(4096));
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => items += 1,
                Ok(None) => break,
                Err(_) => return items,
            }
        }
        assert!(
            buf.len() <= bound,
            "decoder buffered {} bytes (bound {bound})",
            buf.len()
        );
    }
    items
}

#[test]
fn the_memcache_parser_survives_mutated_streams() {
    let seeds: Vec<Vec<u8>> = [
        &b"set k 0 0 5\r\nhello\r\nget k\r\n"[..],
        b"gets a b c d\r\ndelete k noreply\r\nstats\r\nversion\r\nquit\r\n",
        b"set bin 4294967295 -1 4 noreply\r\n\r\n\0\x01\r\nverbosity 1\r\n",
        b"add k 0 0 1\r\nx\r\ncas k 0 0 1 99\r\ny\r\nincr k 1\r\ntouch k 5\r\nflush_all\r\n",
        b"set big 0 0 70000\r\n",
        b"kai_leave\r\nstats members\r\nstats ring\r\n",
        // Meta commands: every flag, base64 keys (valid and not), opaque tokens, quiet batches.
        b"mg foo v f c t T30 k q s N10 R5 h l Oab u E7\r\nmg Zm9v b k v\r\nmg !!!! b\r\nmn\r\n",
        b"ms foo 5 c b F7 C9 T60 I MA q O1 N30\r\nhello\r\nms Zm9v 2 b MZ\r\nhi\r\nme foo b\r\n",
        b"md foo C5 T30 I q O9 x k\r\nma foo v D5 J10 N0 C3 q MD O1 T9 t c k\r\nmn\r\n",
        b"mg kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk O012345678901234567890123456789012 v v\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect();
    let limits = Limits {
        max_value_size: 64 * 1024,
        ..Limits::default()
    };
    let bound = limits.max_get_line + limits.max_value_size + 8;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (runs, mut items) = (iterations(), 0);
    for _ in 0..runs {
        let input = mutate(&mut rng, &seeds);
        items += feed(&mut rng, &mut RequestDecoder::new(limits), &input, bound);
    }
    eprintln!("memcache parser: {runs} mutated streams, {items} requests decoded, no panic");
}

/// A binary request packet (for fuzz seeds).
fn binary_packet(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80, opcode];
    out.extend((key.len() as u16).to_be_bytes());
    out.extend([extras.len() as u8, 0, 0, 0]);
    out.extend(((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
    out.extend(extras);
    out.extend(key);
    out.extend(value);
    out
}

#[test]
fn the_binary_decoder_survives_mutated_streams() {
    let counter = [&5u64.to_be_bytes()[..], &1u64.to_be_bytes(), &u32::MAX.to_be_bytes()].concat();
    let seeds: Vec<Vec<u8>> = vec![
        [
            binary_packet(0x01, &[0, 0, 0, 1, 0, 0, 0, 0], b"k", b"hello"),
            binary_packet(0x0d, &[], b"k", &[]),
            binary_packet(0x0a, &[], &[], &[]),
        ]
        .concat(),
        [
            binary_packet(0x05, &counter, b"n", &[]),
            binary_packet(0x1d, &[0, 0, 0, 9], b"k", &[]),
            binary_packet(0x10, &[], b"settings", &[]),
        ]
        .concat(),
        [
            binary_packet(0x21, &[], b"PLAIN", b"\0user\0password"),
            binary_packet(0x0e, &[], b"k", &[7; 300]),
            binary_packet(0x55, &[1, 2], b"zz", b"unknown"),
        ]
        .concat(),
        binary_packet(0x11, &[0; 8], b"big", &[0; 70_000]),
    ];
    let max_value_size = 64 * 1024;
    // Header, extras and key, plus one value, plus the unread rest of one feed.
    let bound = 24 + 255 + 250 + max_value_size + 4096;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (runs, mut items) = (iterations(), 0);
    for _ in 0..runs {
        let input = mutate(&mut rng, &seeds);
        items += feed(&mut rng, &mut BinaryDecoder::new(max_value_size), &input, bound);
    }
    eprintln!("binary decoder: {runs} mutated streams, {items} requests decoded, no panic");
}

fn tag() -> Tag {
    Tag {
        counter: 7,
        writer: WriterId(9),
    }
}

fn key() -> Key {
    Key::new("key").expect("key")
}

fn frames() -> Vec<Frame> {
    let record = Record::value(tag(), 1, 0, Bytes::from_static(b"value"));
    let node = NodeState {
        id: NodeId(1),
        name: "n1".into(),
        addr: "127.0.0.1:1".into(),
        incarnation: 2,
        heartbeat: 3,
        intent: Intent::Member,
        adopted: RingId::default(),
        synced: RingId::default(),
        data_id: 5,
    };
    let ring = RingState::new(
        RingId {
            version: 1,
            proposer: NodeId(1),
        },
        vec![RingMember {
            id: NodeId(1),
            name: "n1".into(),
            addr: "127.0.0.1:1".into(),
        }],
    );
    let ring_id = ring.id;
    let requests = vec![
        PeerRequest::Replica(ReplicaRequest {
            ring: ring.id,
            bucket: BucketId(3),
            key: key(),
            op: ReplicaOp::Write(record.clone()),
        }),
        PeerRequest::Gossip(GossipState {
            from: NodeId(1),
            rings: vec![ring],
            nodes: vec![node],
            flush: None,
        }),
        PeerRequest::Sync(SyncCall {
            ring: ring_id,
            request: SyncRequest::Keys {
                bucket: BucketId(1),
                segments: u64::MAX,
                after: Some(Bytes::from_static(b"k")),
                limit: 10,
            },
        }),
        PeerRequest::Sync(SyncCall {
            ring: ring_id,
            request: SyncRequest::Apply {
                bucket: BucketId(1),
                records: vec![(Bytes::from_static(b"k"), record.clone())],
            },
        }),
        PeerRequest::Ping,
    ];
    let responses = vec![
        PeerResponse::Replica(ReplicaReply::Record(Some(record.clone()))),
        PeerResponse::Sync(SyncResponse::Digest(vec![1, 2, 3])),
        PeerResponse::Sync(SyncResponse::Records {
            records: vec![(Bytes::from_static(b"k"), record)],
            more: true,
        }),
        PeerResponse::Error("no".into()),
    ];
    let mut frames: Vec<Frame> = requests
        .into_iter()
        .enumerate()
        .map(|(i, body)| Frame::Request { id: i as u64, body })
        .collect();
    frames.extend(
        responses
            .into_iter()
            .enumerate()
            .map(|(i, body)| Frame::Response { id: i as u64, body }),
    );
    frames
}

#[test]
fn the_peer_decoders_survive_mutated_frames() {
    const MAX_FRAME: usize = 64 * 1024;
    let mut seeds = Vec::new();
    for frame in frames() {
        let mut buf = BytesMut::new();
        FrameCodec::new(MAX_FRAME).encode(frame, &mut buf).expect("encode");
        seeds.push(buf.to_vec());
    }
    let hello = HandshakeFrame::Hello(Hello {
        protocol_version: 1,
        cluster_name: "kai".into(),
        settings: ClusterSettings {
            n: 3,
            r: 2,
            w: 2,
            buckets: 1024,
            virtual_nodes: 64,
        },
        node: NodeId(1),
        name: "n1".into(),
        advertise: "127.0.0.1:1".into(),
        nonce: [7; 32],
    });
    for frame in [
        hello,
        HandshakeFrame::Proof([1; 32]),
        HandshakeFrame::Refused("x".into()),
    ] {
        let mut buf = BytesMut::new();
        HandshakeCodec::handshake().encode(frame, &mut buf).expect("encode");
        seeds.push(buf.to_vec());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (runs, mut items) = (iterations(), 0);
    for _ in 0..runs {
        let input = mutate(&mut rng, &seeds);
        items += feed(&mut rng, &mut FrameCodec::new(MAX_FRAME), &input, MAX_FRAME + 4096 + 4);
        items += feed(&mut rng, &mut HandshakeCodec::handshake(), &input, 64 * 1024 + 4096 + 4);
    }
    eprintln!("peer decoders: {runs} mutated streams (×2 decoders), {items} frames decoded, no panic");
}
