//! The classic libpcap file format, written by hand (it is 40 lines).
//!
//! A pcap file is a 24-byte global header followed by one record per
//! packet: a 16-byte record header (timestamp, bytes kept, bytes on the
//! wire) and the bytes kept. Every reader (tcpdump, Wireshark, tshark,
//! scapy) finds the byte order and the timestamp resolution from the magic
//! number, so koko writes in little-endian with the *nanosecond* magic
//! `0xa1b23c4d`: the kernel stamps packets in nanoseconds (SO_TIMESTAMPNS)
//! and nothing is lost by rounding.
//!
//! ```text
//! global header:  magic u32 | major u16 = 2 | minor u16 = 4 | thiszone i32 = 0
//!                 | sigfigs u32 = 0 | snaplen u32 | linktype u32 = 1 (Ethernet)
//! record header:  ts_sec u32 | ts_nsec u32 | incl_len u32 | orig_len u32
//! ```
//!
//! `incl_len` is what the file holds (at most the snaplen); `orig_len` is
//! the frame's length on the wire, which a reader shows as "length" and
//! uses to say a packet was truncated ("[|tcp]").

use std::io::{self, Write};

/// The nanosecond-resolution pcap magic number.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET: each record is an Ethernet frame.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The largest snaplen libpcap accepts (MAXIMUM_SNAPLEN), koko's default.
pub const MAX_SNAPLEN: u32 = 262_144;
/// Size of the global header.
pub const HEADER_LEN: usize = 24;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// A kernel timestamp: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub sec: u64,
    pub nsec: u32,
}

/// Writes a pcap stream into `out`: the header at [`PcapWriter::new`], one
/// record per [`PcapWriter::record`]. Counts what it wrote.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    packets: u64,
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Write the global header for frames of at most `snaplen` bytes.
    pub fn new(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        out.write_all(&header(snaplen))?;
        Ok(PcapWriter {
            out,
            snaplen,
            packets: 0,
            bytes: 0,
        })
    }

    /// Write one frame: `data` is what was kept (cut to the snaplen here
    /// if longer), `orig_len` its length on the wire.
    pub fn record(&mut self, ts: Timestamp, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let kept = &data[..data.len().min(self.snaplen as usize)];
        let incl = kept.len() as u32;
        let mut head = [0u8; RECORD_HEADER_LEN];
        // pcap's seconds field is 32 bits: fine until 2106.
        head[0..4].copy_from_slice(&(ts.sec as u32).to_le_bytes());
        head[4..8].copy_from_slice(&ts.nsec.to_le_bytes());
        head[8..12].copy_from_slice(&incl.to_le_bytes());
        // A frame is never shorter on the wire than what was kept.
        head[12..16].copy_from_slice(&orig_len.max(incl).to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(kept)?;
        self.packets += 1;
        self.bytes += u64::from(orig_len.max(incl));
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Records written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes on the wire of the records written so far (orig_len summed).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flush and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The 24-byte global header.
pub fn header(snaplen: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs: 0, as every modern writer does.
    h[16..20].copy_from_slice(&snaplen.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// Put back the 802.1Q tag the kernel took out of a frame.
///
/// A packet socket receives VLAN-tagged frames *without* the tag when the
/// device (or the stack, in `__netif_receive_skb_core`) moved it into the
/// packet's metadata; the socket reports it in PACKET_AUXDATA
/// (`tp_vlan_tci`, `tp_vlan_tpid`). libpcap re-inserts it after the two MAC
/// addresses, and so does koko, so the file shows the frame as it was on
/// the wire. `tpid` 0 means "not reported": 802.1Q (0x8100).
pub fn insert_vlan_tag(frame: &mut Vec<u8>, tpid: u16, tci: u16) {
    if frame.len() < 12 {
        return;
    }
    let tpid = if tpid == 0 { 0x8100 } else { tpid };
    let mut tag = [0u8; 4];
    tag[0..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..4].copy_from_slice(&tci.to_be_bytes());
    frame.splice(12..12, tag);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_header_says_nanosecond_ethernet_with_the_snaplen() {
        let w = PcapWriter::new(Vec::new(), 1500).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), HEADER_LEN);
        // Little-endian nanosecond magic, as tcpdump reads it.
        assert_eq!(&out[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u16::from_le_bytes([out[4], out[5]]), 2);
        assert_eq!(u16::from_le_bytes([out[6], out[7]]), 4);
        assert_eq!(u32_at(&out, 8), 0);
        assert_eq!(u32_at(&out, 12), 0);
        assert_eq!(u32_at(&out, 16), 1500);
        assert_eq!(u32_at(&out, 20), 1);
    }

    #[test]
    fn records_carry_time_lengths_and_bytes() {
        let mut w = PcapWriter::new(Vec::new(), 100).unwrap();
        let ts = Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789,
        };
        w.record(ts, 60, &[0xaa; 60]).unwrap();
        w.record(
            Timestamp {
                sec: 1_700_000_001,
                nsec: 5,
            },
            3,
            b"xyz",
        )
        .unwrap();
        assert_eq!((w.packets(), w.bytes()), (2, 63));
        let out = w.finish().unwrap();
        assert_eq!(out.len(), HEADER_LEN + 2 * RECORD_HEADER_LEN + 63);
        let r = HEADER_LEN;
        assert_eq!(u32_at(&out, r), 1_700_000_000);
        assert_eq!(u32_at(&out, r + 4), 123_456_789);
        assert_eq!(u32_at(&out, r + 8), 60);
        assert_eq!(u32_at(&out, r + 12), 60);
        assert!(out[r + 16..r + 76].iter().all(|&b| b == 0xaa));
        let r2 = r + 76;
        assert_eq!(u32_at(&out, r2), 1_700_000_001);
        assert_eq!(u32_at(&out, r2 + 4), 5);
        assert_eq!(&out[r2 + 16..], b"xyz");
    }

    /// A frame longer than the snaplen is cut; orig_len keeps its length
    /// on the wire, and the byte count is of the wire.
    #[test]
    fn a_frame_over_the_snaplen_is_cut_and_keeps_its_wire_length() {
        let mut w = PcapWriter::new(Vec::new(), 64).unwrap();
        let frame: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        w.record(Timestamp::default(), 200, &frame).unwrap();
        assert_eq!(w.bytes(), 200);
        let out = w.finish().unwrap();
        let r = HEADER_LEN;
        assert_eq!(u32_at(&out, r + 8), 64);
        assert_eq!(u32_at(&out, r + 12), 200);
        assert_eq!(&out[r + 16..], &frame[..64]);
    }

    #[test]
    fn orig_len_is_never_below_what_was_kept() {
        let mut w = PcapWriter::new(Vec::new(), 64).unwrap();
        w.record(Timestamp::default(), 0, &[1, 2, 3]).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(u32_at(&out, HEADER_LEN + 12), 3);
    }

    #[test]
    fn a_vlan_tag_goes_back_after_the_mac_addresses() {
        let mut frame: Vec<u8> = (0..12).chain([0x08, 0x00, 0x45]).collect();
        insert_vlan_tag(&mut frame, 0, 0x2064);
        assert_eq!(&frame[..12], &(0..12).collect::<Vec<u8>>()[..]);
        assert_eq!(&frame[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&frame[16..], &[0x08, 0x00, 0x45]);
        let mut qinq: Vec<u8> = vec![0; 14];
        insert_vlan_tag(&mut qinq, 0x88a8, 7);
        assert_eq!(&qinq[12..16], &[0x88, 0xa8, 0x00, 0x07]);
        // Too short to hold two MAC addresses: left alone.
        let mut runt = vec![1, 2, 3];
        insert_vlan_tag(&mut runt, 0, 1);
        assert_eq!(runt, vec![1, 2, 3]);
    }

    /// A writer whose output fails reports it (a full disk, a closed pipe).
    #[test]
    fn a_failing_output_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(PcapWriter::new(Full, 10).is_err());
    }
}
