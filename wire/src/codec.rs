//! The protobuf codec of `tessera.v1`: tonic-prost's, except that a request
//! body that does not decode is INVALID_ARGUMENT with a fixed message.
//! tonic-prost answers INTERNAL with the decoder's own words ("invalid
//! varint", field numbers), which blames the server for the caller's bytes
//! and tells a prober how far its bytes got.
//!
//! The client's stubs are generated from the same pass, so they use it too:
//! there an answer that does not decode (a broken proxy; never Tessera's
//! own) is INVALID_ARGUMENT with the same fixed message.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Status,
    codec::{BufferSettings, DecodeBuf, Decoder},
};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Named by build.rs (`codec_path`) for the generated server and client.
#[derive(Debug, Clone, Copy)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decode<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decode(ProstDecoder::default())
    }
}

pub struct Decode<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for Decode<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0
            .decode(buf)
            .map_err(|_| Status::invalid_argument("the request is not a valid protobuf message"))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
