//! Malformed protobuf is the caller's mistake: INVALID_ARGUMENT naming the
//! field where the decoder can, never INTERNAL, never a panic, for every
//! request type.

use crate::util::*;
use bytes::{Buf, BufMut};
use proptest::prelude::*;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Sends and receives message bytes as they are.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

const METHODS: [&str; 6] = [
    "Track",
    "Decide",
    "Redeem",
    "RecordOutcome",
    "Budget",
    "Report",
];

async fn call(
    channel: &tonic::transport::Channel,
    method: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path: http::uri::PathAndQuery = format!("/nudge.v1.Offers/{method}").parse().unwrap();
    grpc.unary(tonic::Request::new(body), path, RawBytes)
        .await
        .map(|r| r.into_inner())
}

/// A valid encoding of each request type, to mutate.
fn valid(method: &str) -> Vec<u8> {
    use nudge::grpc::pb;
    match method {
        "Track" => pb::TrackRequest {
            session_id: "s".into(),
            events: vec![product(1, "p", 12_000, 30, 0.5)],
            ..Default::default()
        }
        .encode_to_vec(),
        "Decide" => decide("s", vec![page(0, pb::PageKind::Home, 5)]).encode_to_vec(),
        "Redeem" => pb::RedeemRequest {
            voucher_code: "CODE".into(),
            session_id: "s".into(),
            order_value_cents: 12_000,
        }
        .encode_to_vec(),
        "RecordOutcome" => pb::RecordOutcomeRequest {
            session_id: "s".into(),
            converted: true,
            order_value_cents: 12_000,
        }
        .encode_to_vec(),
        "Budget" => pb::BudgetRequest {
            campaign: "default".into(),
        }
        .encode_to_vec(),
        _ => pb::ReportRequest { since_ms: 1 }.encode_to_vec(),
    }
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_naming_the_field() {
    let s = start(settings(""), default_model()).await;
    let channel = s.channel().await;
    // session_id (field 1, length-delimited) holding bytes that are not UTF-8.
    let e = call(&channel, "Decide", vec![0x0a, 0x02, 0xff, 0xfe])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("DecideRequest.session_id: "),
        "{}",
        e.message()
    );
    // A truncated varint names no field: the body is blamed.
    let e = call(&channel, "Track", vec![0x18, 0xff]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    s.stop().await;
}

/// Random bytes and mutated valid encodings, as the body of every call.
#[test]
fn random_and_mutated_bodies_never_get_internal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (s, channel) = rt.block_on(async {
        let s = start(settings(""), default_model()).await;
        let channel = s.channel().await;
        (s, channel)
    });
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..96).prop_map(|b| (None, b)),
        (
            0..METHODS.len(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..3u8
        )
            .prop_map(|(m, at, byte, op)| {
                let mut b = valid(METHODS[m]);
                let i = at.index(b.len() + 1);
                match op {
                    0 if i < b.len() => b[i] ^= byte.max(1),
                    1 => b.truncate(i),
                    _ => b.insert(i, byte),
                }
                (Some(m), b)
            }),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 384,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&(0..METHODS.len(), body), |(m, (mutated, bytes))| {
            let method = METHODS[mutated.unwrap_or(m)];
            let r = rt.block_on(call(&channel, method, bytes.clone()));
            if let Err(e) = &r {
                prop_assert!(
                    !matches!(e.code(), Code::Internal | Code::Unknown | Code::Unavailable),
                    "{method} {bytes:?}: {e:?}"
                );
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(s.stop());
}
