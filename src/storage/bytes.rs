//! Little-endian fields read one after another from a byte slice, every read bounds-checked:
//! the one reader behind the manifest, log and segment file parsers.

pub(crate) struct LeReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> LeReader<'a> {
    /// A reader positioned at byte `at` of `bytes`.
    pub(crate) fn at(bytes: &'a [u8], at: usize) -> Self {
        LeReader { bytes, at }
    }

    /// The next `N` bytes, or `None` past the end (the position then stays put).
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let word = self.bytes.get(self.at..self.at.checked_add(N)?)?.try_into().ok()?;
        self.at += N;
        Some(word)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// Bytes read so far, counted from the start of the slice.
    pub(crate) fn position(&self) -> usize {
        self.at
    }
}
