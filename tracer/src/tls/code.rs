//! Just enough x86-64 decoding to place uprobes where the kernel emulates
//! the probed instruction instead of single-stepping it (`libssl::sites`).

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

/// Instructions looked at from a function's start, at most.
const MAX_INSTRUCTIONS: usize = 24;

/// The target of the first direct call on the straight-line path from
/// `ip` (None: a jump, return or indirect call comes first).
pub fn first_call(code: &[u8], ip: u64) -> Option<u64> {
    let mut dec = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    for ins in dec.iter().take(MAX_INSTRUCTIONS) {
        match ins.flow_control() {
            FlowControl::Next | FlowControl::ConditionalBranch => {}
            FlowControl::Call if ins.op0_kind() == OpKind::NearBranch64 => return Some(ins.near_branch_target()),
            _ => return None,
        }
    }
    None
}

/// The first instruction at `ip` is one the kernel's x86 uprobes emulate
/// (arch/x86/kernel/uprobes.c: a register push, nop, direct jmp, call or
/// jcc, without prefixes other than REX).
pub fn emulated_first(code: &[u8], ip: u64) -> bool {
    let mut dec = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let ins = dec.decode();
    !ins.is_invalid() && emulated(&ins)
}

fn emulated(ins: &Instruction) -> bool {
    if ins.has_rep_prefix() || ins.has_repne_prefix() || ins.has_lock_prefix() || ins.has_segment_prefix() {
        return false;
    }
    match ins.mnemonic() {
        Mnemonic::Push => ins.op0_kind() == OpKind::Register,
        Mnemonic::Nop => true,
        _ => {
            matches!(
                ins.flow_control(),
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
            ) && ins.op0_kind() == OpKind::NearBranch64
        }
    }
}

/// Addresses of the RET instructions of the function at `ip`, whose code
/// `code` starts with; the function ends at the first int3 (the padding Go
/// and C toolchains put between functions) or at the end of `code`.
pub fn returns(code: &[u8], ip: u64) -> Vec<u64> {
    let mut dec = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    for ins in dec.iter() {
        match ins.mnemonic() {
            Mnemonic::Int3 | Mnemonic::INVALID => break,
            Mnemonic::Ret => out.push(ins.ip()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_wrapped_call_and_judges_first_instructions() {
        // sub $0x18,%rsp; mov %fs:0x28,%rax; xor %eax,%eax; test %edx,%edx;
        // js +0x2f; mov %rsp,%rcx; call -0x1c3 (OpenSSL 3.0's SSL_read).
        let ssl_read = [
            0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f,
            0x48, 0x89, 0xe1, 0xe8, 0x3d, 0xfe, 0xff, 0xff,
        ];
        let target = 0x1000 + ssl_read.len() as u64 - 0x1c3;
        assert_eq!(first_call(&ssl_read, 0x1000), Some(target));
        assert!(!emulated_first(&ssl_read, 0x1000), "sub is single-stepped");
        assert!(emulated_first(&[0x41, 0x55], 0), "push %r13");
        assert!(emulated_first(&[0x55], 0), "push %rbp");
        assert!(emulated_first(&[0xe8, 0, 0, 0, 0], 0), "call rel32");
        assert!(!emulated_first(&[0xf3, 0x0f, 0x1e, 0xfa], 0), "endbr64 is not");
        assert!(!emulated_first(&[0xff, 0xd0], 0), "call *%rax is not");
        assert_eq!(first_call(&[0xc3], 0), None, "ret before any call");
        assert_eq!(first_call(&[0xff, 0xd0], 0), None, "indirect call");
    }

    #[test]
    fn finds_every_return_up_to_the_padding() {
        // test %eax,%eax; jz +1; ret; xor %eax,%eax; ret; int3; ret (next function)
        let code = [0x85, 0xc0, 0x74, 0x01, 0xc3, 0x31, 0xc0, 0xc3, 0xcc, 0xc3];
        assert_eq!(returns(&code, 0x100), vec![0x104, 0x107]);
    }
}
