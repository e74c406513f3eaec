//! A one-pass decoder for jobs whose declared columns are all top-level scalars.
//!
//! arrow-json builds a tape of every element of every record, then walks it once per column;
//! most of a replay's time went there. This decoder scans each record once and writes the
//! declared fields straight into Arrow buffers of the job's types (event times, integers and
//! decimals through the same [`convert`] functions as the tape path), skipping the others. It
//! only accepts what it can decode exactly as the tape path would: strict JSON, escapes the
//! tape decodes alike (none in keys), numbers the tape would read whole, values that convert,
//! an event time. Any other record is handed back, and the tape path ([`super::Decoder`])
//! decodes it and gives every error its message; so both paths produce the same values, an odd
//! record costs a fallback, never another answer, and a dirty chunk's clean rows are never
//! filtered again.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array,
    NullBufferBuilder, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};

use super::convert;
use crate::jobfile::{ColumnType, Dataflow};
use crate::source::RawRecord;

pub(super) struct FlatDecoder {
    names: Vec<Vec<u8>>,
    types: Vec<ColumnType>,
    event_time: usize,
}

/// A declared field's value in the record being scanned: its byte range in the chunk, and the
/// number it converts to.
#[derive(Clone, Copy)]
struct Slot {
    tag: Tag,
    start: u32,
    end: u32,
    value: Value,
}

#[derive(Clone, Copy, PartialEq)]
enum Tag {
    Absent,
    Null,
    Text,
    /// A string holding escapes, kept as written and unescaped when appended.
    Escaped,
    Number,
    True,
    False,
}

#[derive(Clone, Copy)]
enum Value {
    None,
    Float(f64),
    Int(i128),
}

const EMPTY: Slot = Slot { tag: Tag::Absent, start: 0, end: 0, value: Value::None };

/// The rows decoded here, in the job's declared column types, and the records left to the tape
/// path: every record this decoder cannot read exactly, and every record that does not convert
/// (so each dead letter gets the tape path's reason, and clean rows are never filtered again).
pub(super) struct FlatRows {
    pub columns: Vec<ArrayRef>,
    /// Record index of each row.
    pub records: Vec<usize>,
    pub rest: Vec<usize>,
}

impl FlatDecoder {
    /// `None` when a column needs the tape path (nested fields, dates).
    pub fn new(job: &Dataflow) -> Option<Self> {
        if job.columns.iter().any(|c| c.name.contains('.') || c.ty == ColumnType::Date) {
            return None;
        }
        Some(FlatDecoder {
            names: job.columns.iter().map(|c| c.name.as_bytes().to_vec()).collect(),
            types: job.columns.iter().map(|c| c.ty).collect(),
            event_time: job.event_time_index(),
        })
    }

    pub fn decode(&self, data: &[u8], records: &[RawRecord]) -> FlatRows {
        let n = records.len();
        let mut columns: Vec<Builder> = self.types.iter().map(|t| Builder::new(*t, n)).collect();
        let mut slots = vec![EMPTY; self.names.len()];
        let mut order = KeyOrder::default();
        let mut rows = Vec::with_capacity(n);
        let mut rest = Vec::new();
        // A record the scan accepts runs from `{` to `}`, and such a range of valid UTF-8 is
        // valid UTF-8 itself: one check of the chunk covers its records.
        let fits = data.len() < i32::MAX as usize;
        let chunk_utf8 = fits && simdutf8::basic::from_utf8(data).is_ok();
        for (i, r) in records.iter().enumerate() {
            let (start, end) = (r.start as usize, r.end as usize);
            slots.fill(EMPTY);
            let ok = fits
                && (chunk_utf8 || simdutf8::basic::from_utf8(&data[start..end]).is_ok())
                && self.scan(data, start, end, &mut slots, &mut order).is_some()
                && !matches!(slots[self.event_time].tag, Tag::Absent | Tag::Null);
            if ok {
                for (b, s) in columns.iter_mut().zip(&slots) {
                    b.push(*s, data);
                }
                rows.push(i);
            } else {
                rest.push(i);
            }
        }
        FlatRows { columns: columns.into_iter().map(Builder::finish).collect(), records: rows, rest }
    }

    /// Fill `slots` from the record `data[start..end]`; `None` leaves it to the tape path.
    fn scan(&self, data: &[u8], start: usize, end: usize, slots: &mut [Slot], order: &mut KeyOrder) -> Option<()> {
        let b = &data[..end];
        let mut i = ws(b, start);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = ws(b, i + 1);
        let mut ordinal = 0;
        if b.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if b.get(i) != Some(&b'"') {
                    return None;
                }
                let key_end = string_end(b, i + 1)?;
                let key = &b[i + 1..key_end];
                i = ws(b, key_end + 1);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = ws(b, i + 1);
                match order.column(ordinal, key, &self.names) {
                    Some(c) => {
                        if slots[c].tag != Tag::Absent {
                            return None; // arrow-json keeps the last of duplicate fields
                        }
                        let (slot, next) = scalar(b, i)?;
                        slots[c] = typed(slot, self.types[c], b)?;
                        i = next;
                    }
                    None => i = skip_value(b, i, 0)?,
                }
                ordinal += 1;
                i = ws(b, i);
                match b.get(i) {
                    Some(b',') => i = ws(b, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        (ws(b, i) == end).then_some(())
    }
}

/// The slot converted to its column's type as the tape path would (arrow-json reads event
/// times, decimals and integers as text, converted by [`convert`]); `None` where it would not
/// convert or arrow-json reads it differently.
fn typed(mut slot: Slot, ty: ColumnType, b: &[u8]) -> Option<Slot> {
    if slot.tag == Tag::Null || ty == ColumnType::String {
        return Some(slot);
    }
    if slot.tag == Tag::Escaped {
        return None; // rare in numbers and times: the tape path unescapes and converts them
    }
    let bytes = &b[slot.start as usize..slot.end as usize];
    let text = || match slot.tag {
        Tag::Text | Tag::Number => {
            debug_assert!(std::str::from_utf8(bytes).is_ok());
            // SAFETY: the whole record was checked to be UTF-8 before the scan, and a string's
            // quotes or a number's ASCII bounds never split a character.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        }
        _ => None, // `true`/`false` read as text never convert to these types
    };
    slot.value = match (ty, slot.tag) {
        (ColumnType::Bool, Tag::True | Tag::False) => Value::None,
        (ColumnType::Float64, Tag::Number) => Value::Float(lexical_core::parse::<f64>(bytes).ok()?),
        (ColumnType::Float32, Tag::Number) => Value::Float(lexical_core::parse::<f32>(bytes).ok()? as f64),
        (ColumnType::Timestamp, _) => Value::Int(convert::parse_timestamp(text()?).ok()? as i128),
        (ColumnType::Decimal { precision, scale }, _) => Value::Int(convert::parse_decimal(text()?, precision, scale).ok()?),
        (ColumnType::Int32 | ColumnType::Int64 | ColumnType::UInt64, _) => {
            Value::Int(convert::parse_integer_of(text()?, ty).ok()?)
        }
        _ => return None,
    };
    Some(slot)
}

/// Which column the key at each position of the previous record was: records of one stream
/// mostly repeat their key order, so a key is usually matched by one comparison.
#[derive(Default)]
struct KeyOrder {
    seen: Vec<(Vec<u8>, Option<usize>)>,
}

impl KeyOrder {
    fn column(&mut self, ordinal: usize, key: &[u8], names: &[Vec<u8>]) -> Option<usize> {
        if let Some((k, c)) = self.seen.get(ordinal) {
            if same(k, key) {
                return *c;
            }
        }
        let c = names.iter().position(|n| same(n, key));
        if ordinal < 64 {
            if ordinal >= self.seen.len() {
                self.seen.resize(ordinal + 1, (Vec::new(), None));
            }
            self.seen[ordinal] = (key.to_vec(), c);
        }
        c
    }
}

/// Byte equality without a call: keys are a few bytes long.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// One column's values and nulls, in the column's declared type.
struct Builder {
    ty: ColumnType,
    valid: NullBufferBuilder,
    values: Values,
}

enum Values {
    Text { offsets: Vec<i32>, bytes: Vec<u8> },
    Float(Vec<f64>),
    Int(Vec<i128>),
    Long(Vec<i64>),
    Bool(BooleanBufferBuilder),
}

impl Builder {
    fn new(ty: ColumnType, n: usize) -> Self {
        let values = match ty {
            ColumnType::String => {
                let mut offsets = Vec::with_capacity(n + 1);
                offsets.push(0);
                Values::Text { offsets, bytes: Vec::with_capacity(n * 16) }
            }
            ColumnType::Float64 | ColumnType::Float32 => Values::Float(Vec::with_capacity(n)),
            ColumnType::Decimal { .. } | ColumnType::UInt64 => Values::Int(Vec::with_capacity(n)),
            ColumnType::Bool => Values::Bool(BooleanBufferBuilder::new(n)),
            _ => Values::Long(Vec::with_capacity(n)),
        };
        Builder { ty, valid: NullBufferBuilder::new(n), values }
    }

    fn push(&mut self, s: Slot, data: &[u8]) {
        self.valid.append(!matches!(s.tag, Tag::Absent | Tag::Null));
        match &mut self.values {
            Values::Text { offsets, bytes } => {
                match s.tag {
                    Tag::Text | Tag::Number => bytes.extend_from_slice(&data[s.start as usize..s.end as usize]),
                    Tag::Escaped => unescape(&data[s.start as usize..s.end as usize], bytes),
                    Tag::True => bytes.extend_from_slice(b"true"),
                    Tag::False => bytes.extend_from_slice(b"false"),
                    Tag::Absent | Tag::Null => {}
                }
                offsets.push(bytes.len() as i32);
            }
            Values::Float(v) => v.push(if let Value::Float(x) = s.value { x } else { 0.0 }),
            Values::Int(v) => v.push(if let Value::Int(x) = s.value { x } else { 0 }),
            Values::Long(v) => v.push(if let Value::Int(x) = s.value { x as i64 } else { 0 }),
            Values::Bool(v) => v.append(s.tag == Tag::True),
        }
    }

    /// The array the tape path's conversions give for this column.
    fn finish(mut self) -> ArrayRef {
        let nulls = self.valid.finish();
        match (self.values, self.ty) {
            (Values::Text { offsets, bytes }, _) => Arc::new(
                // `try_new` checks the offsets and the UTF-8 (whole records were validated).
                StringArray::try_new(OffsetBuffer::new(ScalarBuffer::from(offsets)), bytes.into(), nulls)
                    .expect("offsets grow and values are UTF-8"),
            ),
            (Values::Float(v), ColumnType::Float32) => {
                Arc::new(Float32Array::new(v.into_iter().map(|x| x as f32).collect(), nulls))
            }
            (Values::Float(v), _) => Arc::new(Float64Array::new(v.into(), nulls)),
            (Values::Int(v), ColumnType::Decimal { precision, scale }) => Arc::new(
                Decimal128Array::new(v.into(), nulls)
                    .with_precision_and_scale(precision, scale)
                    .expect("validated precision and scale"),
            ),
            (Values::Int(v), _) => Arc::new(UInt64Array::new(v.into_iter().map(|x| x as u64).collect(), nulls)),
            (Values::Long(v), ColumnType::Timestamp) => {
                Arc::new(TimestampMillisecondArray::new(v.into(), nulls).with_timezone("UTC"))
            }
            (Values::Long(v), ColumnType::Int32) => Arc::new(Int32Array::new(v.into_iter().map(|x| x as i32).collect(), nulls)),
            (Values::Long(v), _) => Arc::new(Int64Array::new(v.into(), nulls)),
            (Values::Bool(mut v), _) => Arc::new(BooleanArray::new(v.finish(), nulls)),
        }
    }
}

#[inline]
fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// The closing quote of a string whose text starts at `i`; `None` if it holds an escape.
#[inline]
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    let k = quote_or_backslash(rest)?;
    (rest[k] == b'"').then_some(i + k)
}

/// The closing quote of a string value whose text starts at `i`, and whether it holds escapes.
/// `None` for an escape the tape refuses: an unknown one, bad hex, a lone surrogate.
fn string_span(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut at = i;
    let mut escaped = false;
    loop {
        let j = at + quote_or_backslash(b.get(at..)?)?;
        if b[j] == b'"' {
            return Some((j, escaped));
        }
        escaped = true;
        at = match *b.get(j + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j + 2,
            b'u' => match hex4(b, j + 2)? {
                0xD800..=0xDBFF if b.get(j + 6..j + 8) == Some(b"\\u") && (0xDC00..=0xDFFF).contains(&hex4(b, j + 8)?) => j + 12,
                0xD800..=0xDFFF => return None,
                _ => j + 6,
            },
            _ => return None,
        };
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)?.iter().try_fold(0u32, |n, &c| Some(n * 16 + (c as char).to_digit(16)?))
}

/// Append the text of a string [`string_span`] accepted, escapes decoded as arrow-json does.
fn unescape(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(k) = s[i..].iter().position(|&c| c == b'\\') {
        out.extend_from_slice(&s[i..i + k]);
        i += k;
        let simple = match s[i + 1] {
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other), // `"`, `\`, `/`
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let high = hex4(s, i + 2).expect("validated");
        let (code, len) = match high {
            0xD800..=0xDBFF => {
                let low = hex4(s, i + 8).expect("validated");
                (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00), 12)
            }
            _ => (high, 6),
        };
        let c = char::from_u32(code).expect("validated: no lone surrogates");
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        i += len;
    }
    out.extend_from_slice(&s[i..]);
}

/// The first `"` or `\` in `s`, eight bytes at a time: keys and values are mostly short, too
/// short for memchr's setup to pay off.
#[inline]
fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut at = 0;
    while at + 8 <= s.len() {
        let word = u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
        let found = has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64));
        if found != 0 {
            // The lowest flagged byte is always a true match (borrows only run upwards).
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    s[at..].iter().position(|&c| c == b'"' || c == b'\\').map(|k| at + k)
}

/// The end of a strict JSON number at `i`, unless the tape would read more characters into it.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let from = i + 1;
        i = digits(b, from);
        if i == from {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let from = i;
        i = digits(b, from);
        if i == from {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
        return None;
    }
    Some(i)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// A scalar value at `i` and where it ends; `None` for containers and anything odd.
fn scalar(b: &[u8], i: usize) -> Option<(Slot, usize)> {
    let slot = |tag, start: usize, end: usize| Slot { tag, start: start as u32, end: end as u32, value: Value::None };
    Some(match b.get(i)? {
        b'"' => {
            let (end, escaped) = string_span(b, i + 1)?;
            (slot(if escaped { Tag::Escaped } else { Tag::Text }, i + 1, end), end + 1)
        }
        b'-' | b'0'..=b'9' => {
            let end = number_end(b, i)?;
            (slot(Tag::Number, i, end), end)
        }
        b't' => (slot(Tag::True, i, i), literal(b, i, b"true")?),
        b'f' => (slot(Tag::False, i, i), literal(b, i, b"false")?),
        b'n' => (slot(Tag::Null, i, i), literal(b, i, b"null")?),
        _ => return None,
    })
}

/// Past any strict JSON value at `i` (a field no column reads).
fn skip_value(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    let close = match b.get(i)? {
        b'{' => b'}',
        b'[' => b']',
        _ => return scalar(b, i).map(|(_, end)| end),
    };
    if depth >= 32 {
        return None;
    }
    let mut i = ws(b, i + 1);
    if b.get(i) == Some(&close) {
        return Some(i + 1);
    }
    loop {
        if close == b'}' {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            i = ws(b, string_end(b, i + 1)? + 1);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = ws(b, i + 1);
        }
        i = ws(b, skip_value(b, i, depth + 1)?);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            c if *c == close => return Some(i + 1),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_word_scan_finds_the_first_quote_or_backslash() {
        let mut state = 5u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (state >> 58) as usize;
            let text: Vec<u8> = (0..len)
                .map(|k| {
                    let r = (state >> (k % 50)) as u8;
                    [b'a', b'"', b'\\', 0x80, 0xff, 0x21, 0x5b, 0x00][(r % 8) as usize]
                })
                .collect();
            let naive = text.iter().position(|&c| c == b'"' || c == b'\\');
            assert_eq!(super::quote_or_backslash(&text), naive, "{text:?}");
        }
    }
}
