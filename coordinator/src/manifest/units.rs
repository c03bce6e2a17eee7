//! Byte sizes ("40GiB", "512 MB", 1073741824) and CPU amounts (0.5 cores → 500 millis).

/// The units a size string may end with, and their multipliers.
pub(crate) const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// The JSON Schema pattern of a size string, kept next to the parser it describes.
pub(crate) const SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)? ?(B|KB|MB|GB|KiB|MiB|GiB|TiB)$";

/// Parses `<decimal> [space] <unit>` exactly (no floating point): "1.5GiB" is 1610612736 bytes,
/// and a size that is not a whole number of bytes ("0.1KiB") is refused.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let expected = || {
        let units: Vec<_> = SIZE_UNITS.iter().map(|(u, _)| *u).collect();
        format!(
            "expected a size like \"40GiB\" or \"512 MB\" (units: {}), found \"{text}\"",
            units.join(", ")
        )
    };
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(expected)?;
    let (number, unit) = text.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, m)| u128::from(*m))
        .ok_or_else(expected)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) {
        return Err(expected());
    }
    // A u64 has at most 20 digits; these bounds keep the exact arithmetic below in a u128.
    if fraction.len() > 18 || whole.len() > 20 {
        return Err(format!("size \"{text}\" is too large or too precise"));
    }
    // Both parts are digits only (checked by `find` above), so these parses cannot fail
    // except on length, which was bounded.
    let whole: u128 = whole.parse().map_err(|_| expected())?;
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 =
        if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| expected())? };
    let numerator = whole
        .checked_mul(scale)
        .and_then(|n| n.checked_add(fraction))
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size \"{text}\" is too large"))?;
    if numerator % scale != 0 {
        return Err(format!("size \"{text}\" is not a whole number of bytes"));
    }
    u64::try_from(numerator / scale).map_err(|_| format!("size \"{text}\" is too large"))
}

/// Cores → thousandths of a core; at least one thousandth.
pub(crate) fn cpu_millis(cores: f64) -> Result<u32, String> {
    // NaN cannot reach here (the readers refuse it), but it must not pass either.
    if cores.is_nan() || cores <= 0.0 {
        return Err(format!("expected a number of cores > 0, found {cores}"));
    }
    let millis = (cores * 1000.0).round();
    if cores < 0.001 {
        return Err(format!("{cores} cores is less than the smallest amount, 0.001"));
    }
    if millis > f64::from(u32::MAX) {
        return Err(format!("{cores} cores is too many"));
    }
    Ok(millis as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("40GiB"), Ok(40 << 30));
        assert_eq!(parse_size("512 MB"), Ok(512_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("0.5KB"), Ok(500));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("0.1KiB").unwrap_err().contains("whole number"));
        assert!(parse_size("40gb").unwrap_err().contains("expected a size"));
        assert!(parse_size("40").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("1.GiB").is_err());
        assert!(parse_size(".5GiB").is_err());
        assert!(parse_size("1  GiB").is_err());
        assert!(parse_size("99999999999999999999TiB").unwrap_err().contains("too large"));
        assert!(parse_size("ü").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(cpu_millis(0.5), Ok(500));
        assert_eq!(cpu_millis(4.0), Ok(4000));
        assert!(cpu_millis(0.0).is_err());
        assert!(cpu_millis(-1.0).is_err());
        assert!(cpu_millis(0.0001).is_err());
        assert!(cpu_millis(1e12).is_err());
    }
}
