//! Reading a fuzz input as a stream of small values, and writing one (for
//! the seeds). Every byte string reads as something: a value that runs past
//! the end reads as zeros, so the fuzzer never wastes an input on a parse
//! error.

/// Reads values off the front of a fuzz input.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// What is left, all of it.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    /// One byte; 0 at the end.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_le_bytes(b)
    }

    /// A number, short when small: a byte below `0xf0` is its value; a
    /// byte `0xf0 + k` up to `0xfe` is 2^(8 + 4k) - 1 (a round limit, up to
    /// `u64::MAX`); `0xff` is followed by eight little-endian bytes. Ids the
    /// broker hands out are small, so a one-byte number names a real one.
    pub fn num(&mut self) -> u64 {
        match self.u8() {
            b @ 0..0xf0 => u64::from(b),
            0xff => {
                let mut b = [0; 8];
                let got = self.bytes(8);
                b[..got.len()].copy_from_slice(got);
                u64::from_le_bytes(b)
            }
            b => u64::MAX >> (56 - 4 * u32::from(b - 0xf0)),
        }
    }
}

/// Writes values as [`Reader`] reads them.
#[derive(Debug, Default)]
pub struct Writer {
    /// What was written.
    pub data: Vec<u8>,
}

impl Writer {
    /// Appends raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.data.extend_from_slice(bytes);
        self
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.data.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a number as [`Reader::num`] reads it.
    pub fn num(&mut self, v: u64) -> &mut Self {
        if v < 0xf0 {
            self.u8(v as u8)
        } else {
            self.u8(0xff).bytes(&v.to_le_bytes())
        }
    }
}
