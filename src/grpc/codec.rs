//! The protobuf codec of the generated `nudge.v1` code: prost's, except
//! that a request that does not decode is the caller's mistake
//! (INVALID_ARGUMENT naming the field where prost names it), not INTERNAL.

use crate::engine::error::ServiceError;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// What prost puts before its explanation.
const PROST_PREFIX: &str = "failed to decode Protobuf message: ";

/// The first buffer of each call's request and response: tonic's default
/// (8 KiB for each, per call) is an allocation large enough to make the
/// allocator consolidate its free lists on every call, while a Decide is a
/// few hundred bytes each way. A larger message grows its buffer as before.
const BUFFER_BYTES: usize = 768;
/// tonic's default: a stream's encoder yields after this much.
const YIELD_BYTES: usize = 32 * 1024;

fn buffer_settings() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

/// [`ProstCodec`] with decode errors as INVALID_ARGUMENT and small first
/// buffers ([`BUFFER_BYTES`]).
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(std::marker::PhantomData<fn() -> (T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        ProtoCodec(std::marker::PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(ProstCodec::<T, U>::raw_decoder(buffer_settings()))
    }
}

/// [`ProstDecoder`] whose errors are INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Decoding is the decoder's only failure: every error is the bytes'.
        self.0
            .decode(buf)
            .map_err(|s| Status::from(malformed(s.message())))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

/// The error of a message that does not decode: the field is prost's
/// innermost `Message.field` when it names one, else `body`.
pub fn malformed(prost_message: &str) -> ServiceError {
    let why = prost_message
        .strip_prefix(PROST_PREFIX)
        .unwrap_or(prost_message);
    let named = why.split_once(": ").filter(|(f, _)| {
        f.contains('.')
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    });
    match named {
        Some((field, rest)) => ServiceError::invalid(field, format!("malformed protobuf: {rest}")),
        None => ServiceError::invalid("body", format!("malformed protobuf: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_name_the_innermost_field() {
        let e = malformed("failed to decode Protobuf message: DecideRequest.session_id: invalid string value: data is not UTF-8 encoded");
        assert_eq!(
            e,
            ServiceError::invalid(
                "DecideRequest.session_id",
                "malformed protobuf: invalid string value: data is not UTF-8 encoded"
            )
        );
        let e = malformed("failed to decode Protobuf message: invalid varint");
        assert!(
            matches!(e, ServiceError::InvalidArgument { ref field, .. } if field == "body"),
            "{e:?}"
        );
    }
}
