//! Framing and encoding of peer messages: tokio-util length-delimited frames whose payload is
//! bincode 2 (serde). This is the only module that knows the encoding, so it can be swapped.
//!
//! Invariants: a frame longer than the codec's `max_frame` is refused before it is buffered; a
//! payload is decoded with a bincode size limit, so a few hostile bytes cannot claim a huge
//! allocation; any malformed frame is an error for that connection only.

use super::message::{Frame, HandshakeFrame};
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest handshake frame: handshakes are small, and come from peers not yet trusted.
pub const MAX_HANDSHAKE_FRAME: usize = 64 * 1024;
/// Upper bound of any frame payload the decoder will consider (the codec's own `max_frame` is
/// usually lower); also the bincode decode limit.
pub const MAX_FRAME_LIMIT: usize = 256 * 1024 * 1024;

/// A peer frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Transport failure, or a frame over the size limit.
    #[error("peer connection i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The payload is not a valid message.
    #[error("malformed peer message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The message could not be encoded.
    #[error("cannot encode peer message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The payload has bytes after the message.
    #[error("malformed peer message: {0} trailing bytes")]
    TrailingBytes(usize),
}

/// Length-delimited bincode codec reading `In` and writing `Out`; `LIMIT` bounds decoding.
#[derive(Debug)]
pub struct BincodeCodec<In, Out, const LIMIT: usize> {
    frames: LengthDelimitedCodec,
    max_frame: usize,
    _types: PhantomData<fn(Out) -> In>,
}

/// Bytes of the frame length header (`LengthDelimitedCodec`'s default: `u32`, big-endian).
const LENGTH_HEADER: usize = 4;

/// Codec of established connections.
pub type FrameCodec = BincodeCodec<Frame, Frame, MAX_FRAME_LIMIT>;
/// Codec of the handshake.
pub type HandshakeCodec = BincodeCodec<HandshakeFrame, HandshakeFrame, MAX_HANDSHAKE_FRAME>;

impl<In, Out, const LIMIT: usize> BincodeCodec<In, Out, LIMIT> {
    /// A codec refusing frames longer than `max_frame` bytes (capped at `LIMIT`).
    pub fn new(max_frame: usize) -> Self {
        BincodeCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame.min(LIMIT))
                .new_codec(),
            max_frame: max_frame.min(LIMIT),
            _types: PhantomData,
        }
    }
}

impl HandshakeCodec {
    /// The codec for handshakes.
    pub fn handshake() -> Self {
        Self::new(MAX_HANDSHAKE_FRAME)
    }
}

impl<In: DeserializeOwned, Out, const LIMIT: usize> Decoder for BincodeCodec<In, Out, LIMIT> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        let Some(payload) = self.frames.decode(src)? else {
            return Ok(None);
        };
        let config = bincode::config::standard().with_limit::<LIMIT>();
        let (message, used) = bincode::serde::decode_from_slice(&payload, config)?;
        if used != payload.len() {
            return Err(CodecError::TrailingBytes(payload.len() - used));
        }
        Ok(Some(message))
    }
}

/// Appends bincode's output to the frame buffer.
struct AppendTo<'a>(&'a mut BytesMut);

impl bincode::enc::write::Writer for AppendTo<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl<In, Out: Serialize, const LIMIT: usize> Encoder<Out> for BincodeCodec<In, Out, LIMIT> {
    type Error = CodecError;

    /// Encodes straight into `dst` behind a length header patched afterwards (the same bytes as
    /// `LengthDelimitedCodec`), so a frame costs no allocation or copy of its own.
    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let start = dst.len();
        dst.extend_from_slice(&[0; LENGTH_HEADER]);
        if let Err(e) = bincode::serde::encode_into_writer(&item, AppendTo(dst), bincode::config::standard()) {
            dst.truncate(start);
            return Err(e.into());
        }
        let len = dst.len() - start - LENGTH_HEADER;
        if len > self.max_frame {
            dst.truncate(start);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("frame of {len} bytes is over the limit of {}", self.max_frame),
            )
            .into());
        }
        let header = u32::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        dst[start..start + LENGTH_HEADER].copy_from_slice(&header.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::message::{PeerRequest, PeerResponse};
    use crate::replica::{ReplicaOp, ReplicaReply, ReplicaRequest};
    use crate::{BucketId, Key, Record, Tag, WriterId};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn sample_frames() -> Vec<Frame> {
        let tag = Tag {
            counter: 9,
            writer: WriterId(3),
        };
        vec![
            Frame::Request {
                id: 1,
                body: PeerRequest::Replica(ReplicaRequest {
                    ring: crate::cluster::RingId::default(),
                    bucket: BucketId(7),
                    key: Key::new("k").expect("key"),
                    op: ReplicaOp::Write(Record::value(tag, 1, 2, Bytes::from_static(b"\r\n\0"))),
                }),
            },
            Frame::Response {
                id: 1,
                body: PeerResponse::Replica(ReplicaReply::Written(tag)),
            },
            Frame::Request {
                id: u64::MAX,
                body: PeerRequest::Ping,
            },
            Frame::Response {
                id: 2,
                body: PeerResponse::Error("nope".into()),
            },
        ]
    }

    #[test]
    fn frames_round_trip_in_one_buffer() {
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        for f in sample_frames() {
            codec.encode(f, &mut buf).expect("encode");
        }
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).expect("decode") {
            out.push(f);
        }
        assert_eq!(out, sample_frames());
    }

    #[test]
    fn encoded_frames_are_length_delimited_codec_frames() {
        let mut ours = BytesMut::new();
        let mut reference = BytesMut::new();
        for frame in sample_frames() {
            let payload = bincode::serde::encode_to_vec(&frame, bincode::config::standard()).expect("encode");
            LengthDelimitedCodec::new()
                .encode(Bytes::from(payload), &mut reference)
                .expect("reference encode");
            FrameCodec::new(1 << 20).encode(frame, &mut ours).expect("encode");
        }
        assert_eq!(ours, reference);
    }

    #[test]
    fn oversized_frames_are_not_sent() {
        let mut buf = BytesMut::from(&b"earlier frames"[..]);
        let big = sample_frames().into_iter().next().expect("a frame");
        assert!(matches!(
            FrameCodec::new(8).encode(big, &mut buf),
            Err(CodecError::Io(_))
        ));
        assert_eq!(&buf[..], b"earlier frames", "nothing of the refused frame is left");
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&(1_000_000u32).to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut buf), Err(CodecError::Io(_))));
    }

    #[test]
    fn a_tiny_frame_claiming_a_huge_value_is_an_error() {
        // A Hello whose name claims 2^40 bytes: the decode limit refuses it without allocating.
        let mut payload = vec![0u8, 1, 1, b'k', 0];
        payload.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        let mut codec = HandshakeCodec::handshake();
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut payload =
            bincode::serde::encode_to_vec(&HandshakeFrame::Accepted, bincode::config::standard()).expect("encode");
        payload.push(0);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        assert!(matches!(
            HandshakeCodec::handshake().decode(&mut buf),
            Err(CodecError::TrailingBytes(1))
        ));
    }

    #[test]
    fn a_request_of_a_service_this_build_does_not_know_is_a_malformed_frame() {
        use crate::peer::ServiceId;
        let frame = |service: u8| {
            // `Frame::Request` (variant 0), id 5, then the body's variant: its service.
            let payload = [0u8, 5, service];
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(&payload);
            FrameCodec::new(1024).decode(&mut buf)
        };
        let ping = ServiceId::Ping.index() as u8;
        assert_eq!(
            frame(ping).expect("a ping decodes"),
            Some(Frame::Request {
                id: 5,
                body: PeerRequest::Ping
            })
        );
        assert!(matches!(frame(ServiceId::COUNT as u8), Err(CodecError::Decode(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = FrameCodec::new(1 << 16);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        #[test]
        fn garbage_inside_a_valid_frame_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(&payload);
            let _ = FrameCodec::new(1 << 16).decode(&mut buf);
        }
    }
}
