//! The codec of every delestage service and client: prost, with small
//! encode and decode buffers.
//!
//! tonic's default gives each call an 8 KiB buffer, held for the life of a
//! stream. Our messages are small (a four-day forecast is about 3 KiB, a
//! relay event a few bytes), and a forecast-service may hold ten thousand
//! WatchForecast streams: 8 KiB each is 80 MiB of buffers that are mostly
//! empty. The buffer still grows to fit any message.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a call's buffer.
const BUFFER_SIZE: usize = 1024;
/// How much a streaming response buffers before it yields to the transport
/// (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`tonic_prost::ProstCodec`] with small buffers (see the module doc).
#[derive(Debug)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

// By hand: a derive would ask `T: Default`.
impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
