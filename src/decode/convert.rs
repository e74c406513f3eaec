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
    string_to_datetime(&Utc, t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("`{t}` is neither an RFC 3339 time nor epoch milliseconds"))
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
