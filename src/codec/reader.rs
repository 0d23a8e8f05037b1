//! The cursor every decoder reads through.

use bytes::Bytes;
use bytestring::ByteString;

use super::error::{DecodeError, ErrorKind, Warning};
use super::format as fc;

/// How strictly to decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Refuse everything the spec forbids.
    #[default]
    Strict,
    /// Accept what real peers are known to send where it is safe, and record each deviation
    /// as a [`Warning`].
    Lenient,
}

/// Settings shared by every decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecodeOptions {
    /// Strict or lenient.
    pub mode: Mode,
    /// How deeply compounds and described types may nest (each list, map, array or
    /// described value is one level).
    pub max_depth: u32,
}

impl DecodeOptions {
    /// The default nesting limit: deep enough for any real message, shallow enough that
    /// recursion stays far from the stack limit.
    pub const DEFAULT_MAX_DEPTH: u32 = 64;

    /// Strict decoding with the default depth limit.
    pub const STRICT: Self = Self { mode: Mode::Strict, max_depth: Self::DEFAULT_MAX_DEPTH };

    /// Lenient decoding with the default depth limit.
    pub const LENIENT: Self = Self { mode: Mode::Lenient, max_depth: Self::DEFAULT_MAX_DEPTH };
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self::STRICT
    }
}

/// A cursor over one buffer of encoded values.
///
/// Offsets in errors and warnings count from the start of the buffer plus `base`, so a
/// decoder working on a frame body can report offsets in the whole stream. When the
/// reader is built over a [`Bytes`], strings and binaries are returned as slices of it
/// (no copy); over a plain `&[u8]` they are copied.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    src: Option<&'a Bytes>,
    pos: usize,
    end: usize,
    base: usize,
    depth: u32,
    opts: DecodeOptions,
    warnings: Vec<Warning>,
    /// Bytes a lenient read has skipped so far (extra bytes at the end of a compound).
    skipped: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8], opts: DecodeOptions) -> Self {
        Self {
            buf,
            src: None,
            pos: 0,
            end: buf.len(),
            base: 0,
            depth: 0,
            opts,
            warnings: Vec::new(),
            skipped: 0,
        }
    }

    /// A reader over `bytes` whose strings and binaries share its storage.
    pub fn from_bytes(bytes: &'a Bytes, opts: DecodeOptions) -> Self {
        let mut r = Self::new(bytes.as_ref(), opts);
        r.src = Some(bytes);
        r
    }

    /// Reports offsets as `base + position`.
    pub fn with_base(mut self, base: usize) -> Self {
        self.base = base;
        self
    }

    /// The options in force.
    #[inline]
    pub fn options(&self) -> DecodeOptions {
        self.opts
    }

    /// Position from the start of the buffer (without `base`).
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Position as reported in errors (with `base`).
    #[inline]
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes left before the current limit (the end of the buffer or of the compound
    /// being read).
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Whether the current limit has been reached.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Warnings recorded so far (lenient mode only).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Takes the warnings recorded so far.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }

    /// The whole buffer the reader works on.
    pub(crate) fn buffer(&self) -> &'a [u8] {
        self.buf
    }

    #[cold]
    pub(crate) fn error(&self, kind: ErrorKind) -> DecodeError {
        DecodeError::new(self.offset(), kind)
    }

    #[cold]
    pub(crate) fn error_at(&self, pos: usize, kind: ErrorKind) -> DecodeError {
        DecodeError::new(self.base + pos, kind)
    }

    /// A deviation from the spec at `pos`: an error in strict mode, a warning (and `Ok`)
    /// in lenient mode.
    pub(crate) fn deviation(
        &mut self,
        pos: usize,
        kind: ErrorKind,
        action: &'static str,
    ) -> Result<(), DecodeError> {
        match self.opts.mode {
            Mode::Strict => Err(self.error_at(pos, kind)),
            Mode::Lenient => {
                self.warnings.push(Warning { offset: self.base + pos, kind, action });
                Ok(())
            }
        }
    }

    #[inline]
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.remaining() < n {
            return Err(self.error(ErrorKind::Truncated { needed: n, available: self.remaining() }));
        }
        Ok(())
    }

    /// The next byte, not consumed.
    #[inline]
    pub fn peek_u8(&self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf[self.pos])
    }

    /// The bytes left before the current limit, not consumed.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..self.end]
    }

    /// Consumes `n` bytes already checked with [`Reader::rest`].
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Reads `n` bytes.
    #[inline]
    pub fn read_slice(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.need(n)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads `N` bytes into an array.
    #[inline]
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.read_slice(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads one byte.
    #[inline]
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// Reads a big-endian u16.
    #[inline]
    pub fn read_u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u32.
    #[inline]
    pub fn read_u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    /// Reads a big-endian u64.
    #[inline]
    pub fn read_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.read_array()?))
    }

    /// `slice` (which must lie inside this reader's buffer) as [`Bytes`]: a shared slice
    /// when the reader is over a `Bytes`, otherwise a copy.
    #[inline]
    pub(crate) fn to_bytes(&self, slice: &'a [u8]) -> Bytes {
        match self.src.and_then(|b| offset_within(b, slice).map(|at| (b, at))) {
            Some((b, at)) if !slice.is_empty() => b.slice(at..at + slice.len()),
            _ => Bytes::copy_from_slice(slice),
        }
    }

    /// Checks UTF-8 and returns the string as shared storage. In lenient mode invalid
    /// sequences are replaced (U+FFFD) and a warning is recorded.
    pub(crate) fn make_string(
        &mut self,
        pos: usize,
        slice: &'a [u8],
    ) -> Result<ByteString, DecodeError> {
        // `try_from` checks UTF-8 once; an error hands the bytes back for the lenient path.
        match ByteString::try_from(self.to_bytes(slice)) {
            Ok(s) => Ok(s),
            Err(_) => {
                self.deviation(pos, ErrorKind::InvalidUtf8, "replaced invalid UTF-8 with U+FFFD")?;
                Ok(ByteString::from(String::from_utf8_lossy(slice).into_owned()))
            }
        }
    }

    /// Checks that a symbol is ASCII. In lenient mode a symbol that is valid UTF-8 but not
    /// ASCII is accepted with a warning.
    pub(crate) fn make_symbol(
        &mut self,
        pos: usize,
        slice: &'a [u8],
    ) -> Result<ByteString, DecodeError> {
        if !slice.is_ascii() {
            self.deviation(pos, ErrorKind::InvalidSymbol, "kept the symbol as UTF-8")?;
        }
        self.make_string(pos, slice)
    }

    /// Records a warning found by a nested decoder.
    pub(crate) fn push_warning(&mut self, w: Warning) {
        self.warnings.push(w);
    }

    /// Enters a nesting level, refusing to go past the depth limit.
    #[inline]
    pub(crate) fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= self.opts.max_depth {
            return Err(self.error(ErrorKind::DepthLimit(self.opts.max_depth)));
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves a nesting level.
    #[inline]
    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Reads the size and count of a list, map or array whose constructor `code` was
    /// just read, checks them against the bytes present, and narrows the reader to the
    /// compound's elements. Returns the count and the limit to restore with
    /// [`Reader::close_compound`].
    ///
    /// `min_elem` is the least number of bytes one element can take (1 for lists and maps,
    /// where every element has a constructor).
    #[inline]
    pub(crate) fn open_compound(&mut self, code: u8) -> Result<(u32, Compound), DecodeError> {
        let start = self.pos;
        let (size, count, count_width) = match code {
            fc::LIST0 => {
                let c = Compound { outer_end: self.end, start, skipped: self.skipped };
                self.end = self.pos;
                return Ok((0, c));
            }
            fc::LIST8 | fc::MAP8 | fc::ARRAY8 => {
                let size = u32::from(self.read_u8()?);
                if size < 1 {
                    return Err(self.error_at(start, ErrorKind::SizeTooSmall { size, minimum: 1 }));
                }
                self.need(size as usize)?;
                (size, u32::from(self.read_u8()?), 1usize)
            }
            _ => {
                let size = self.read_u32()?;
                if size < 4 {
                    return Err(self.error_at(start, ErrorKind::SizeTooSmall { size, minimum: 4 }));
                }
                self.need(size as usize)?;
                (size, self.read_u32()?, 4usize)
            }
        };
        let body = size as usize - count_width;
        // Every list or map element has at least a one-byte constructor; arrays are
        // checked against their element width by the array decoder.
        if !matches!(code, fc::ARRAY8 | fc::ARRAY32) && count as usize > body {
            return Err(self.error_at(start, ErrorKind::CountExceedsSize { count, bytes: body }));
        }
        if matches!(code, fc::MAP8 | fc::MAP32) && count % 2 != 0 {
            return Err(self.error_at(start, ErrorKind::OddMapCount(count)));
        }
        let c = Compound { outer_end: self.end, start, skipped: self.skipped };
        self.end = self.pos + body;
        Ok((count, c))
    }

    /// Leaves a compound opened with [`Reader::open_compound`]: bytes left inside it are an
    /// error in strict mode and skipped with a warning in lenient mode.
    #[inline]
    pub(crate) fn close_compound(
        &mut self,
        c: Compound,
        within: &'static str,
    ) -> Result<(), DecodeError> {
        let left = self.end - self.pos;
        if left > 0 {
            let pos = self.pos;
            self.deviation(
                pos,
                ErrorKind::TrailingBytes { within, left },
                "skipped the extra bytes",
            )?;
            self.skipped += left;
            self.pos = self.end;
        }
        self.end = c.outer_end;
        Ok(())
    }

    /// Checks one encoded value (constructor included) as strictly as decoding it would,
    /// without building anything: UTF-8 of strings, ASCII of symbols, booleans, chars,
    /// compound sizes and counts, nesting depth. Deviations follow the reader's mode.
    pub fn validate_value(&mut self) -> Result<(), DecodeError> {
        let pos = self.pos;
        let code = self.read_u8()?;
        if code == fc::DESCRIBED {
            self.enter()?;
            self.validate_value()?;
            self.validate_value()?;
            self.leave();
            return Ok(());
        }
        self.validate_body(code, pos)
    }

    /// Part 1, 1.6.23: a map's keys are distinct. `keys` are where the keys of the map
    /// whose compound started at `start` lie in the buffer; the same test as the owned
    /// decoder's, so that every decoder accepts the same maps.
    pub(crate) fn check_distinct_keys(
        &mut self,
        start: usize,
        keys: &[(usize, usize)],
    ) -> Result<(), DecodeError> {
        match self.duplicate_key(keys) {
            Some(key) => self.deviation(start, ErrorKind::DuplicateKey(key), "kept both entries"),
            None => Ok(()),
        }
    }

    /// The first key of the encoded keys at `keys` equal to an earlier one, as the owned
    /// decoder shows it ([`duplicate_key`](super::value::duplicate_key) decides).
    fn duplicate_key(&self, keys: &[(usize, usize)]) -> Option<String> {
        let opts = DecodeOptions { mode: Mode::Lenient, max_depth: self.opts.max_depth };
        let bytes = |&(s, e): &(usize, usize)| self.buf.get(s..e).unwrap_or_default();
        let refs: Option<smallvec::SmallVec<[super::ValueRef<'_>; 16]>> = keys
            .iter()
            .map(|k| super::ValueRef::read(&mut Reader::new(bytes(k), opts)).ok())
            .collect();
        match refs {
            Some(refs) => super::value::duplicate_key(&refs),
            // A key the borrowed reader cannot show (text with invalid UTF-8, kept by a
            // lenient decode) is compared as the owned decoder sees it.
            None => {
                let pairs: Vec<(super::Value, super::Value)> = keys
                    .iter()
                    .filter_map(|k| super::Value::decode_with(bytes(k), opts).ok())
                    .map(|k| (k, super::Value::Null))
                    .collect();
                super::value::first_duplicate_key(&pairs).map(crate::inspect::render)
            }
        }
    }

    /// Checks what follows constructor `code`, read at `pos`.
    pub(crate) fn validate_body(&mut self, code: u8, pos: usize) -> Result<(), DecodeError> {
        match code {
            fc::BOOLEAN => {
                let b = self.read_u8()?;
                if b > 1 {
                    self.deviation(pos + 1, ErrorKind::InvalidBoolean(b), "read as true")?;
                }
            }
            fc::CHAR => {
                let c = self.read_u32()?;
                if char::from_u32(c).is_none() {
                    self.deviation(pos, ErrorKind::InvalidChar(c), "replaced with U+FFFD")?;
                }
            }
            fc::STR8 | fc::STR32 | fc::SYM8 | fc::SYM32 => {
                let n = if matches!(code, fc::STR8 | fc::SYM8) {
                    usize::from(self.read_u8()?)
                } else {
                    self.read_u32()? as usize
                };
                let s = self.read_slice(n)?;
                // ASCII is valid UTF-8: the common case needs only the cheap check.
                let ascii = s.is_ascii();
                if matches!(code, fc::SYM8 | fc::SYM32) && !ascii {
                    self.deviation(pos, ErrorKind::InvalidSymbol, "kept the symbol as UTF-8")?;
                }
                if !ascii && std::str::from_utf8(s).is_err() {
                    self.deviation(
                        pos,
                        ErrorKind::InvalidUtf8,
                        "replaced invalid UTF-8 with U+FFFD",
                    )?;
                }
            }
            fc::LIST0 | fc::LIST8 | fc::LIST32 => {
                self.enter()?;
                let (count, c) = self.open_compound(code)?;
                for _ in 0..count {
                    self.validate_value()?;
                }
                self.close_compound(c, fc::name(code).unwrap_or("list"))?;
                self.leave();
            }
            fc::MAP8 | fc::MAP32 => {
                self.enter()?;
                let (count, c) = self.open_compound(code)?;
                let start = c.start;
                // Where each key lies, to look for duplicates once the map is known valid.
                let mut keys: smallvec::SmallVec<[(usize, usize); 16]> = smallvec::SmallVec::new();
                for i in 0..count {
                    let at = self.pos;
                    self.validate_value()?;
                    if i % 2 == 0 {
                        keys.push((at, self.pos));
                    }
                }
                self.close_compound(c, fc::name(code).unwrap_or("map"))?;
                self.leave();
                self.check_distinct_keys(start, &keys)?;
            }
            fc::ARRAY8 | fc::ARRAY32 => {
                self.enter()?;
                let (count, c) = self.open_compound(code)?;
                let mut epos = self.pos;
                let mut elem = self.read_u8()?;
                if elem == fc::DESCRIBED {
                    self.validate_value()?;
                    epos = self.pos;
                    elem = self.read_u8()?;
                }
                crate::codec::check_array_count(self, &c, elem, count)?;
                for _ in 0..count {
                    self.validate_body(elem, epos)?;
                }
                self.close_compound(c, fc::name(code).unwrap_or("array"))?;
                self.leave();
            }
            fc::VBIN8 => {
                let n = usize::from(self.read_u8()?);
                self.read_slice(n)?;
            }
            fc::VBIN32 => {
                let n = self.read_u32()? as usize;
                self.read_slice(n)?;
            }
            _ => match fc::fixed_width(code) {
                Some(n) => {
                    self.read_slice(n)?;
                }
                None => return Err(self.error_at(pos, ErrorKind::UnknownFormatCode(code))),
            },
        }
        Ok(())
    }

    /// Skips one encoded value (constructor included) without decoding its content,
    /// checking only that its declared extent lies inside the buffer. Returns the raw bytes.
    pub fn skip_value(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let code = self.read_u8()?;
        if code == fc::DESCRIBED {
            self.enter()?;
            let r = self.skip_value().and_then(|_| self.skip_value());
            self.leave();
            r?;
        } else {
            self.skip_body(code)?;
        }
        Ok(&self.buf[start..self.pos])
    }

    /// Skips the bytes that follow constructor `code`.
    pub(crate) fn skip_body(&mut self, code: u8) -> Result<(), DecodeError> {
        let n = match code {
            fc::VBIN8 | fc::STR8 | fc::SYM8 | fc::LIST8 | fc::MAP8 | fc::ARRAY8 => {
                usize::from(self.read_u8()?)
            }
            fc::VBIN32 | fc::STR32 | fc::SYM32 | fc::LIST32 | fc::MAP32 | fc::ARRAY32 => {
                self.read_u32()? as usize
            }
            _ => match fc::fixed_width(code) {
                Some(n) => n,
                None => return Err(self.error_at(self.pos - 1, ErrorKind::UnknownFormatCode(code))),
            },
        };
        self.read_slice(n)?;
        Ok(())
    }
}

/// Bookkeeping for a compound being read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compound {
    outer_end: usize,
    pub(crate) start: usize,
    /// The reader's skipped bytes when the compound was opened.
    skipped: usize,
}

impl Compound {
    /// The bytes read since the compound's constructor that a re-encoding keeps: what the
    /// reader has consumed from `start` (plus the constructor byte before it), less what a
    /// lenient read skipped in between.
    pub(crate) fn kept_since_constructor(&self, r: &Reader<'_>) -> usize {
        r.pos - self.start + 1 - (r.skipped - self.skipped)
    }
}

/// Where `inner` starts inside `outer`, if it lies wholly inside it (pointer arithmetic on
/// addresses only; nothing is dereferenced).
pub(crate) fn offset_within(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (start.checked_add(inner.len())? <= outer.len()).then_some(start)
}
