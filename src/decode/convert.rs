//! Exact conversions arrow-json does not do the way a stream engine needs:
//! event times from RFC 3339 strings *or* epoch milliseconds (numbers or digit strings), and
//! decimals that refuse to lose digits instead of cutting them off.

use chrono::Utc;
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;

use crate::Millis;

/// The event times Osprey takes: years 0000 to 9999 as RFC 3339 writes them, with a day to
/// spare at the end so that every window end is printable too.
pub const EVENT_TIME_RANGE: std::ops::RangeInclusive<Millis> = -62_167_219_200_000..=253_402_214_400_000;

/// Epoch milliseconds from a JSON value decoded as text.
pub fn parse_timestamp(text: &str) -> Result<Millis, String> {
    let ms = parse_timestamp_unchecked(text)?;
    if !EVENT_TIME_RANGE.contains(&ms) {
        return Err(format!("event time `{}` is outside the years 0000 to 9999-12-30", text.trim()));
    }
    Ok(ms)
}

fn parse_timestamp_unchecked(text: &str) -> Result<Millis, String> {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|_| format!("epoch milliseconds `{t}` out of range"));
    }
    if let Some(ms) = rfc3339_utc(t.as_bytes()) {
        return Ok(ms);
    }
    string_to_datetime(&Utc, t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("`{t}` is neither an RFC 3339 time nor epoch milliseconds"))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the shape nearly every event time has, without the general
/// parser (a tenth of a replay's time went there). `None` for anything else, valid or not, which
/// the general parser then decides; where both read a text they agree (tested).
fn rfc3339_utc(t: &[u8]) -> Option<Millis> {
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || t[10] != b'T' || t[13] != b':' || t[16] != b':' || t.last() != Some(&b'Z') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        t[range].iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + (b - b'0') as i64))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = &t[19..t.len() - 1];
    let millis = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) => {
            digits.iter().take(3).chain(b"000".iter()).take(3).fold(0, |n, &b| n * 10 + (b - b'0') as i64)
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// An integer of a column of the integer type `ty` from its JSON text ([`parse_integer`] with
/// the type's range and name).
pub fn parse_integer_of(text: &str, ty: crate::jobfile::ColumnType) -> Result<i128, String> {
    use crate::jobfile::ColumnType;
    match ty {
        ColumnType::Int32 => parse_integer(text, i32::MIN as i128, i32::MAX as i128, "int32"),
        ColumnType::Int64 => parse_integer(text, i64::MIN as i128, i64::MAX as i128, "int64"),
        ColumnType::UInt64 => parse_integer(text, 0, u64::MAX as i128, "uint64"),
        other => unreachable!("not an integer column type: {other:?}"),
    }
}

/// An integer of a declared integer column from its JSON text, within `[min, max]`. A number
/// with a fraction (`200.5`) is refused; one that is whole (`200.0`, `2e2`) is its value.
pub fn parse_integer(text: &str, min: i128, max: i128, type_name: &str) -> Result<i128, String> {
    let t = text.trim();
    let value = match t.parse::<i64>() {
        Ok(n) => n as i128,
        Err(_) => match parse_decimal(t, 38, 0) {
            Ok(n) => n,
            Err(_) if t.parse::<f64>().is_ok() && t.bytes().any(|b| b.is_ascii_digit()) => {
                return Err(format!("`{t}` is not a whole number; {type_name} would change its value"))
            }
            Err(_) => return Err(format!("`{t}` is not an integer")),
        },
    };
    if value < min || value > max {
        return Err(format!("`{t}` is out of the range of {type_name}"));
    }
    Ok(value)
}

/// The unscaled `i128` of a decimal with `scale` digits after the point, from its JSON text
/// (`"12.5"`, `12.50`, `1.25e1`). Digits beyond the scale must be zero: money is never rounded
/// silently.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let t = text.trim();
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| format!("`{t}` is not a number"))?),
        None => (t, 0),
    };
    let (negative, body) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{t}` is not a decimal number"));
    }
    // value = digits × 10^(exp − frac_len); we want value × 10^scale.
    let digits: String = format!("{int_part}{frac_part}");
    let shift = exp - frac_part.len() as i32 + scale as i32;
    let digits = digits.trim_start_matches('0');
    let mut value: i128 = 0;
    let kept = if shift >= 0 {
        digits
    } else {
        let cut = (-shift) as usize;
        let keep = digits.len().saturating_sub(cut);
        if digits[keep..].bytes().any(|b| b != b'0') {
            return Err(format!("`{t}` has more than {scale} decimal places; decimal({precision},{scale}) would change its value"));
        }
        &digits[..keep]
    };
    for b in kept.bytes() {
        value = value.checked_mul(10).and_then(|v| v.checked_add((b - b'0') as i128)).ok_or_else(|| overflow(t, precision, scale))?;
    }
    for _ in 0..shift.max(0) {
        value = value.checked_mul(10).ok_or_else(|| overflow(t, precision, scale))?;
    }
    if value >= 10i128.pow(precision as u32) {
        return Err(overflow(t, precision, scale));
    }
    Ok(if negative { -value } else { value })
}

fn overflow(t: &str, precision: u8, scale: i8) -> String {
    format!("`{t}` does not fit decimal({precision},{scale})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_from_text_and_millis() {
        assert_eq!(parse_timestamp("2026-01-05T09:00:00Z").unwrap(), 1_767_603_600_000);
        assert_eq!(parse_timestamp("2026-01-05T10:00:00.250+01:00").unwrap(), 1_767_603_600_250);
        assert_eq!(parse_timestamp("1767603600000").unwrap(), 1_767_603_600_000);
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("").is_err());
        // Past what RFC 3339 can write (a window end in year 10000 could not be printed).
        assert!(parse_timestamp("9999-12-31T12:00:00Z").unwrap_err().contains("outside the years"));
        assert!(parse_timestamp("253402300799999").is_err());
        assert!(parse_timestamp("9999-12-30T23:59:59Z").is_ok());
    }

    /// The RFC 3339 shortcut reads every text the general parser reads alike, and leaves the
    /// rest (impossible dates, other shapes) to it.
    #[test]
    fn the_rfc3339_shortcut_agrees_with_the_general_parser() {
        let mut state = 3u64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let fractions = ["", ".5", ".02", ".123", ".1239", ".000000001", ".", ".1234567890", ".x"];
        let mut shortcut = 0;
        for _ in 0..20_000 {
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
                [0, 1, 1600, 1900, 1969, 1970, 2000, 2024, 2026, 2100, 9999][next(11) as usize],
                next(14),
                next(33),
                next(26),
                next(62),
                next(62),
                fractions[next(fractions.len() as u64) as usize]
            );
            let general = string_to_datetime(&Utc, &text).map(|d| d.timestamp_millis()).ok();
            if let Some(ms) = rfc3339_utc(text.as_bytes()) {
                shortcut += 1;
                assert_eq!(Some(ms), general, "{text}");
            }
        }
        assert!(shortcut > 5_000, "{shortcut}");
        for other in ["2026-01-05 09:00:00Z", "2026-01-05T09:00:00+01:00", "2026-01-05T09:00:00z", "2026-02-29T00:00:00Z"] {
            assert_eq!(rfc3339_utc(other.as_bytes()), None, "{other}");
        }
        assert_eq!(rfc3339_utc(b"2024-02-29T23:59:59.999Z"), Some(1_709_251_199_999));
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.5", 18, 4), Ok(125_000));
        assert_eq!(parse_decimal("-0.0001", 18, 4), Ok(-1));
        assert_eq!(parse_decimal("1.25e1", 18, 4), Ok(125_000));
        assert_eq!(parse_decimal("3.140000", 18, 4), Ok(31_400));
        assert_eq!(parse_decimal("7", 18, 0), Ok(7));
        assert!(parse_decimal("1.23456", 18, 4).unwrap_err().contains("more than 4 decimal places"));
        assert!(parse_decimal("123456", 5, 2).unwrap_err().contains("does not fit"));
        assert!(parse_decimal("1.2.3", 18, 4).is_err());
        assert!(parse_decimal("abc", 18, 4).is_err());
    }
}
