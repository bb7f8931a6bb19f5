//! v2 devices: the device rules compiled to a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program and attached to the cgroup with `BPF_F_ALLOW_MULTI`, replacing the
//! programs attached before (runc's semantics: attach the new one first, then
//! detach the old ones, so there is no window without a filter).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use tracing::debug;

use crate::devices::{DevKind, Emulator, ACC_ALL};
use crate::error::Error;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// opcode
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble
    pub regs: u8,
    /// jump offset or memory offset
    pub off: i16,
    /// immediate
    pub imm: i32,
}

// opcodes used here
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const JMP_EXIT: u8 = 0x95;

const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Compile an emulated rule set. Registers after the prologue:
/// r2 = device type, r3 = requested access, r4 = major, r5 = minor.
/// Each exception is a block that jumps to the next block on mismatch and
/// returns its verdict on a match; the program ends with the default verdict.
/// Allow-exceptions must cover the whole requested access; deny-exceptions
/// match on any overlap (the kernel's v1 semantics).
pub fn program(emu: &Emulator) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for e in &emu.exceptions {
        // (insn, is a jump to the next block)
        let mut b: Vec<(Insn, bool)> = Vec::new();
        let t = match e.kind {
            DevKind::Block => DEVCG_DEV_BLOCK,
            DevKind::Char => DEVCG_DEV_CHAR,
            DevKind::All => continue, // never an exception
        };
        b.push((insn(JMP_JNE_K, 2, 0, 0, t), true));
        if e.access != ACC_ALL {
            b.push((insn(ALU32_MOV_X, 1, 3, 0, 0), false));
            b.push((insn(ALU32_AND_K, 1, 0, 0, e.access as i32), false));
            if e.allow {
                b.push((insn(JMP_JNE_X, 1, 3, 0, 0), true));
            } else {
                b.push((insn(JMP_JEQ_K, 1, 0, 0, 0), true));
            }
        }
        if let Some(m) = e.major {
            b.push((insn(JMP_JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = e.minor {
            b.push((insn(JMP_JNE_K, 5, 0, 0, m as i32), true));
        }
        b.push((insn(ALU32_MOV_K, 0, 0, 0, i32::from(e.allow)), false));
        b.push((insn(JMP_EXIT, 0, 0, 0, 0), false));
        let len = b.len();
        for (i, (mut ins, jump)) in b.into_iter().enumerate() {
            if jump {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
    }
    p.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(emu.default_allow)));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Run a program in a tiny interpreter (tests only need the opcodes above).
#[cfg(test)]
pub(crate) fn interpret(p: &[Insn], kind: DevKind, major: u32, minor: u32, access: u32) -> u32 {
    let t = if kind == DevKind::Block { 1u64 } else { 2 };
    let ctx = [
        ((u64::from(access)) << 16) | t,
        u64::from(major),
        u64::from(minor),
    ];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = p[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let imm = i.imm as i64 as u64;
        pc += 1;
        match i.code {
            LDX_MEM_W => r[dst] = ctx[(i.off / 4) as usize] & 0xffff_ffff,
            ALU32_AND_K => r[dst] = (r[dst] & imm) & 0xffff_ffff,
            ALU32_RSH_K => r[dst] = (r[dst] & 0xffff_ffff) >> imm,
            ALU32_MOV_K => r[dst] = imm & 0xffff_ffff,
            ALU32_MOV_X => r[dst] = r[src] & 0xffff_ffff,
            JMP_JEQ_K if r[dst] == imm => pc += i.off as usize,
            JMP_JNE_K if r[dst] != imm => pc += i.off as usize,
            JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
            JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X => {}
            JMP_EXIT => return r[0] as u32,
            c => panic!("unknown opcode {c:#x}"),
        }
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
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
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2). Callers pass a `#[repr(C)]` prefix of `union bpf_attr` for `cmd`
/// whose pointer fields (if any) point at memory that outlives the call.
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed repr(C) struct of exactly
    // size_of::<T>() bytes, which is the size we pass; the kernel reads and
    // writes only within that size. Pointer fields inside it are set by the
    // callers below to buffers that live until this call returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: `r` is a file descriptor the kernel just created for us
    // (BPF_PROG_LOAD / BPF_PROG_GET_FD_BY_ID); nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

fn load(prog: &[Insn], path: &Path) -> Result<OwnedFd, Error> {
    let license = b"Apache\0";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut a = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        a.prog_name[..5].copy_from_slice(b"berth");
        if let Some(buf) = log {
            a.log_level = 1;
            a.log_size = buf.len() as u32;
            a.log_buf = buf.as_mut_ptr() as u64;
            sys_bpf(BPF_PROG_LOAD, &mut a)
        } else {
            sys_bpf(BPF_PROG_LOAD, &mut a)
        }
    };
    match attempt(None) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(first) => {
            // again with the verifier log, for the error message
            let mut buf = vec![0u8; 64 * 1024];
            let _ = attempt(Some(&mut buf));
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Err(Error::Bpf {
                op: "BPF_PROG_LOAD",
                path: path.to_path_buf(),
                source: first,
                log: String::from_utf8_lossy(&buf[..end]).trim().to_string(),
            })
        }
    }
}

fn attached(cg: &File, path: &Path) -> Result<Vec<u32>, Error> {
    let mut ids = vec![0u32; 64];
    for _ in 0..10 {
        let mut q = QueryAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_QUERY, &mut q) {
            Ok(_) => {
                ids.truncate(q.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids = vec![0u32; (q.prog_cnt as usize).max(ids.len() * 2)];
            }
            Err(source) => {
                return Err(Error::Bpf {
                    op: "BPF_PROG_QUERY",
                    path: path.to_path_buf(),
                    source,
                    log: String::new(),
                })
            }
        }
    }
    Ok(ids)
}

/// Compile OCI device rules and make the program the only device filter of the
/// cgroup2 directory `path` (also usable on the cgroup2 side of a hybrid host).
pub fn apply_rules(
    path: &Path,
    rules: &[oci_spec::runtime::LinuxDeviceCgroup],
) -> Result<(), Error> {
    let emu = Emulator::from_rules(&crate::devices::rules_from_oci(rules)?);
    apply(path, &emu)
}

/// Load the program for `emu` and make it the only device filter of `path`.
pub(crate) fn apply(path: &Path, emu: &Emulator) -> Result<(), Error> {
    let prog = program(emu);
    let cg = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let old = attached(&cg, path)?;
    let fd = load(&prog, path)?;
    debug!(path = %path.display(), insns = prog.len(), old = old.len(), "attaching device filter");
    let mut a = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut a).map_err(|source| Error::Bpf {
        op: "BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)",
        path: path.to_path_buf(),
        source,
        log: String::new(),
    })?;
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut g) {
            Ok(r) => fd_from(r),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                debug!(id, "cannot access an old device filter; leaving it");
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(Error::Bpf {
                    op: "BPF_PROG_GET_FD_BY_ID",
                    path: path.to_path_buf(),
                    source,
                    log: String::new(),
                })
            }
        };
        let mut d = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_DETACH, &mut d).map_err(|source| Error::Bpf {
            op: "BPF_PROG_DETACH (old device filter)",
            path: path.to_path_buf(),
            source,
            log: String::new(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests::oci;
    use crate::devices::{rules_from_oci, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use oci_spec::runtime::LinuxDeviceType::{A, B, C};

    #[test]
    fn instruction_sequence() {
        let rules = rules_from_oci(&[
            oci(false, Some(A), None, None, "rwm"),
            oci(true, Some(C), Some(1), Some(3), "rwm"),
            oci(true, Some(B), Some(8), None, "r"),
        ])
        .unwrap();
        let p = program(&Emulator::from_rules(&rules));
        let expect = vec![
            insn(LDX_MEM_W, 2, 1, 0, 0),
            insn(ALU32_AND_K, 2, 0, 0, 0xffff),
            insn(LDX_MEM_W, 3, 1, 0, 0),
            insn(ALU32_RSH_K, 3, 0, 0, 16),
            insn(LDX_MEM_W, 4, 1, 4, 0),
            insn(LDX_MEM_W, 5, 1, 8, 0),
            // c 1:3 rwm
            insn(JMP_JNE_K, 2, 0, 4, 2),
            insn(JMP_JNE_K, 4, 0, 3, 1),
            insn(JMP_JNE_K, 5, 0, 2, 3),
            insn(ALU32_MOV_K, 0, 0, 0, 1),
            insn(JMP_EXIT, 0, 0, 0, 0),
            // b 8:* r
            insn(JMP_JNE_K, 2, 0, 6, 1),
            insn(ALU32_MOV_X, 1, 3, 0, 0),
            insn(ALU32_AND_K, 1, 0, 0, 2),
            insn(JMP_JNE_X, 1, 3, 3, 0),
            insn(JMP_JNE_K, 4, 0, 2, 8),
            insn(ALU32_MOV_K, 0, 0, 0, 1),
            insn(JMP_EXIT, 0, 0, 0, 0),
            // default deny
            insn(ALU32_MOV_K, 0, 0, 0, 0),
            insn(JMP_EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(p, expect);
        assert_eq!(interpret(&p, DevKind::Char, 1, 3, ACC_READ | ACC_WRITE), 1);
        assert_eq!(interpret(&p, DevKind::Char, 1, 5, ACC_READ), 0);
        assert_eq!(interpret(&p, DevKind::Block, 8, 1, ACC_READ), 1);
        assert_eq!(interpret(&p, DevKind::Block, 8, 1, ACC_READ | ACC_WRITE), 0);
        assert_eq!(interpret(&p, DevKind::Block, 9, 1, ACC_READ), 0);
    }

    #[test]
    fn program_matches_emulator() {
        let rules = rules_from_oci(&[
            oci(true, Some(A), None, None, "rwm"),
            oci(false, Some(C), Some(1), Some(3), "w"),
            oci(false, Some(B), None, None, "m"),
        ])
        .unwrap();
        let emu = Emulator::from_rules(&rules);
        let p = program(&emu);
        for kind in [DevKind::Char, DevKind::Block] {
            for (ma, mi) in [(1, 3), (1, 5), (8, 0)] {
                for acc in 1..=7 {
                    assert_eq!(
                        interpret(&p, kind, ma, mi, acc) == 1,
                        emu.allows(kind, ma, mi, acc),
                        "{kind:?} {ma}:{mi} {acc}"
                    );
                }
            }
        }
        let _ = ACC_MKNOD;
    }
}
