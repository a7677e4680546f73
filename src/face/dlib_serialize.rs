//! A cursor over bytes in dlib's portable serialization format (`dlib/serialize.h`): integers,
//! floats, `std::vector`, column matrices and 2-D vectors, with errors that give the byte offset.
//!
//! Only what dlib model files need is decoded; the format is described in
//! `docs/face-models.md`, "dlib's shape predictor". This is an independent reader, not a
//! port.

/// Bit of an integer's control byte that marks a negative value (dlib `pack_int`).
const SIGN_BIT: u8 = 0x80;
/// Bits of an integer's control byte that hold the number of magnitude bytes.
const SIZE_MASK: u8 = 0x0F;
/// Bits of a control byte that dlib leaves at zero; a float whose first byte sets them is in
/// dlib's legacy ASCII format (`deserialize_floating_point` in `dlib/serialize.h`).
const RESERVED_MASK: u8 = 0x70;
/// Most magnitude bytes an integer can have (64-bit values).
const MAX_INT_BYTES: usize = 8;
/// Magnitude bytes allowed for an `int16`, such as a float's exponent (`sizeof(int16)`).
const I16_BYTES: usize = 2;
/// Float exponents with a special meaning (`dlib/float_details.h`: `is_inf`, `is_ninf`, `is_nan`).
const EXPONENT_INF: i16 = 32000;
/// See [`EXPONENT_INF`].
const EXPONENT_NEG_INF: i16 = 32001;
/// See [`EXPONENT_INF`].
const EXPONENT_NAN: i16 = 32002;

/// Errors of decoding dlib-serialized bytes; each names the byte offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The data ends before the value does.
    #[error(
        "dlib data ends at byte {offset} but {needed} more byte(s) are needed; the file is truncated"
    )]
    Truncated {
        /// Offset of the first missing byte.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// An integer's control byte has a byte count of 0 or more than the type holds, or sets
    /// reserved bits.
    #[error("invalid dlib integer control byte 0x{control:02x} at byte {offset}")]
    BadInteger {
        /// Offset of the control byte.
        offset: usize,
        /// The control byte.
        control: u8,
    },
    /// An integer does not fit the type the format expects there.
    #[error("dlib integer at byte {offset} does not fit in {target}")]
    IntegerOutOfRange {
        /// Offset of the control byte.
        offset: usize,
        /// The expected type, such as `"u64"`.
        target: &'static str,
    },
    /// A float is written in dlib's legacy ASCII format, which this reader does not support.
    #[error("dlib float at byte {offset} uses the legacy ASCII format, which is not supported")]
    AsciiFloat {
        /// Offset of the float.
        offset: usize,
    },
    /// A `std::vector` or matrix claims more elements than the remaining bytes could hold.
    #[error(
        "dlib vector at byte {offset} claims {len} elements but only {remaining} bytes follow; \
         the file is truncated or corrupt"
    )]
    TooLong {
        /// Offset of the length.
        offset: usize,
        /// The claimed number of elements.
        len: u64,
        /// Bytes left after the length.
        remaining: usize,
    },
    /// A matrix that should be a column vector has another shape.
    #[error("dlib matrix at byte {offset} is {rows}x{cols}, not a column vector")]
    NotAColumn {
        /// Offset of the matrix header.
        offset: usize,
        /// Rows, as stored (sign removed).
        rows: u64,
        /// Columns, as stored (sign removed).
        cols: u64,
    },
}

/// A forward-only reader of dlib-serialized values from a byte slice.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts reading at the first byte of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Returns the offset of the next byte to read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Returns how many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Reads a signed integer (`int`, `long`, `int64` …: all share one encoding).
    ///
    /// # Errors
    /// `Truncated`, `BadInteger`, or `IntegerOutOfRange` when the magnitude exceeds `i64`.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let offset = self.pos;
        let (negative, magnitude) = self.read_int_parts(MAX_INT_BYTES)?;
        let value = i64::try_from(magnitude)
            .map_err(|_| DecodeError::IntegerOutOfRange { offset, target: "i64" })?;
        Ok(if negative { -value } else { value })
    }

    /// Reads an unsigned integer (`unsigned long`, `uint64` …).
    ///
    /// # Errors
    /// `Truncated`, `BadInteger`, or `IntegerOutOfRange` when the value is negative.
    pub fn read_u64(&mut self) -> Result<u64, DecodeError> {
        let offset = self.pos;
        match self.read_int_parts(MAX_INT_BYTES)? {
            (true, magnitude) if magnitude != 0 => {
                Err(DecodeError::IntegerOutOfRange { offset, target: "u64" })
            }
            (_, magnitude) => Ok(magnitude),
        }
    }

    /// Reads an unsigned integer that is used as an index or count.
    ///
    /// # Errors
    /// As [`Decoder::read_u64`], plus `IntegerOutOfRange` when it does not fit `usize`.
    pub fn read_usize(&mut self) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let value = self.read_u64()?;
        usize::try_from(value)
            .map_err(|_| DecodeError::IntegerOutOfRange { offset, target: "usize" })
    }

    /// Reads an `int16` (at most two magnitude bytes, as dlib requires).
    ///
    /// # Errors
    /// `Truncated`, `BadInteger`, or `IntegerOutOfRange` when the value exceeds `i16`.
    pub fn read_i16(&mut self) -> Result<i16, DecodeError> {
        let offset = self.pos;
        let (negative, magnitude) = self.read_int_parts(I16_BYTES)?;
        let signed = if negative { -i64::from(magnitude as u16) } else { magnitude as i64 };
        i16::try_from(signed).map_err(|_| DecodeError::IntegerOutOfRange { offset, target: "i16" })
    }

    /// Reads a `float`: mantissa (int64) then exponent (int16), value = mantissa · 2^exponent.
    ///
    /// Rounds like dlib's `float_details` conversion: the mantissa is first rounded to `f32`,
    /// then scaled.
    ///
    /// # Errors
    /// `AsciiFloat` for the legacy text format, else the errors of the two integers.
    pub fn read_f32(&mut self) -> Result<f32, DecodeError> {
        let (mantissa, exponent) = self.read_float_parts()?;
        Ok(match special_float(exponent) {
            Some(special) => special as f32,
            None => scale_by_power_of_two(f64::from(mantissa as f32), exponent) as f32,
        })
    }

    /// Reads a `double` (same encoding as [`Decoder::read_f32`]).
    ///
    /// # Errors
    /// As [`Decoder::read_f32`].
    pub fn read_f64(&mut self) -> Result<f64, DecodeError> {
        let (mantissa, exponent) = self.read_float_parts()?;
        Ok(special_float(exponent)
            .unwrap_or_else(|| scale_by_power_of_two(mantissa as f64, exponent)))
    }

    /// Reads the element count of a `std::vector`.
    ///
    /// # Errors
    /// As [`Decoder::read_usize`], plus `TooLong` when the count exceeds the bytes left (every
    /// element takes at least one byte), which keeps corrupt counts from allocating.
    pub fn read_len(&mut self) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let len = self.read_usize()?;
        let remaining = self.remaining();
        if len > remaining {
            return Err(DecodeError::TooLong { offset, len: len as u64, remaining });
        }
        Ok(len)
    }

    /// Reads a `std::vector<T>`, decoding each element with `read_one`.
    ///
    /// # Errors
    /// The length's errors, or the first error of `read_one`.
    pub fn read_vec<T, E: From<DecodeError>>(
        &mut self,
        mut read_one: impl FnMut(&mut Self) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        let len = self.read_len()?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(read_one(self)?);
        }
        Ok(items)
    }

    /// Reads a `matrix<float,0,1>` and appends its elements to `out`; returns the row count.
    ///
    /// # Errors
    /// `NotAColumn` when the stored shape has more than one column, else the errors of its
    /// integers and floats.
    pub fn read_column_f32_into(&mut self, out: &mut Vec<f32>) -> Result<usize, DecodeError> {
        let offset = self.pos;
        // dlib writes -rows, -cols in its current format and rows, cols in the old one.
        let rows = self.read_i64()?.unsigned_abs();
        let cols = self.read_i64()?.unsigned_abs();
        if cols != 1 {
            return Err(DecodeError::NotAColumn { offset, rows, cols });
        }
        let remaining = self.remaining();
        let rows = usize::try_from(rows)
            .ok()
            .filter(|&r| r <= remaining)
            .ok_or(DecodeError::TooLong { offset, len: rows, remaining })?;
        out.reserve(rows);
        for _ in 0..rows {
            out.push(self.read_f32()?);
        }
        Ok(rows)
    }

    /// Reads a `matrix<float,0,1>` into a new vector.
    ///
    /// # Errors
    /// As [`Decoder::read_column_f32_into`].
    pub fn read_column_f32(&mut self) -> Result<Vec<f32>, DecodeError> {
        let mut out = Vec::new();
        self.read_column_f32_into(&mut out)?;
        Ok(out)
    }

    /// Reads a `dlib::vector<float,2>` as `[x, y]`.
    ///
    /// # Errors
    /// The errors of its two floats.
    pub fn read_vector2_f32(&mut self) -> Result<[f32; 2], DecodeError> {
        Ok([self.read_f32()?, self.read_f32()?])
    }

    /// Reads a float's raw mantissa and exponent.
    fn read_float_parts(&mut self) -> Result<(i64, i16), DecodeError> {
        let offset = self.pos;
        let first = *self.bytes.get(offset).ok_or(DecodeError::Truncated { offset, needed: 1 })?;
        if first & RESERVED_MASK != 0 {
            return Err(DecodeError::AsciiFloat { offset });
        }
        Ok((self.read_i64()?, self.read_i16()?))
    }

    /// Reads an integer's sign and magnitude, allowing at most `max_bytes` magnitude bytes.
    #[inline]
    fn read_int_parts(&mut self, max_bytes: usize) -> Result<(bool, u64), DecodeError> {
        let offset = self.pos;
        let control =
            *self.bytes.get(offset).ok_or(DecodeError::Truncated { offset, needed: 1 })?;
        let len = usize::from(control & SIZE_MASK);
        if len == 0 || len > max_bytes || control & RESERVED_MASK != 0 {
            return Err(DecodeError::BadInteger { offset, control });
        }
        let start = offset + 1;
        let Some(magnitude_bytes) = self.bytes.get(start..start + len) else {
            let needed = start + len - self.bytes.len();
            return Err(DecodeError::Truncated { offset: self.bytes.len(), needed });
        };
        let mut le = [0u8; MAX_INT_BYTES];
        le[..len].copy_from_slice(magnitude_bytes);
        self.pos = start + len;
        Ok((control & SIGN_BIT != 0, u64::from_le_bytes(le)))
    }
}

/// Returns the value a special exponent stands for, or `None` for an ordinary exponent.
fn special_float(exponent: i16) -> Option<f64> {
    match exponent {
        EXPONENT_INF => Some(f64::INFINITY),
        EXPONENT_NEG_INF => Some(f64::NEG_INFINITY),
        // dlib reads every exponent from is_nan up as NaN.
        e if e >= EXPONENT_NAN => Some(f64::NAN),
        _ => None,
    }
}

/// Computes `value · 2^exponent` like C's `ldexp`, with exact power-of-two steps.
fn scale_by_power_of_two(value: f64, exponent: i16) -> f64 {
    /// The largest step whose power of two is a normal `f64`.
    const STEP: i32 = 1000;
    let mut exponent = i32::from(exponent);
    let mut value = value;
    while exponent != 0 && value != 0.0 && value.is_finite() {
        let step = exponent.clamp(-STEP, STEP);
        value *= power_of_two(step);
        exponent -= step;
    }
    value
}

/// Returns 2^`exponent` for `exponent` in the normal range of `f64` (−1022..=1023).
fn power_of_two(exponent: i32) -> f64 {
    /// `f64` exponent bias and mantissa width (IEEE 754 binary64).
    const BIAS: i32 = 1023;
    const MANTISSA_BITS: u32 = 52;
    debug_assert!((-1022..=1023).contains(&exponent), "power_of_two: {exponent} out of range");
    f64::from_bits(((exponent + BIAS) as u64) << MANTISSA_BITS)
}

/// A test-only writer of dlib serialization (the inverse of [`Decoder`]) for hand-made data.
#[cfg(test)]
pub(crate) mod encode {
    /// Appends a dlib integer.
    pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
        let magnitude = value.unsigned_abs();
        let len = magnitude.to_le_bytes().iter().rposition(|&b| b != 0).map_or(1, |i| i + 1);
        out.push(len as u8 | if value < 0 { super::SIGN_BIT } else { 0 });
        out.extend_from_slice(&magnitude.to_le_bytes()[..len]);
    }

    /// Appends a finite `f32` exactly, as mantissa · 2^exponent.
    pub(crate) fn float(out: &mut Vec<u8>, value: f32) {
        let bits = value.to_bits();
        let (biased, fraction) = (((bits >> 23) & 0xff) as i64, i64::from(bits & 0x7f_ffff));
        let (mantissa, exponent) = match biased {
            0 => (fraction, -149),
            _ => (fraction | 1 << 23, biased - 150),
        };
        let sign = if value.is_sign_negative() { -1 } else { 1 };
        int(out, sign * mantissa);
        int(out, if mantissa == 0 { 0 } else { exponent });
    }

    /// Appends a `matrix<float,0,1>` in dlib's current format (-rows, -1, values).
    pub(crate) fn column(out: &mut Vec<u8>, values: &[f32]) {
        int(out, -(values.len() as i64));
        int(out, -1);
        values.iter().for_each(|&v| float(out, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(bytes: &[u8]) -> Decoder<'_> {
        Decoder::new(bytes)
    }

    #[test]
    fn integers_from_the_doc() {
        assert_eq!(decoder(&[0x01, 0x00]).read_i64(), Ok(0));
        assert_eq!(decoder(&[0x81, 0x88]).read_i64(), Ok(-136));
        assert_eq!(decoder(&[0x02, 0xf4, 0x01]).read_i64(), Ok(500));
        assert_eq!(decoder(&[0x02, 0xf4, 0x01]).read_u64(), Ok(500));
        let mut d = decoder(&[0x01, 0x0f, 0x02, 0xf4, 0x01]);
        assert_eq!((d.read_usize(), d.read_usize(), d.remaining()), (Ok(15), Ok(500), 0));
    }

    #[test]
    fn integers_use_up_to_eight_little_endian_bytes() {
        let max = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(decoder(&max).read_i64(), Ok(i64::MAX));
        let big = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decoder(&big).read_u64(), Ok(u64::MAX));
        assert_eq!(
            decoder(&big).read_i64(),
            Err(DecodeError::IntegerOutOfRange { offset: 0, target: "i64" })
        );
    }

    #[test]
    fn bad_control_bytes_are_rejected() {
        for control in [0x00, 0x80, 0x09, 0x0f, 0x11] {
            assert_eq!(
                decoder(&[control, 0, 0, 0, 0, 0, 0, 0, 0, 0]).read_i64(),
                Err(DecodeError::BadInteger { offset: 0, control })
            );
        }
        let mut d = decoder(&[0x01, 0x05, 0x03, 0x01, 0x02, 0x03]);
        assert_eq!(d.read_i64(), Ok(5));
        assert_eq!(d.read_i16(), Err(DecodeError::BadInteger { offset: 2, control: 0x03 }));
    }

    #[test]
    fn negative_unsigned_is_rejected() {
        assert_eq!(
            decoder(&[0x81, 0x01]).read_u64(),
            Err(DecodeError::IntegerOutOfRange { offset: 0, target: "u64" })
        );
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert_eq!(decoder(&[]).read_i64(), Err(DecodeError::Truncated { offset: 0, needed: 1 }));
        assert_eq!(
            decoder(&[0x03, 0x4d, 0x38]).read_i64(),
            Err(DecodeError::Truncated { offset: 3, needed: 1 })
        );
        assert_eq!(
            decoder(&[0x03, 0x4d, 0x38, 0xf1]).read_f32(),
            Err(DecodeError::Truncated { offset: 4, needed: 1 })
        );
        assert!(decoder(&[0x81, 0x88, 0x81]).read_column_f32().is_err());
        let full = [0x81, 0x02, 0x81, 0x01, 0x01, 0x01, 0x01, 0x00, 0x01, 0x02, 0x01, 0x00];
        for end in 0..full.len() {
            assert!(decoder(&full[..end]).read_column_f32().is_err(), "prefix {end}");
        }
        assert_eq!(decoder(&full).read_column_f32(), Ok(vec![1.0, 2.0]));
    }

    #[test]
    fn float_from_the_doc() {
        let mut d = decoder(&[0x03, 0x4d, 0x38, 0xf1, 0x81, 0x1d]);
        let value = d.read_f32().unwrap();
        assert_eq!(value, (15_808_589.0_f64 * 2f64.powi(-29)) as f32);
        assert!((value - 0.029446).abs() < 1e-6, "{value}");
        assert_eq!(d.remaining(), 0);
        // leaf0[0] of the 68-point model: −0xcd4563 · 2^−33 ≈ −0.0015661.
        let leaf = decoder(&[0x83, 0x63, 0x45, 0xcd, 0x81, 0x21]).read_f32().unwrap();
        assert!((leaf + 0.0015661).abs() < 1e-7, "{leaf}");
    }

    #[test]
    fn special_and_large_exponents() {
        let with_exponent = |e: [u8; 3]| [0x01, 0x00, e[0], e[1], e[2]];
        let inf = with_exponent([0x02, 0x00, 0x7d]); // 32000
        assert_eq!(decoder(&inf).read_f32(), Ok(f32::INFINITY));
        let ninf = with_exponent([0x02, 0x01, 0x7d]); // 32001
        assert_eq!(decoder(&ninf).read_f64(), Ok(f64::NEG_INFINITY));
        let nan = with_exponent([0x02, 0x02, 0x7d]); // 32002
        assert!(decoder(&nan).read_f32().unwrap().is_nan());
        // 3 · 2^1500 overflows f64; 3 · 2^-1060 is a subnormal f64 (3 · 2^14 units of 2^-1074)
        // and 0 as f32.
        assert_eq!(decoder(&[0x01, 0x03, 0x02, 0xdc, 0x05]).read_f64(), Ok(f64::INFINITY));
        let tiny = [0x01, 0x03, 0x82, 0x24, 0x04];
        assert_eq!(decoder(&tiny).read_f64(), Ok(f64::from_bits(3 << 14)));
        assert_eq!(decoder(&tiny).read_f32(), Ok(0.0));
        assert_eq!(decoder(&[0x81, 0x05, 0x01, 0x02]).read_f32(), Ok(-20.0));
    }

    #[test]
    fn ascii_floats_are_reported() {
        assert_eq!(decoder(b"1.5 ").read_f32(), Err(DecodeError::AsciiFloat { offset: 0 }));
    }

    #[test]
    fn encoder_round_trips() {
        let ints = [0, 1, -1, 255, 256, -136, 500, i64::MAX, -i64::MAX];
        let floats = [0.0, 1.0, -3.75, 0.1, 1e-30, f32::MAX, f32::MIN_POSITIVE, 1e-45];
        let mut bytes = Vec::new();
        ints.iter().for_each(|&v| encode::int(&mut bytes, v));
        floats.iter().for_each(|&v| encode::float(&mut bytes, v));
        let mut d = decoder(&bytes);
        for v in ints {
            assert_eq!(d.read_i64(), Ok(v));
        }
        for v in floats {
            assert_eq!(d.read_f32().map(f32::to_bits), Ok(v.to_bits()), "{v}");
        }
        assert_eq!(d.remaining(), 0);
        let mut zero = Vec::new();
        encode::int(&mut zero, 0);
        assert_eq!(zero, [0x01, 0x00]);
    }

    #[test]
    fn vectors_and_points() {
        let bytes =
            [0x01, 0x02, 0x01, 0x07, 0x01, 0x09, 0x01, 0x01, 0x01, 0x00, 0x81, 0x01, 0x01, 0x00];
        let mut d = decoder(&bytes);
        let items: Result<Vec<u64>, DecodeError> = d.read_vec(|d| d.read_u64());
        assert_eq!(items, Ok(vec![7, 9]));
        assert_eq!(d.read_vector2_f32(), Ok([1.0, -1.0]));
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn absurd_lengths_do_not_allocate() {
        let bytes = [0x04, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x00];
        assert_eq!(
            decoder(&bytes).read_len(),
            Err(DecodeError::TooLong { offset: 0, len: 0x7fff_ffff, remaining: 2 })
        );
        let wide = [0x81, 0x02, 0x81, 0x02, 0x01, 0x00];
        assert_eq!(
            decoder(&wide).read_column_f32(),
            Err(DecodeError::NotAColumn { offset: 0, rows: 2, cols: 2 })
        );
    }
}
