//! File images whose bytes start on a page boundary.
//!
//! A data file is encoded into memory whole before it is stored. When its
//! bytes start on a page boundary, the local store can write them to disk
//! without copying them into the page cache first (`O_DIRECT`, see
//! `local.rs`): in `tributary bench`'s W1 drain on 2 cores that copy was
//! 4 % of the pipeline's CPU samples, and writing without it made the drain
//! about 6 % faster. An [`Image`] is a `Vec`
//! whose first bytes are padding up to the next page boundary, so no unsafe
//! allocation is needed; [`Image::into_bytes`] slices the padding off.
//! Object stores do not care where the bytes start.

use std::io;

use bytes::Bytes;

/// Where file bytes start, and the unit the local store writes directly:
/// 4 KiB suits the logical block size of common disks (512 B or 4 KiB).
pub const PAGE: usize = 4096;

/// A growable file image whose content starts on a [`PAGE`] boundary.
#[derive(Debug, Default)]
pub struct Image {
    buf: Vec<u8>,
    /// Padding before the content.
    start: usize,
}

impl Image {
    /// An empty image with room for `capacity` bytes of content.
    pub fn with_capacity(capacity: usize) -> Self {
        if capacity == 0 {
            return Self::default();
        }
        let mut buf = Vec::with_capacity(capacity + PAGE - 1);
        let start = (PAGE - buf.as_ptr() as usize % PAGE) % PAGE;
        buf.resize(start, 0);
        Self { buf, start }
    }

    /// Bytes of content.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes the image holds in memory (its capacity and padding).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The content.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Makes room for `more` bytes of content, growing by half (the
    /// allocator extends a block in place when it can). When the block
    /// moved, the content is moved within it to the new block's first page
    /// boundary, so an image that outgrew its estimate still starts on a
    /// page.
    fn reserve(&mut self, more: usize) {
        if self.buf.capacity() - self.buf.len() >= more {
            return;
        }
        let content = self.len();
        let wanted = (content + more).max(content + content / 2).max(PAGE);
        // Room for the content and for padding up to a page, wherever the
        // block lands.
        self.buf
            .reserve_exact(wanted + PAGE - 1 - self.start - content);
        let start = (PAGE - self.buf.as_ptr() as usize % PAGE) % PAGE;
        if start != self.start {
            let end = self.buf.len();
            if start > self.start {
                self.buf.resize(start + content, 0);
            }
            self.buf.copy_within(self.start..end, start);
            self.buf.truncate(start + content);
            self.start = start;
        }
    }

    /// Gives back the unused capacity. glibc shrinks a block in place, so
    /// the content stays aligned; an allocator that moves it leaves a
    /// correct image that is merely written through the page cache.
    pub fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }

    /// The content as `Bytes`, without copying it.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.buf).slice(self.start..)
    }
}

impl io::Write for Image {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.reserve(data.len());
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn content_starts_on_a_page_and_survives_into_bytes() {
        let mut image = Image::with_capacity(3 * PAGE);
        assert!(image.is_empty());
        image.write_all(b"PAR1").unwrap();
        image.write_all(&[7; 5000]).unwrap();
        assert_eq!(image.len(), 5004);
        assert_eq!(image.as_slice().as_ptr() as usize % PAGE, 0);
        image.shrink_to_fit();
        let bytes = image.into_bytes();
        assert_eq!(bytes.len(), 5004);
        assert_eq!(&bytes[..4], b"PAR1");
        assert!(bytes[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn an_image_outgrowing_its_capacity_keeps_its_content() {
        let mut image = Image::with_capacity(16);
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for chunk in data.chunks(999) {
            image.write_all(chunk).unwrap();
        }
        assert_eq!(image.as_slice(), &data[..]);
        assert_eq!(
            image.as_slice().as_ptr() as usize % PAGE,
            0,
            "still aligned"
        );
        assert_eq!(&image.into_bytes()[..], &data[..]);
        assert!(Image::with_capacity(0).into_bytes().is_empty());
        // Blocks moved by the allocator land at every offset from a page:
        // the content is moved left and right within them.
        for capacity in [0, 1, 100, 4095, 4096, 5000] {
            let mut image = Image::with_capacity(capacity);
            for (i, chunk) in data.chunks(1 + capacity % 997).enumerate().take(200) {
                image.write_all(chunk).unwrap();
                let written = data.chunks(1 + capacity % 997).take(i + 1).flatten();
                assert!(image.as_slice().iter().eq(written));
                assert_eq!(image.as_slice().as_ptr() as usize % PAGE, 0);
            }
        }
    }
}
