"""Crafted ELF files for the TLS hardening tests: a valid 64-bit shared object whose symbol
table holds nsyms copies of one function symbol (named "x", not OpenSSL), with the section
headers at the end of the file (a truncated file keeps its ELF header but loses them)."""
import struct

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")


def write_elf(path, nsyms):
    text = b"\xc3" * 16
    strtab = b"\0x\0"
    shstrtab = b"\0.text\0.strtab\0.symtab\0.shstrtab\0"
    names = {n: shstrtab.index(n.encode() + b"\0") for n in (".text", ".strtab", ".symtab", ".shstrtab")}
    text_off = 0x1000
    strtab_off = text_off + len(text)
    symtab_off = (strtab_off + len(strtab) + 7) & ~7
    symtab = SYM.pack(0, 0, 0, 0, 0, 0) + SYM.pack(1, 0x12, 0, 1, 0x1000, 16) * nsyms
    shstr_off = symtab_off + len(symtab)
    sh_off = (shstr_off + len(shstrtab) + 7) & ~7
    shdrs = [
        SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        SHDR.pack(names[".text"], 1, 6, 0x1000, text_off, len(text), 0, 0, 16, 0),
        SHDR.pack(names[".strtab"], 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0),
        SHDR.pack(names[".symtab"], 2, 0, 0, symtab_off, len(symtab), 2, 1, 8, SYM.size),
        SHDR.pack(names[".shstrtab"], 3, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0),
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = EHDR.pack(ident, 3, 62, 1, 0x1000, 0, sh_off, 0, EHDR.size, 0, 0, SHDR.size,
                     len(shdrs), 4)
    with open(path, "wb") as f:
        f.write(ehdr)
        f.seek(text_off)
        f.write(text)
        f.seek(strtab_off)
        f.write(strtab)
        f.seek(symtab_off)
        f.write(symtab)
        f.seek(shstr_off)
        f.write(shstrtab)
        f.seek(sh_off)
        f.write(b"".join(shdrs))
