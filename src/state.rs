//! Serialisable operator state. Arrow batches travel as Arrow IPC streams inside any serde
//! format, so a checkpoint stores windows exactly as they were, types and nulls included.

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether an index that skips its stale entries rather than removing them (a group's last
/// event moved on, a timer closed in time) should be rebuilt from the live ones: past twice
/// their number and a floor, so a rebuild costs no more than the pushes since the last one.
pub fn index_to_rebuild(entries: usize, live: usize) -> bool {
    entries > 2 * live + 4096
}

/// Batches that serialise as one Arrow IPC stream.
#[derive(Debug, Clone, Default)]
pub struct SerdeBatches(pub Vec<RecordBatch>);

impl Serialize for SerdeBatches {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(first) = self.0.first() else {
            return s.serialize_bytes(&[]);
        };
        let mut buf = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut buf, &first.schema()).map_err(serde::ser::Error::custom)?;
            for b in &self.0 {
                w.write(b).map_err(serde::ser::Error::custom)?;
            }
            w.finish().map_err(serde::ser::Error::custom)?;
        }
        s.serialize_bytes(&buf)
    }
}

impl<'de> Deserialize<'de> for SerdeBatches {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        if bytes.is_empty() {
            return Ok(SerdeBatches::default());
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(D::Error::custom)?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(D::Error::custom)?;
        Ok(SerdeBatches(batches))
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    // byte_buf: CBOR hands out long byte strings only as owned buffers.
    d.deserialize_byte_buf(V)
}

/// `#[serde(with = "crate::state::bytes")]` for a `Vec<u8>` kept as one byte string
/// (serde's default writes it as a list of numbers).
pub mod bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        super::serde_bytes_vec(d)
    }
}

/// Serialise a value (job state) to bytes for a checkpoint. CBOR, because it describes
/// itself: alert observations carry free-form JSON evidence, which a schema-less format like
/// postcard cannot read back.
pub fn to_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)?;
    Ok(out)
}

/// The inverse of [`to_bytes`].
pub fn from_bytes<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> anyhow::Result<T> {
    Ok(ciborium::from_reader(bytes)?)
}
