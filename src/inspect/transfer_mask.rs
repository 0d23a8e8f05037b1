//! Masking credentials in a message that several transfers carry.
//!
//! A transfer after a delivery's first starts in the middle of its message, often inside a
//! value: read on its own, its bytes could only be scanned as undecoded bytes are, which
//! masks past a value's end (a null after a string is `@`, a printable byte). So the
//! delivery's payload is walked as it comes, transfer after transfer ([`PayloadWalk`]):
//! the walk knows where each string, symbol and binary starts and ends, even when a
//! transfer cuts it, and masks inside them only, in the light of the bytes of the same
//! value that earlier transfers carried (a token whose mark was in one transfer and its
//! secret in the next).

use super::{find, mask_text_tokens, JWT, SAS_TOKEN, SHARED_ACCESS_KEY};
use crate::codec::format as fc;

/// How much of a value's text is kept to mask the next transfer's part of it: from the
/// last mark of a token still open (up to this much), else a mark's length.
pub(super) const MASK_TAIL: usize = 64 << 10;

/// The longest mark, less one: a mark cut by a transfer's end is found in the next with
/// this much of the text before it.
const MARK_CUT: usize = 22;

/// Where the walk of a delivery's payload is, between transfers.
#[derive(Debug, Default)]
pub(super) struct PayloadWalk {
    /// The bytes of a constructor (and its size, count and an array's element
    /// constructor) that the last transfer cut.
    head: Vec<u8>,
    /// Inside a text (string, symbol, binary): the bytes of it still to come, and its last
    /// bytes seen (masked), for the marks of tokens still open.
    text: Option<(u64, Vec<u8>)>,
    /// Inside a value of no interest: the bytes of it still to come.
    skip: u64,
    /// Inside an array of texts: the elements still to come, and whether each has a
    /// 4-byte size (else 1).
    array: Option<(u64, bool)>,
    /// The values could not be followed (a constructor the spec does not define, an
    /// array of compounds): the rest is scanned as undecoded bytes are, with the last
    /// bytes seen.
    lost: Option<Vec<u8>>,
}

impl PayloadWalk {
    /// Masks the credentials in `payload`, the delivery's next bytes; whether it masked
    /// anything.
    pub(super) fn mask(&mut self, payload: &mut [u8]) -> bool {
        self.walk(Part::Masked(payload))
    }

    /// Walks `payload`, the delivery's next bytes, where nothing is to be masked: no
    /// token's mark is in it, and [`PayloadWalk::open`] said none goes on into it.
    pub(super) fn pass(&mut self, payload: &[u8]) {
        self.walk(Part::Read(payload));
    }

    /// Whether a token may go on into the next bytes (a mark is kept from the last ones).
    pub(super) fn open(&self) -> bool {
        let kept = |tail: &Vec<u8>| tail.len() > MARK_CUT;
        self.text.as_ref().is_some_and(|(_, t)| kept(t)) || self.lost.as_ref().is_some_and(kept)
    }

    /// Whether a mark goes on from the last bytes walked into the first of `payload` (a
    /// mark a transfer's end cut).
    pub(super) fn cut_mark(&self, payload: &[u8]) -> bool {
        let Some(tail) = self.text.as_ref().map(|(_, t)| t).or(self.lost.as_ref()) else {
            return false;
        };
        let mut seam = tail.clone();
        seam.extend_from_slice(&payload[..payload.len().min(MARK_CUT)]);
        [SAS_TOKEN, SHARED_ACCESS_KEY, JWT].iter().any(|m| find(&seam, m).is_some())
    }

    fn walk(&mut self, mut payload: Part<'_>) -> bool {
        let mut masked = false;
        let mut i = 0;
        let len = payload.len();
        while i < len {
            if let Some(tail) = &mut self.lost {
                masked |= payload.text(tail, i..len);
                return masked;
            }
            if let Some((left, tail)) = &mut self.text {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(len - i);
                masked |= payload.text(tail, i..i + n);
                *left -= n as u64;
                if *left == 0 {
                    self.text = None;
                }
                i += n;
                continue;
            }
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(len - i);
                self.skip -= n as u64;
                i += n;
                continue;
            }
            // A value starts here (or its constructor goes on from the last transfer).
            self.head.push(payload.at(i));
            i += 1;
            self.step();
        }
        masked
    }

    /// Reads what [`PayloadWalk::head`] holds, once it is a whole constructor (with its
    /// size), and sets what comes after it.
    fn step(&mut self) {
        let h = &self.head;
        let be32 =
            |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        // An array's elements have no constructor of their own: only their sizes.
        if let Some((count, wide)) = self.array {
            let need = if wide { 4 } else { 1 };
            if h.len() < need {
                return;
            }
            let size = if wide { be32(0) } else { u64::from(h[0]) };
            self.array = (count > 1).then_some((count - 1, wide));
            self.head.clear();
            self.open_text(size);
            return;
        }
        let code = h[0];
        let need = match code {
            fc::VBIN8 | fc::STR8 | fc::SYM8 => 2,
            fc::VBIN32 | fc::STR32 | fc::SYM32 => 5,
            fc::LIST8 | fc::MAP8 => 3,
            fc::LIST32 | fc::MAP32 => 9,
            // An array's header and its elements' constructor.
            fc::ARRAY8 => 4,
            fc::ARRAY32 => 10,
            _ => 1,
        };
        if h.len() < need {
            return;
        }
        match code {
            // The descriptor and the value follow, as values.
            fc::DESCRIBED => {}
            fc::VBIN8 | fc::STR8 | fc::SYM8 => {
                let size = u64::from(h[1]);
                self.head.clear();
                self.open_text(size);
                return;
            }
            fc::VBIN32 | fc::STR32 | fc::SYM32 => {
                let size = be32(1);
                self.head.clear();
                self.open_text(size);
                return;
            }
            // A list's or map's elements follow, as values.
            fc::LIST8 | fc::MAP8 | fc::LIST32 | fc::MAP32 => {}
            fc::ARRAY8 | fc::ARRAY32 => {
                let (count, element) =
                    if code == fc::ARRAY8 { (u64::from(h[2]), h[3]) } else { (be32(5), h[9]) };
                let (size_in_header, after) =
                    if code == fc::ARRAY8 { (u64::from(h[1]), 2u64) } else { (be32(1), 5) };
                self.head.clear();
                match (element, fc::fixed_width(element)) {
                    _ if count == 0 => {}
                    (_, Some(w)) => self.skip = count.saturating_mul(w as u64),
                    (fc::VBIN8 | fc::STR8 | fc::SYM8, _) => self.array = Some((count, false)),
                    (fc::VBIN32 | fc::STR32 | fc::SYM32, _) => self.array = Some((count, true)),
                    // Compounds, arrays or described values as elements: past them by the
                    // array's size (what is left of it after its count and constructor).
                    _ => self.skip = size_in_header.saturating_sub(after),
                }
                return;
            }
            _ => match fc::fixed_width(code) {
                Some(w) => self.skip = w as u64,
                None => self.lost = Some(std::mem::take(&mut self.head)),
            },
        }
        self.head.clear();
    }

    /// A text of `size` bytes starts.
    fn open_text(&mut self, size: u64) {
        if size > 0 {
            self.text = Some((size, Vec::new()));
        }
    }
}

/// The bytes a walk goes through: masked as it goes, or only read.
enum Part<'a> {
    Masked(&'a mut [u8]),
    Read(&'a [u8]),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Masked(b) => b.len(),
            Self::Read(b) => b.len(),
        }
    }

    fn at(&self, i: usize) -> u8 {
        match self {
            Self::Masked(b) => b[i],
            Self::Read(b) => b[i],
        }
    }

    /// The bytes `range` of a text (or of undecoded bytes), after `tail`: masked (whether
    /// anything was), or only kept in `tail` as the next part needs.
    fn text(&mut self, tail: &mut Vec<u8>, range: std::ops::Range<usize>) -> bool {
        match self {
            Self::Masked(b) => mask_after(tail, &mut b[range]),
            Self::Read(b) => {
                let part = &b[range];
                let from = part.len().saturating_sub(MARK_CUT);
                tail.extend_from_slice(&part[from..]);
                let over = tail.len().saturating_sub(MARK_CUT);
                tail.drain(..over);
                false
            }
        }
    }
}

/// Masks `part` (what comes of a text or of undecoded bytes) read after `tail` (what came
/// of it before, masked), and keeps in `tail` what the next part needs; whether it masked
/// anything in `part`.
fn mask_after(tail: &mut Vec<u8>, part: &mut [u8]) -> bool {
    let mut joined = Vec::with_capacity(tail.len() + part.len());
    joined.extend_from_slice(tail);
    joined.extend_from_slice(part);
    mask_text_tokens(&mut joined);
    let after = &joined[tail.len()..];
    let masked = after != part;
    part.copy_from_slice(after);
    // Kept: from the first mark in the run of token characters that ends the text so
    // far (a token there may go on in the next part: a JSON Web Token holds `eyJ` more
    // than once), at most MASK_TAIL; else enough for a mark the end cut.
    let token_char = |b: &u8| (b.is_ascii_graphic() || *b == b' ') && *b != b'"';
    let run = joined.len() - joined.iter().rev().take_while(|b| token_char(b)).count();
    let open = [SAS_TOKEN, SHARED_ACCESS_KEY, JWT]
        .iter()
        .filter_map(|m| find(&joined[run..], m).map(|at| run + at))
        .min()
        .filter(|&at| joined.len() - at <= MASK_TAIL);
    let keep = match open {
        Some(at) => joined.len() - at,
        None => MARK_CUT.min(joined.len()),
    };
    joined.drain(..joined.len() - keep);
    *tail = joined;
    masked
}
