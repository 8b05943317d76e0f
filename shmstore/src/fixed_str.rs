//! [`FixedStr<N>`]: fixed-capacity UTF-8 text that can live in shared memory.

use std::fmt;
use std::ops::Deref;

use crate::layout::{Layout, SharedLayout, TypeKind};

/// UTF-8 text of at most `N` bytes, stored inline and zero-padded: the shared-memory stand-in for
/// `String` in config names, paths and messages.
///
/// Text that does not fit is refused with [`FixedStrError`], never silently cut; use
/// [`FixedStr::truncating`] when cutting at a character boundary is what you want.
///
/// ```
/// use shmstore::FixedStr;
///
/// let name: FixedStr<16> = FixedStr::new("eth0")?;
/// assert_eq!(name, "eth0");
/// assert_eq!(name.len(), 4);
/// assert!(FixedStr::<4>::new("too long").is_err());
/// assert_eq!(FixedStr::<2>::truncating("añ").as_str(), "a"); // never splits a character
/// # Ok::<(), shmstore::FixedStrError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
}

/// Text given to a [`FixedStr`] that it cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixedStrError {
    /// The text is longer than the capacity.
    #[error("text of {len} bytes does not fit in FixedStr<{capacity}>: shorten it, raise the capacity, or use FixedStr::truncating")]
    TooLong {
        /// The text's length in bytes.
        len: usize,
        /// The capacity `N`.
        capacity: usize,
    },
    /// The text contains a NUL byte, which marks the end of a `FixedStr`.
    #[error("text contains a NUL byte at {at}, which FixedStr cannot hold: remove it")]
    ContainsNul {
        /// Byte position of the NUL.
        at: usize,
    },
}

impl<const N: usize> FixedStr<N> {
    /// The capacity in bytes.
    pub const CAPACITY: usize = N;

    /// The empty string.
    pub const fn empty() -> Self {
        FixedStr { bytes: [0; N] }
    }

    /// Copies `s` in, or fails if it is longer than `N` bytes or holds a NUL.
    pub fn new(s: &str) -> Result<Self, FixedStrError> {
        let mut out = Self::empty();
        out.set(s)?;
        Ok(out)
    }

    /// Copies as much of `s` as fits without splitting a character (stopping at a NUL, if any).
    pub fn truncating(s: &str) -> Self {
        let s = s.split('\0').next().unwrap_or("");
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = Self::empty();
        out.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        out
    }

    /// Replaces the contents with `s`; on error the contents are unchanged.
    pub fn set(&mut self, s: &str) -> Result<(), FixedStrError> {
        if s.len() > N {
            return Err(FixedStrError::TooLong { len: s.len(), capacity: N });
        }
        if let Some(at) = s.bytes().position(|b| b == 0) {
            return Err(FixedStrError::ContainsNul { at });
        }
        self.bytes = [0; N];
        self.bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(())
    }

    /// The text. Bytes that are not UTF-8 (only possible if another program wrote the file
    /// directly; the store validates on read) end the text early instead of causing harm.
    pub fn as_str(&self) -> &str {
        let len = self.len();
        match std::str::from_utf8(&self.bytes[..len]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.bytes.iter().position(|&b| b == 0).unwrap_or(N)
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw, zero-padded bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.bytes
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> Deref for FixedStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> AsRef<str> for FixedStr<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = FixedStrError;
    fn try_from(s: &str) -> Result<Self, FixedStrError> {
        Self::new(s)
    }
}

impl<const N: usize> std::str::FromStr for FixedStr<N> {
    type Err = FixedStrError;
    fn from_str(s: &str) -> Result<Self, FixedStrError> {
        Self::new(s)
    }
}

impl<const N: usize> PartialEq<str> for FixedStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for FixedStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// SAFETY: `FixedStr<N>` is `repr(transparent)` over `[u8; N]`: size N, align 1, no padding, no
// pointers, and every byte pattern is memory-safe (`as_str` re-checks UTF-8). `Layout::validate`
// additionally enforces the text invariant (UTF-8, then only NULs).
unsafe impl<const N: usize> SharedLayout for FixedStr<N> {
    const LAYOUT: Layout = Layout::new("FixedStr", N, 1, 1, TypeKind::FixedStr { capacity: N });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let s = FixedStr::<8>::new("12345678").unwrap();
        assert_eq!(s.as_str(), "12345678");
        assert_eq!(FixedStr::<8>::new("123456789"), Err(FixedStrError::TooLong { len: 9, capacity: 8 }));
        assert_eq!(FixedStr::<8>::new("a\0b"), Err(FixedStrError::ContainsNul { at: 1 }));
        assert_eq!(FixedStr::<3>::truncating("日本").as_str(), "日");
        assert!(FixedStr::<0>::new("").unwrap().is_empty());
    }

    #[test]
    fn validation_rules() {
        let layout = FixedStr::<4>::LAYOUT;
        assert!(layout.validate(b"ab\0\0").is_ok());
        assert!(layout.validate(b"abcd").is_ok());
        assert!(layout.validate(b"a\0b\0").is_err());
        assert!(layout.validate(&[0xff, 0, 0, 0]).is_err());
    }

    #[test]
    fn invalid_bytes_never_panic() {
        let s = FixedStr::<4> { bytes: [b'o', b'k', 0xff, b'x'] };
        assert_eq!(s.as_str(), "ok");
    }
}
