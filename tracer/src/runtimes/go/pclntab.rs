//! Function entry addresses by name from a Go binary's pclntab, the table
//! the Go runtime itself reads for stack traces: it is in every Go binary,
//! stripped (`-ldflags=-s -w`) or not, so the hand-off uprobes find their
//! functions without a symbol table. Layout of Go 1.18+ (`runtime/symtab.go`
//! `pcHeader`, magic 0xfffffff0 for 1.18-1.19, 0xfffffff1 from 1.20).

/// Entry address of each of `names` (None: not in the table, or a layout
/// this reader does not know).
pub fn entries<const N: usize>(tab: &[u8], text_start: u64, names: &[&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    let _ = scan(tab, text_start, names, &mut out);
    out
}

fn scan<const N: usize>(tab: &[u8], text_fallback: u64, names: &[&str; N], out: &mut [Option<u64>; N]) -> Option<()> {
    let magic = u32::from_le_bytes(tab.get(..4)?.try_into().ok()?);
    if !matches!(magic, 0xffff_fff0 | 0xffff_fff1) || *tab.get(6)? != 1 || *tab.get(7)? != 8 {
        return None;
    }
    let word = |i: usize| -> Option<u64> { Some(u64::from_le_bytes(tab.get(8 + 8 * i..16 + 8 * i)?.try_into().ok()?)) };
    let nfunc = usize::try_from(word(0)?).ok()?;
    let text_start = match word(2)? {
        0 => text_fallback,
        t => t,
    };
    let funcnames = usize::try_from(word(3)?).ok()?;
    let pcln = usize::try_from(word(7)?).ok()?;
    let u32_at = |off: usize| -> Option<u32> { Some(u32::from_le_bytes(tab.get(off..off + 4)?.try_into().ok()?)) };
    for i in 0..nfunc {
        // functab: (entryoff, funcoff) pairs; funcoff is from pclntab's start.
        let func = pcln + usize::try_from(u32_at(pcln + 8 * i + 4)?).ok()?;
        let entry_off = u32_at(func)?;
        let name_off = usize::try_from(u32_at(func + 4)?).ok()?;
        let name = tab.get(funcnames + name_off..)?;
        let name = &name[..name.iter().position(|b| *b == 0)?];
        if let Some(k) = names.iter().position(|n| n.as_bytes() == name) {
            out[k] = Some(text_start + u64::from(entry_off));
            if out.iter().all(Option::is_some) {
                break;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of two functions, as the Go 1.20 linker lays it out.
    #[test]
    fn finds_functions_by_name() {
        let mut t = vec![0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        let names = b"\0main.main\0net/http.(*persistConn).writeLoop\0";
        let (funcnames, pcln) = (8 + 8 * 8, 8 + 8 * 8 + names.len());
        for w in [2u64, 0, 0x40_1000, funcnames as u64, 0, 0, 0, pcln as u64] {
            t.extend_from_slice(&w.to_le_bytes());
        }
        t.extend_from_slice(names);
        // functab (2 funcs), then the two _func records at 24 and 32.
        for (entry, func) in [(0x10u32, 24u32), (0x200, 32)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&func.to_le_bytes());
        }
        t.extend_from_slice(&[0; 8]);
        for (entry, name) in [(0x10u32, 1u32), (0x200, 11)] {
            t.extend_from_slice(&entry.to_le_bytes());
            t.extend_from_slice(&name.to_le_bytes());
        }
        let got = entries(&t, 0, &["net/http.(*persistConn).writeLoop", "main.main", "absent"]);
        assert_eq!(got, [Some(0x40_1200), Some(0x40_1010), None]);
        t[0] = 0xfa; // Go 1.16-1.17: not read
        assert_eq!(entries(&t, 0, &["main.main"]), [None]);
    }
}
