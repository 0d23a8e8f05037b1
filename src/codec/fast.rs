//! A cursor for fast paths: it reads only the common encodings, answers `None` for
//! anything else (including anything malformed), and never builds an error. Callers fall
//! back to the general [`Reader`](super::Reader), which accepts the rest and reports
//! errors with their offsets; so a fast path changes speed, never results.

use super::format as fc;

/// The fast cursor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fast<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Fast<'a> {
    #[inline(always)]
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(u64::from_be_bytes(a))
    }

    /// `0x00 0x53 <code>`: a small-ulong descriptor; returns the code.
    #[inline(always)]
    pub(crate) fn small_descriptor(&mut self) -> Option<u8> {
        match *self.b.get(self.i..self.i + 3)? {
            [fc::DESCRIBED, fc::SMALLULONG, code] => {
                self.i += 3;
                Some(code)
            }
            _ => None,
        }
    }

    /// A list header (list0, list8, list32) whose size fits the bytes present and whose
    /// count fits its size; returns the count and the end of the list.
    #[inline(always)]
    pub(crate) fn list(&mut self) -> Option<(u32, usize)> {
        self.compound(Some(fc::LIST0), fc::LIST8, fc::LIST32)
    }

    /// A map header (map8, map32), likewise; the count is of keys and values together.
    #[inline(always)]
    pub(crate) fn map(&mut self) -> Option<(u32, usize)> {
        let (count, end) = self.compound(None, fc::MAP8, fc::MAP32)?;
        (count % 2 == 0).then_some((count, end))
    }

    #[inline(always)]
    fn compound(&mut self, zero: Option<u8>, small: u8, large: u8) -> Option<(u32, usize)> {
        let code = self.u8()?;
        let (size, count, width) = if Some(code) == zero {
            return Some((0, self.i));
        } else if code == small {
            let size = usize::from(self.u8()?);
            let count = u32::from(*self.b.get(self.i)?);
            (size, count, 1)
        } else if code == large {
            let size = self.u32()? as usize;
            let count = u32::from_be_bytes(self.b.get(self.i..self.i + 4)?.try_into().ok()?);
            (size, count, 4)
        } else {
            return None;
        };
        let end = self.i.checked_add(size)?;
        if size < width || end > self.b.len() || count as usize > size - width {
            return None;
        }
        self.i += width;
        Some((count, end))
    }

    /// A uint or null.
    #[inline(always)]
    pub(crate) fn opt_uint(&mut self) -> Option<Option<u32>> {
        Some(match self.u8()? {
            fc::NULL => None,
            fc::UINT0 => Some(0),
            fc::SMALLUINT => Some(u32::from(self.u8()?)),
            fc::UINT => Some(self.u32()?),
            _ => return None,
        })
    }

    /// A boolean or null.
    #[inline(always)]
    pub(crate) fn opt_bool(&mut self) -> Option<Option<bool>> {
        Some(match self.u8()? {
            fc::NULL => None,
            fc::TRUE => Some(true),
            fc::FALSE => Some(false),
            fc::BOOLEAN => match self.u8()? {
                0 => Some(false),
                1 => Some(true),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// A ubyte or null.
    #[inline(always)]
    pub(crate) fn opt_ubyte(&mut self) -> Option<Option<u8>> {
        Some(match self.u8()? {
            fc::NULL => None,
            fc::UBYTE => Some(self.u8()?),
            _ => return None,
        })
    }

    /// A binary or null.
    #[inline(always)]
    pub(crate) fn opt_binary(&mut self) -> Option<Option<&'a [u8]>> {
        Some(match self.u8()? {
            fc::NULL => None,
            fc::VBIN8 => {
                let n = usize::from(self.u8()?);
                Some(self.take(n)?)
            }
            fc::VBIN32 => {
                let n = self.u32()? as usize;
                Some(self.take(n)?)
            }
            _ => return None,
        })
    }

    /// A string, symbol or binary's bytes after its constructor `code`.
    #[inline(always)]
    pub(crate) fn sized(&mut self, code: u8) -> Option<&'a [u8]> {
        let n = match code {
            fc::VBIN8 | fc::STR8 | fc::SYM8 => usize::from(self.u8()?),
            _ => self.u32()? as usize,
        };
        self.take(n)
    }
}
