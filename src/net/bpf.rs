//! Tiny eBPF programs for tc, loaded with the bpf(2) syscall.
//!
//! Kernels without netem and gact (this project's own machines; see
//! shared/design.md) still have the `bpf` classifier with direct action:
//! the program's return value *is* the verdict. That is enough to drop
//! packets at random or drop them all, in the kernel, per packet:
//!
//! ```text
//! r0 = bpf_get_prandom_u32()        ; helper 7, a fresh u32 per packet
//! if w0 >= THRESHOLD goto +2        ; 32-bit unsigned compare (JMP32)
//! r0 = TC_ACT_SHOT                  ; drop
//! exit
//! r0 = TC_ACT_UNSPEC                ; not dropped: go on to the next filter
//! exit
//! ```
//!
//! THRESHOLD is the loss probability scaled to 2^32, so the program drops
//! a packet with probability THRESHOLD / 2^32. Passing packets return
//! TC_ACT_UNSPEC rather than TC_ACT_OK so that filters after koko's (a
//! mirror, the user's own) still see them.
//!
//! Where to drop matters: a packet dropped on the *sender's* egress comes
//! back to the sending socket as ENOBUFS and is retried, so loss must be
//! applied where packets are received (a veth's ingress on the far end).
//! That choice belongs to the caller; this module only builds and loads.
//!
//! A loaded program lives as long as a file descriptor or an attached
//! filter refers to it: once the filter holds it, the fd can be closed.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// tc verdicts (include/uapi/linux/pkt_cls.h).
pub const TC_ACT_UNSPEC: i32 = -1;
pub const TC_ACT_SHOT: i32 = 2;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode pieces (include/uapi/linux/bpf.h, bpf_common.h).
const BPF_ALU64: u8 = 0x07;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_JGE: u8 = 0x30;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

fn mov_r0(imm: i32) -> Insn {
    Insn {
        code: BPF_ALU64 | BPF_MOV | BPF_K,
        regs: 0,
        off: 0,
        imm,
    }
}

fn exit() -> Insn {
    Insn {
        code: BPF_JMP | BPF_EXIT,
        regs: 0,
        off: 0,
        imm: 0,
    }
}

/// The program that drops each packet with probability `threshold / 2^32`.
pub fn random_drop_program(threshold: u32) -> Vec<Insn> {
    vec![
        Insn {
            code: BPF_JMP | BPF_CALL,
            regs: 0,
            off: 0,
            imm: BPF_FUNC_GET_PRANDOM_U32,
        },
        Insn {
            code: BPF_JMP32 | BPF_JGE | BPF_K,
            regs: 0,
            off: 2,
            // The compare is unsigned on the low 32 bits: the bits of the
            // u32 threshold are what counts.
            imm: threshold as i32,
        },
        mov_r0(TC_ACT_SHOT),
        exit(),
        mov_r0(TC_ACT_UNSPEC),
        exit(),
    ]
}

/// The program that passes every packet on to the next filter.
pub fn pass_program() -> Vec<Insn> {
    vec![mov_r0(TC_ACT_UNSPEC), exit()]
}

/// The program that drops every packet (a blackhole).
pub fn drop_all_program() -> Vec<Insn> {
    vec![mov_r0(TC_ACT_SHOT), exit()]
}

/// A loss percentage (0 to 100) as the program's threshold.
pub fn loss_threshold(loss_pct: f64) -> u32 {
    let p = (loss_pct / 100.0).clamp(0.0, 1.0);
    (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// The attributes of BPF_PROG_LOAD this module uses (the head of union
/// bpf_attr; the kernel accepts a shorter attr as long as it ends there).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Load `program` as a tc classifier (BPF_PROG_TYPE_SCHED_CLS) named
/// `name` (at most 15 bytes, shown by `tc filter show` / bpftool); the
/// returned fd holds it until a filter does.
pub fn load_tc_program(name: &str, program: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: attr points at live, correctly laid out memory for the
    // duration of the call; the kernel copies what it needs.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let errno = nix::errno::Errno::last();
        let verifier = String::from_utf8_lossy(&log);
        let verifier = verifier.trim_end_matches('\0').trim();
        return Err(match errno {
            nix::errno::Errno::ENOSYS => Error::KernelFeature {
                what: format!("loading the tc program '{name}'"),
                feature: "bpf(2) syscall (CONFIG_BPF_SYSCALL)".into(),
            },
            _ if verifier.is_empty() => {
                Error::kernel(format!("loading the tc program '{name}'"), errno)
            }
            _ => Error::Kernel {
                what: format!("loading the tc program '{name}'"),
                cause: format!("the verifier refused it: {verifier}"),
                errno: Some(errno),
            },
        });
    }
    // SAFETY: a fresh fd the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        let p = random_drop_program(0x8000_0000);
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].code, 0x85, "call");
        assert_eq!(p[0].imm, 7, "bpf_get_prandom_u32");
        assert_eq!(p[1].code, 0x36, "jmp32 jge imm");
        assert_eq!(p[1].off, 2);
        assert_eq!(p[1].imm as u32, 0x8000_0000);
        assert_eq!((p[2].code, p[2].imm), (0xb7, TC_ACT_SHOT));
        assert_eq!(p[3].code, 0x95, "exit");
        assert_eq!((p[4].code, p[4].imm), (0xb7, TC_ACT_UNSPEC));
        assert_eq!(drop_all_program(), vec![mov_r0(2), exit()]);
    }

    #[test]
    fn loss_percentages_scale_to_the_u32_range() {
        assert_eq!(loss_threshold(0.0), 0);
        assert_eq!(loss_threshold(50.0), 0x8000_0000);
        assert_eq!(loss_threshold(100.0), u32::MAX);
        assert_eq!(loss_threshold(25.0), 0x4000_0000);
    }

    /// Loading touches no interface: it only asks the verifier. Runs where
    /// bpf(2) is allowed (root); elsewhere it says so.
    #[test]
    fn the_kernel_accepts_both_programs() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: loading BPF programs needs root");
            assert!(
                std::env::var("CI").is_err(),
                "CI runs as root: this must not be skipped"
            );
            return;
        }
        load_tc_program("koko_loss", &random_drop_program(loss_threshold(30.0))).unwrap();
        load_tc_program("koko_blackhole", &drop_all_program()).unwrap();
    }
}
