//! `shmstore header`: a C header declaring a store's types and where its entries lie.
//!
//! The mapping of types is described in `shmstore help header`. The header targets C11 with GCC
//! or Clang (`unsigned __int128`, `__attribute__((packed, aligned(N)))`); every struct is followed
//! by `_Static_assert`s of its size, alignment and field offsets, so a compiler that lays it out
//! differently refuses it instead of misreading the file.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use shmstore::format::entry::{Entry, MAX_NAME_LEN};
use shmstore::format::v2::block;
use shmstore::format::v2::header as v2header;
use shmstore::{EntryInfo, EntryKind, Primitive, Schema, SchemaField, SchemaKind, SchemaVariant};

use crate::escape;
use crate::failure::{self, Failure};

/// Runs `shmstore header FILE [NAME]`, returning the header's text.
pub fn run(path: &Path, name: Option<&str>) -> Result<String, Failure> {
    let store = failure::open(path)?;
    let entries = store.entries()?;
    if let Some(name) = name {
        if !entries.iter().any(|e| e.name == name) {
            return Err(failure::no_entry(path, name, &store));
        }
    }
    let info = store.info();
    let v2 = info.format_version >= 2;
    let file = if v2 {
        Some(File::open(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", escape::path(path))))?)
    } else {
        None
    };
    let mut selected = Vec::new();
    for e in entries.into_iter().filter(|e| name.is_none_or(|n| n == e.name)) {
        let schema = store.schema(&e.name)?;
        let serial = match &file {
            Some(file) => Some(block_serial(path, file, &e, info.capacity)?),
            None => None,
        };
        selected.push(Exported { info: e, schema, serial });
    }
    let file = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned());
    generate(&file, name, v2, &selected).map_err(Failure::invalid)
}

/// The serial of the block of `e` (format v2), read from `file` (the store at `path`, of
/// `capacity` bytes), after checking that the block still holds `e`: the header-only reader
/// compares it with the block's live serial word to tell that the entry is still there.
fn block_serial(path: &Path, file: &File, e: &EntryInfo, capacity: u64) -> Result<u64, Failure> {
    let mut raw = [0u8; block::BLOCK_SIZE as usize];
    file.read_exact_at(&mut raw, e.record_offset)
        .map_err(|err| Failure::usage(format!("cannot read {}: {err}", escape::path(path))))?;
    let word = |at: u64, len: usize| &raw[at as usize..at as usize + len];
    // Live words are in native byte order (docs/format.md).
    let state = u32::from_ne_bytes(word(block::STATE, 4).try_into().unwrap_or_default());
    let serial = u64::from_ne_bytes(word(block::SERIAL, 8).try_into().unwrap_or_default());
    let decoded = block::decode(&raw[block::STATIC_OFFSET as usize..], e.record_offset, capacity);
    match decoded {
        Ok(b)
            if b.serial == serial
                && b.entry.name == e.name
                && matches!(state, block::STATE_LIVE | block::STATE_SHADOW) =>
        {
            Ok(serial)
        }
        _ => Err(Failure::usage(format!(
            "entry `{}` changed while the header was being made (another process removed, renamed or \
             migrated it): run `shmstore header` again",
            escape::text(&e.name)
        ))),
    }
}

/// An entry the header declares: what the library says of it, its stored schema, and (format 2)
/// the serial of its block.
pub struct Exported {
    /// The entry.
    pub info: EntryInfo,
    /// Its stored layout.
    pub schema: Schema,
    /// The serial of its block when the header was made; `None` in a format-1 store.
    pub serial: Option<u64>,
}

/// The header for `entries` of the store file named `file`; `only` is the entry name when the
/// header covers one entry; `v2` whether the store is format 2, whose blocks the header-only
/// reader reads (a format-1 store gets none). Fails only for a schema this tool cannot express in
/// C.
pub fn generate(file: &str, only: Option<&str>, v2: bool, entries: &[Exported]) -> Result<String, String> {
    let mut gen = Generator::default();
    for e in entries {
        gen.declare(&e.schema)?;
    }
    let mut entry_text = String::new();
    for e in entries {
        gen.entry(e, &mut entry_text)?;
    }

    let mut guard = format!("SHMSTORE_{}", macro_ident(file));
    if let Some(only) = only {
        let _ = write!(guard, "_{}", macro_ident(only));
    }
    guard.push_str("_H");
    let byte_order = if cfg!(target_endian = "little") { "little" } else { "big" };
    let what = match only {
        Some(name) => format!("entry `{}` of", comment_safe(name)),
        None => "the entries of".to_owned(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "\
/* Generated by `shmstore header` (shmstore-cli {version}) from {what} the store file
 * `{file}`. Do not edit: regenerate it when the store's layouts change.
 *
 * C11, for GCC and Clang. Every struct is checked by _Static_asserts of its size, alignment and
 * field offsets against the layout recorded in the store.
 * - Values are in the byte order of the machine that wrote them ({byte_order}-endian here).
 * - bool is uint8_t holding 0 or 1; atomics are their plain integer type, to be accessed with
 *   atomic operations; u128/i128 are unsigned __int128/__int128.
 * - Enums are a typedef of their integer type and one #define per variant.
 * - FixedStr<N> is char[N]: UTF-8, NUL-padded, not NUL-terminated when full.
 *
 * Two ways to use an entry from C:
 * - Through the C ABI of the shmstore library (shmstore-ffi: shmstore.h, -lshmstore_ffi): the
 *   static inline wrappers below (NAME_load, NAME_store, NAME_update, NAME_read_at, ...) are
 *   declared when shmstore.h can be included (define SHMSTORE_NO_ABI to leave them out). They
 *   take the same locks, commits, validation and migrations as Rust processes: the way to write,
 *   and to read arrays and byte regions.
 * - {header_only}
 */
#ifndef {guard}
#define {guard}

#include <stddef.h>
#include <stdint.h>
{mapped}
#if !defined(SHMSTORE_NO_ABI) && defined(__has_include)
#if __has_include(\"shmstore.h\")
#include \"shmstore.h\"
#endif
#endif
",
        version = env!("CARGO_PKG_VERSION"),
        file = comment_safe(file),
        mapped = if v2 { mapped_read() } else { String::new() },
        header_only = if v2 {
            "Header-only, for a reader that cannot link the library: NAME_read_mapped reads a
 *   double-buffered object from a mapping of the store file, following the protocol of
 *   docs/format.md (see shmstore_mapped_read). It writes nothing and takes no lock.
 * The *_OFFSET constants and NAME_SERIAL describe the entry's block as the file was when this
 * header was made; shmstore_mapped_read starts from NAME_BLOCK_OFFSET, checks that the block still
 * has NAME_SERIAL, and reads everything else from the blocks."
        } else {
            "This store is format version 1: this header has no header-only reader (it reads
 *   format-2 entry blocks). Run `shmstore upgrade` on the store and regenerate the header, or
 *   use the library. The *_OFFSET constants describe the entry's catalog record as the file was
 *   when this header was made."
        },
    );
    if !gen.types.is_empty() {
        out.push_str("\n/* ---- Types ---- */\n");
        out.push_str(&gen.types);
    }
    if !entry_text.is_empty() {
        out.push_str("\n/* ---- Entries ---- */\n");
        out.push_str(&entry_text);
    }
    let _ = write!(out, "\n#endif /* {guard} */\n");
    Ok(out)
}

/// C keywords (C11 and C23), which identifiers taken from Rust must not be.
const C_KEYWORDS: &[&str] = &[
    "alignas",
    "alignof",
    "auto",
    "bool",
    "break",
    "case",
    "char",
    "const",
    "constexpr",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "false",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "nullptr",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "struct",
    "switch",
    "thread_local",
    "true",
    "typedef",
    "typeof",
    "typeof_unqual",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    // Names the header itself relies on.
    "offsetof",
];

/// `raw` as a C identifier: other characters become `_`, a leading digit gets a `_` before it, and
/// a keyword gets one after it.
fn c_ident(raw: &str) -> String {
    let mut s: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if C_KEYWORDS.contains(&s.as_str()) || s.starts_with("__") {
        s.push('_');
    }
    s
}

/// `raw` as the upper-case part of a macro name: `app.shm` is `APP_SHM`.
fn macro_ident(raw: &str) -> String {
    let mut s: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'E');
    }
    s
}

/// Text that can go inside a C comment: it cannot end the comment, and holds no character a
/// terminal would obey when the header is shown (see [`escape`]).
fn comment_safe(s: &str) -> String {
    escape::text(s).replace("*/", "* /").replace("/*", "/ *")
}

/// Makes `base` unique in `used` with a numeric suffix, and records it.
fn unique(base: String, used: &mut HashSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while used.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    used.insert(name.clone());
    name
}

fn c_primitive(p: Primitive) -> Result<&'static str, String> {
    Ok(match p {
        Primitive::U8 | Primitive::Bool => "uint8_t",
        Primitive::U16 => "uint16_t",
        Primitive::U32 => "uint32_t",
        Primitive::U64 => "uint64_t",
        Primitive::U128 => "unsigned __int128",
        Primitive::I8 => "int8_t",
        Primitive::I16 => "int16_t",
        Primitive::I32 => "int32_t",
        Primitive::I64 => "int64_t",
        Primitive::I128 => "__int128",
        Primitive::F32 => "float",
        Primitive::F64 => "double",
        other => return Err(format!("the primitive {other:?} has no C equivalent in this build of shmstore-cli")),
    })
}

fn is_signed(p: Primitive) -> bool {
    matches!(p, Primitive::I8 | Primitive::I16 | Primitive::I32 | Primitive::I64 | Primitive::I128)
}

/// A C declaration, split around the declared name: `base name dims; comment`.
struct Decl {
    base: String,
    dims: String,
    comment: Option<String>,
}

#[derive(Default)]
struct Generator {
    /// Struct and enum declarations, nested types first.
    types: String,
    /// The C name of each struct or enum declared so far, by (declared name, fingerprint).
    names: HashMap<(String, u64), String>,
    /// Every file-scope identifier the header defines.
    used: HashSet<String>,
}

impl Generator {
    /// Declares the structs and enums `schema` uses, innermost first, each once.
    fn declare(&mut self, schema: &Schema) -> Result<(), String> {
        let key = (schema.type_name.clone(), schema.fingerprint);
        match &schema.kind {
            SchemaKind::Struct { fields } if !self.names.contains_key(&key) => {
                for f in fields {
                    self.declare(&f.schema)?;
                }
                self.declare_struct(schema, fields)
            }
            SchemaKind::Enum { repr, variants } if !self.names.contains_key(&key) => {
                self.declare_enum(schema, *repr, variants)
            }
            SchemaKind::Array { elem, .. } => self.declare(elem),
            _ => Ok(()),
        }
    }

    /// A name for the struct or enum `schema`: its own, or with a fingerprint suffix if another
    /// type already has it.
    fn type_name(&mut self, schema: &Schema) -> String {
        let base = c_ident(&schema.type_name);
        let name = if self.used.contains(&base) {
            unique(format!("{base}_{:08x}", schema.fingerprint >> 32), &mut self.used)
        } else {
            unique(base, &mut self.used)
        };
        self.names.insert((schema.type_name.clone(), schema.fingerprint), name.clone());
        name
    }

    fn declare_enum(&mut self, schema: &Schema, repr: Primitive, variants: &[SchemaVariant]) -> Result<(), String> {
        let int = c_primitive(repr)?;
        let name = self.type_name(schema);
        let t = &mut self.types;
        let _ = writeln!(
            t,
            "\n/* enum {} v{} ({}, fingerprint {:016x}) */",
            comment_safe(&schema.type_name),
            schema.version,
            repr.name(),
            schema.fingerprint
        );
        let _ = writeln!(t, "typedef {int} {name};");
        for v in variants {
            let literal = if is_signed(repr) {
                // Stored zero-extended from the repr's width: sign-extend it back.
                let bits = (repr.size() * 8).min(64) as u32;
                let signed = if bits < 64 { ((v.value << (64 - bits)) as i64) >> (64 - bits) } else { v.value as i64 };
                if signed < 0 {
                    format!("({signed}LL)")
                } else {
                    format!("{signed}LL")
                }
            } else {
                format!("{}ULL", v.value)
            };
            let macro_name = unique(format!("{name}_{}", c_ident(&v.name).trim_end_matches('_')), &mut self.used);
            let _ = writeln!(self.types, "#define {macro_name} (({name}){literal})");
        }
        Ok(())
    }

    fn declare_struct(&mut self, schema: &Schema, fields: &[SchemaField]) -> Result<(), String> {
        let mut sorted: Vec<&SchemaField> = fields.iter().collect();
        sorted.sort_by_key(|f| f.offset);
        // Member names first, so that padding members never take a field's name.
        let mut members = HashSet::new();
        let member_names: Vec<String> = sorted.iter().map(|f| unique(c_ident(&f.name), &mut members)).collect();

        let mut body = String::new();
        let mut offsets = Vec::new();
        let mut cursor = 0u64;
        let mut natural = 1u64;
        let pad = |body: &mut String, from: u64, to: u64, members: &mut HashSet<String>| {
            let name = unique(format!("_pad{from}"), members);
            let _ =
                writeln!(body, "    uint8_t {name}[{}]; /* padding: no field covers bytes {from}..{to} */", to - from);
        };
        for (f, member) in sorted.iter().zip(&member_names) {
            if f.offset < cursor {
                let _ = writeln!(
                    body,
                    "    /* field `{}` ({} bytes at offset {}) overlaps the field before it: not declared */",
                    comment_safe(&f.name),
                    f.schema.size,
                    f.offset
                );
                continue;
            }
            if f.offset > cursor {
                pad(&mut body, cursor, f.offset, &mut members);
            }
            let decl = self.decl(&f.schema)?;
            let comment = decl.comment.map(|c| format!(" /* {c} */")).unwrap_or_default();
            let _ = writeln!(body, "    {} {member}{};{comment}", decl.base, decl.dims);
            offsets.push((member.clone(), f.offset));
            cursor = f.offset.saturating_add(f.schema.size);
            natural = natural.max(f.schema.align);
        }
        if cursor < schema.size {
            pad(&mut body, cursor, schema.size, &mut members);
        }
        let attribute = if schema.align < natural {
            format!(" __attribute__((packed, aligned({})))", schema.align)
        } else if schema.align > natural {
            format!(" __attribute__((aligned({})))", schema.align)
        } else {
            String::new()
        };

        let name = self.type_name(schema);
        let t = &mut self.types;
        let _ = writeln!(
            t,
            "\n/* {} v{}: {} bytes, align {}, fingerprint {:016x} */",
            comment_safe(&schema.type_name),
            schema.version,
            schema.size,
            schema.align,
            schema.fingerprint
        );
        let _ = write!(t, "struct {name} {{\n{body}}}{attribute};\n");
        let _ = writeln!(
            t,
            "_Static_assert(sizeof(struct {name}) == {size}, \"struct {name} must be {size} bytes\");",
            size = schema.size
        );
        let _ = writeln!(
            t,
            "_Static_assert(_Alignof(struct {name}) == {align}, \"struct {name} must be aligned to {align}\");",
            align = schema.align
        );
        for (member, offset) in offsets {
            let _ = writeln!(
                t,
                "_Static_assert(offsetof(struct {name}, {member}) == {offset}, \"{name}.{member} must be at offset {offset}\");"
            );
        }
        Ok(())
    }

    /// How a value of `schema` is declared.
    fn decl(&self, schema: &Schema) -> Result<Decl, String> {
        let named = |what: &str| {
            self.names
                .get(&(schema.type_name.clone(), schema.fingerprint))
                .cloned()
                .ok_or_else(|| format!("{what} `{}` was used before it was declared", schema.type_name))
        };
        Ok(match &schema.kind {
            SchemaKind::Primitive(p) => Decl {
                base: c_primitive(*p)?.to_owned(),
                dims: String::new(),
                comment: (*p == Primitive::Bool).then(|| "bool: 0 or 1".to_owned()),
            },
            SchemaKind::Atomic(p) => Decl {
                base: c_primitive(*p)?.to_owned(),
                dims: String::new(),
                comment: Some(format!(
                    "{}: {}access with atomic operations",
                    comment_safe(&schema.type_name),
                    if *p == Primitive::Bool { "0 or 1, " } else { "" }
                )),
            },
            SchemaKind::Enum { .. } => Decl { base: named("enum")?, dims: String::new(), comment: None },
            SchemaKind::Struct { .. } => {
                Decl { base: format!("struct {}", named("struct")?), dims: String::new(), comment: None }
            }
            SchemaKind::FixedStr { capacity } => Decl {
                base: "char".to_owned(),
                dims: format!("[{capacity}]"),
                comment: Some(format!("FixedStr<{capacity}>: UTF-8, NUL-padded")),
            },
            SchemaKind::Array { elem, len } => {
                let inner = self.decl(elem)?;
                Decl { dims: format!("[{len}]{}", inner.dims), ..inner }
            }
            _ => {
                return Err(format!(
                    "type `{}` has a kind this build of shmstore-cli cannot express in C",
                    schema.display_name()
                ))
            }
        })
    }

    /// The macros and typedef of one entry.
    fn entry(&mut self, exported: &Exported, out: &mut String) -> Result<(), String> {
        let (e, schema) = (&exported.info, &exported.schema);
        let prefix = unique(macro_ident(&e.name), &mut self.used);
        let typedef = unique(format!("shmstore_{}_t", prefix.to_ascii_lowercase()), &mut self.used);
        let array = matches!(e.kind, EntryKind::Array | EntryKind::Bytes);
        let (what, mode) = match (array, e.is_double_buffered()) {
            (true, _) if e.kind == EntryKind::Bytes => (format!("byte region of {} bytes", e.len), "updated in place"),
            (true, _) => (format!("array of {} x {}", e.len, schema.display_name()), "updated in place"),
            (false, true) => (format!("object of {}", schema.display_name()), "2 slots, crash-atomic commits"),
            (false, false) => (format!("object of {}", schema.display_name()), "1 slot, updated in place"),
        };
        let _ =
            writeln!(out, "\n/* Entry `{}`: {} v{}; {mode}. */", comment_safe(&e.name), comment_safe(&what), e.version);
        let mut defines: Vec<(&str, String, &str)> = vec![
            ("NAME", format!("\"{}\"", c_string(&e.name)), ""),
            ("FINGERPRINT", format!("0x{:016x}ULL", e.fingerprint), ""),
            ("VERSION", format!("{}u", e.version), ""),
            ("LEN", format!("{}ULL", e.len), if array { " /* elements */" } else { "" }),
            ("ELEM_SIZE", format!("{}ULL", e.elem_size), ""),
            ("SLOTS", format!("{}u", e.slots), ""),
            ("DATA_OFFSET", format!("{}ULL", e.data_offset), ""),
            ("SLOT_STRIDE", format!("{}ULL", e.slot_stride), ""),
            ("BLOCK_OFFSET", format!("{}ULL", e.record_offset), ""),
            ("RECORD_OFFSET", format!("{}ULL", e.record_offset), " /* the same: inspect's record_offset */"),
            ("SEQ_OFFSET", format!("{}ULL", e.seq_offset), " /* native uint64_t */"),
        ];
        if let Some(serial) = exported.serial {
            defines.push(("SERIAL", format!("{serial}ULL"), " /* of the block at BLOCK_OFFSET */"));
        }
        for (suffix, value, comment) in defines {
            let _ = writeln!(out, "#define {prefix}_{suffix} {value}{comment}");
        }
        let decl = self.decl(schema)?;
        let element = if array { " /* one element */" } else { "" };
        let _ = writeln!(out, "typedef {} {typedef}{};{element}", decl.base, decl.dims);
        let _ = writeln!(
            out,
            "_Static_assert(sizeof({typedef}) == {size}, \"{typedef} must be {size} bytes\");",
            size = schema.size
        );
        self.wrappers(e, exported.serial.is_some(), &prefix, &typedef, out);
        Ok(())
    }

    /// The entry's typed functions: the header-only reader of a double-buffered object (if
    /// `mapped`: in a format-2 store), and wrappers over the C ABI, declared when `shmstore.h` is
    /// included.
    fn wrappers(&mut self, e: &EntryInfo, mapped: bool, prefix: &str, typedef: &str, out: &mut String) {
        let base = c_ident(&e.name);
        let mut name = |suffix: &str| unique(format!("{base}_{suffix}"), &mut self.used);
        let literal = c_string(&e.name);
        let fp = format!("{prefix}_FINGERPRINT");
        if mapped && e.kind == EntryKind::Object && e.is_double_buffered() {
            let f = name("read_mapped");
            let _ = write!(
                out,
                "/* Header-only: reads `{entry}` from a mapping of the whole store file (see shmstore_mapped_read). */
static inline int {f}(const void *map, uint64_t map_len, {typedef} *out, uint64_t *version) {{
    return shmstore_mapped_read(map, map_len, {prefix}_BLOCK_OFFSET, {prefix}_SERIAL, {prefix}_NAME,
                                sizeof {prefix}_NAME - 1, {fp}, sizeof *out, out, version);
}}
",
                entry = comment_safe(&e.name),
            );
        }
        let _ = writeln!(out, "#ifdef SHMSTORE_H");
        if e.kind == EntryKind::Object {
            let (load, load_v, store, store_if, update, wait) = (
                name("load"),
                name("load_versioned"),
                name("store"),
                name("store_if"),
                name("update"),
                name("wait_for_change"),
            );
            let _ = write!(
                out,
                "/* `{entry}` through the library: a consistent, validated copy; a commit; a conditional commit;
 * a read-modify-write under the entry's lock (see shmstore.h). */
static inline shmstore_status {load}(const shmstore *store, {typedef} *out) {{
    return shmstore_load(store, \"{literal}\", out, sizeof *out, {fp}, NULL);
}}
static inline shmstore_status {load_v}(const shmstore *store, {typedef} *out, uint64_t *version) {{
    return shmstore_load(store, \"{literal}\", out, sizeof *out, {fp}, version);
}}
static inline shmstore_status {store}(const shmstore *store, const {typedef} *value) {{
    return shmstore_store(store, \"{literal}\", value, sizeof *value, {fp}, NULL);
}}
static inline shmstore_status {store_if}(const shmstore *store, const {typedef} *value, uint64_t expected, uint64_t *version) {{
    return shmstore_store_if(store, \"{literal}\", value, sizeof *value, {fp}, expected, version);
}}
static inline shmstore_status {update}(const shmstore *store, shmstore_update_fn update, void *context, uint64_t *version) {{
    return shmstore_update(store, \"{literal}\", sizeof({typedef}), {fp}, update, context, version);
}}
static inline shmstore_status {wait}(const shmstore *store, uint64_t since, uint64_t timeout_ms, uint64_t *version) {{
    return shmstore_wait_for_change(store, \"{literal}\", since, timeout_ms, version);
}}
",
                entry = comment_safe(&e.name),
            );
        } else {
            let (read_at, write_at, len, wait) =
                (name("read_at"), name("write_at"), name("len"), name("wait_for_change"));
            let _ = write!(
                out,
                "/* `{entry}` through the library, under the entry's lock: elements [start, start + count). */
static inline shmstore_status {read_at}(const shmstore *store, uint64_t start, {typedef} *out, size_t count) {{
    return shmstore_read_at(store, \"{literal}\", start, out, count, sizeof({typedef}), {fp}, NULL);
}}
static inline shmstore_status {write_at}(const shmstore *store, uint64_t start, const {typedef} *values, size_t count) {{
    return shmstore_write_at(store, \"{literal}\", start, values, count, sizeof({typedef}), {fp}, NULL);
}}
static inline shmstore_status {len}(const shmstore *store, uint64_t *len) {{
    return shmstore_array_len(store, \"{literal}\", len);
}}
static inline shmstore_status {wait}(const shmstore *store, uint64_t since, uint64_t timeout_ms, uint64_t *version) {{
    return shmstore_wait_for_change(store, \"{literal}\", since, timeout_ms, version);
}}
",
                entry = comment_safe(&e.name),
            );
        }
        let _ = writeln!(out, "#endif /* SHMSTORE_H */");
    }
}

/// Where the header-only reader finds things in a format-v2 store file, all from the format
/// module: the block geometry and live words from the constants of `format::v2::block`, and the
/// static fields from its encoder ([`block::encode`] of probe entries), so that a change of format
/// changes the generated reader with it.
struct BlockLayout {
    data_area: u64,
    size: u64,
    align: u64,
    state: u64,
    serial: u64,
    seq: u64,
    moved_to: u64,
    kind: u64,
    slot_count: u64,
    name_len: u64,
    name: u64,
    name_max: u64,
    fingerprint: u64,
    elem_size: u64,
    data_offset: u64,
    slot_stride: u64,
    /// The `kind` byte of an object.
    object_kind: u8,
}

/// The name of the probe entries [`block_layout`] encodes: its bytes, and its length as a
/// little-endian `u16`, appear nowhere else in the encoded static part.
const PROBE_NAME: &str = "shmstore-header-probe-name";

fn block_layout() -> BlockLayout {
    // Distinct values whose little-endian bytes appear exactly once in the encoded static part.
    const FINGERPRINT: u64 = 0xf1f2_f3f4_f5f6_f7f8;
    const ELEM_SIZE: u64 = 0xe1e2_e3e4_e5e6_e7e8;
    const DATA_OFFSET: u64 = 0xd1d2_d3d4_d5d6_d7d8;
    const SLOT_STRIDE: u64 = 0xc1c2_c3c4_c5c6_c7c8;
    const SERIAL: u64 = 0xb1b2_b3b4_b5b6_b7b8;
    let probe = Entry {
        name: PROBE_NAME.into(),
        kind: EntryKind::Object,
        slot_count: 2,
        version: 0x9192_9394,
        fingerprint: FINGERPRINT,
        elem_size: ELEM_SIZE,
        elem_align: 8,
        count: 1,
        data_offset: DATA_OFFSET,
        slot_stride: SLOT_STRIDE,
        schema_offset: 0,
        schema_len: 0,
        lock_offset: 0,
    };
    let encoded = block::encode(&probe, SERIAL);
    // The checksum (the last word) is left out: it changes with everything.
    let body = &encoded[..block::STATIC_SIZE - 8];
    let at = |pattern: &[u8]| {
        let found: Vec<usize> =
            body.windows(pattern.len()).enumerate().filter(|(_, w)| *w == pattern).map(|(i, _)| i).collect();
        assert_eq!(found.len(), 1, "the probe bytes {pattern:x?} must appear once in an encoded block");
        block::STATIC_OFFSET + found[0] as u64
    };
    // The one byte that differs when the probe differs only in a one-byte field.
    let differs = |other: &Entry| {
        let other = block::encode(other, SERIAL);
        let found: Vec<usize> = (0..body.len()).filter(|&i| body[i] != other[i]).collect();
        assert_eq!(found.len(), 1, "a one-byte field must change one byte of an encoded block");
        block::STATIC_OFFSET + found[0] as u64
    };
    let kind = differs(&Entry { kind: EntryKind::Array, ..probe.clone() });
    BlockLayout {
        data_area: v2header::DATA_OFFSET,
        size: block::BLOCK_SIZE,
        align: block::BLOCK_ALIGN,
        state: block::STATE,
        serial: block::SERIAL,
        seq: block::SEQ,
        moved_to: block::MOVED_TO,
        kind,
        slot_count: differs(&Entry { slot_count: 1, ..probe.clone() }),
        name_len: at(&(PROBE_NAME.len() as u16).to_le_bytes()),
        name: at(PROBE_NAME.as_bytes()),
        name_max: MAX_NAME_LEN as u64,
        fingerprint: at(&FINGERPRINT.to_le_bytes()),
        elem_size: at(&ELEM_SIZE.to_le_bytes()),
        data_offset: at(&DATA_OFFSET.to_le_bytes()),
        slot_stride: at(&SLOT_STRIDE.to_le_bytes()),
        object_kind: encoded[(kind - block::STATIC_OFFSET) as usize],
    }
}

/// The header-only reader: `shmstore_mapped_read`, emitted once per translation unit whatever the
/// number of generated headers it includes.
fn mapped_read() -> String {
    let o = block_layout();
    format!(
        r#"
#ifndef SHMSTORE_MAPPED_READ_V2
#define SHMSTORE_MAPPED_READ_V2 1
#include <stdatomic.h>
#include <string.h>

/* Where things are in a format-v2 store file (docs/format.md, "Entry blocks"). Offsets in a block
 * are from the block's start. */
#define SHMSTORE_DATA_AREA {data_area}ULL /* entry blocks lie at or after this offset */
#define SHMSTORE_BLOCK_SIZE {size}ULL
#define SHMSTORE_BLOCK_ALIGN {align}ULL
#define SHMSTORE_BLOCK_STATE {state}ULL /* native _Atomic uint32_t */
#define SHMSTORE_BLOCK_SERIAL {serial}ULL /* native _Atomic uint64_t */
#define SHMSTORE_BLOCK_SEQ {seq}ULL /* native _Atomic uint64_t */
#define SHMSTORE_BLOCK_MOVED_TO {moved_to}ULL /* native _Atomic uint64_t: a block offset, or 0 */
#define SHMSTORE_BLOCK_KIND {kind}ULL /* uint8_t */
#define SHMSTORE_BLOCK_SLOT_COUNT {slot_count}ULL /* uint8_t */
#define SHMSTORE_BLOCK_NAME_LEN {name_len}ULL /* little-endian uint16_t */
#define SHMSTORE_BLOCK_NAME {name}ULL /* SHMSTORE_NAME_MAX bytes: UTF-8, zero-padded */
#define SHMSTORE_NAME_MAX {name_max}ULL
#define SHMSTORE_BLOCK_FINGERPRINT {fingerprint}ULL /* little-endian uint64_t */
#define SHMSTORE_BLOCK_ELEM_SIZE {elem_size}ULL /* little-endian uint64_t */
#define SHMSTORE_BLOCK_DATA_OFFSET {data_offset}ULL /* little-endian uint64_t */
#define SHMSTORE_BLOCK_SLOT_STRIDE {slot_stride}ULL /* little-endian uint64_t */
#define SHMSTORE_STATE_LIVE {live}u
#define SHMSTORE_STATE_SHADOW {shadow}u
#define SHMSTORE_STATE_MOVED {moved}u
#define SHMSTORE_STATE_REMOVED {removed}u
#define SHMSTORE_KIND_OBJECT {object}u
/* The longest moved_to chain followed, as the library does. */
#define SHMSTORE_MAPPED_HOPS 64

/* What shmstore_mapped_read returns. */
#define SHMSTORE_MAPPED_OK 0
/* The entry (after following its migrations) holds another layout: this program was built for a
 * layout the entry no longer has. Regenerate the header, or use the library. */
#define SHMSTORE_MAPPED_LAYOUT_MISMATCH 1
/* A block is not what a store file holds (another file? a damaged one?), or lies outside the map
 * (if the store grew since it was mapped, map it again). */
#define SHMSTORE_MAPPED_BAD_RECORD 2
/* Writers committed during every one of SHMSTORE_MAPPED_TRIES copies: try again later (the
 * library instead queues behind them on the entry's lock). */
#define SHMSTORE_MAPPED_BUSY 3
#define SHMSTORE_MAPPED_TRIES 64
/* The entry this header was made for is gone: removed, renamed, or its block reused by another
 * entry. Regenerate the header (if the entry exists again), or use the library, which finds
 * entries by name. */
#define SHMSTORE_MAPPED_GONE 4

_Static_assert(sizeof(_Atomic uint64_t) == 8 && ATOMIC_LLONG_LOCK_FREE == 2,
               "the header-only reader needs lock-free 64-bit atomics laid out as uint64_t");
_Static_assert(sizeof(_Atomic uint32_t) == 4 && ATOMIC_INT_LOCK_FREE == 2,
               "the header-only reader needs lock-free 32-bit atomics laid out as uint32_t");
_Static_assert(SHMSTORE_BLOCK_FINGERPRINT % 8 == 0 && SHMSTORE_BLOCK_ELEM_SIZE % 8 == 0 &&
                   SHMSTORE_BLOCK_DATA_OFFSET % 8 == 0 && SHMSTORE_BLOCK_SLOT_STRIDE % 8 == 0 &&
                   SHMSTORE_BLOCK_NAME % 8 == 0 && SHMSTORE_BLOCK_ALIGN % 8 == 0,
               "the static fields the reader loads as whole words must be 8-aligned");

static inline uint32_t shmstore_mapped_load32(unsigned char *base, uint64_t at, memory_order order) {{
    return atomic_load_explicit((_Atomic uint32_t *)(base + at), order);
}}

static inline uint64_t shmstore_mapped_load64(unsigned char *base, uint64_t at, memory_order order) {{
    return atomic_load_explicit((_Atomic uint64_t *)(base + at), order);
}}

/* The 8 bytes of the 8-aligned word at `at`, in file order. A block's static part is written
 * before the block is published and not changed while it is, but a removed block is reused for
 * another entry: so even these words are loaded atomically (relaxed), never with plain loads. */
static inline void shmstore_mapped_word(unsigned char *base, uint64_t at, unsigned char bytes[8]) {{
    uint64_t word = shmstore_mapped_load64(base, at, memory_order_relaxed);
    memcpy(bytes, &word, 8); /* from a local copy of the word, not the mapping */
}}

/* A little-endian uint64_t of a block's static part, at an 8-aligned offset. */
static inline uint64_t shmstore_mapped_le64(unsigned char *base, uint64_t at) {{
    unsigned char b[8];
    shmstore_mapped_word(base, at, b);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}}

/* One byte of a block's static part. */
static inline unsigned shmstore_mapped_byte(unsigned char *base, uint64_t at) {{
    unsigned char b[8];
    shmstore_mapped_word(base, at & ~(uint64_t)7, b);
    return b[at & 7];
}}

/* Whether `at` can be a block of a mapping of `map_len` bytes: in the data area, aligned, inside
 * the map. */
static inline int shmstore_mapped_block_ok(uint64_t at, uint64_t map_len) {{
    return at >= SHMSTORE_DATA_AREA && at % SHMSTORE_BLOCK_ALIGN == 0 && at <= map_len &&
           map_len - at >= SHMSTORE_BLOCK_SIZE;
}}

/* Whether the shadow block at `at` is committed: the block its moved_to points back at is moved
 * to it (docs/format.md, "Entry life cycle"). A committed shadow is live; any other is not. */
static inline int shmstore_mapped_shadow_committed(unsigned char *base, uint64_t map_len, uint64_t at) {{
    uint64_t back = shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_MOVED_TO, memory_order_acquire);
    return shmstore_mapped_block_ok(back, map_len) &&
           shmstore_mapped_load32(base, back + SHMSTORE_BLOCK_STATE, memory_order_acquire) == SHMSTORE_STATE_MOVED &&
           shmstore_mapped_load64(base, back + SHMSTORE_BLOCK_MOVED_TO, memory_order_acquire) == at;
}}

/* Reads one double-buffered object straight from `map`, a mapping of `map_len` bytes of a format-2
 * store file (from offset 0), without the library: copies its current value (`size` bytes) into
 * `out`, and its version (the commit sequence) into *version (if not NULL). The entry is the one
 * named `name` (`name_len` bytes) whose block was at `block` with serial `serial` when the header
 * was made (NAME_BLOCK_OFFSET, NAME_SERIAL). Returns SHMSTORE_MAPPED_OK, or one of the codes above
 * with `out` zeroed. What it does, as docs/format.md specifies:
 * 1. Check that the block at `block` still belongs to the entry: its serial word equals `serial`
 *    (acquire load); otherwise the entry was removed and its block maybe reused: GONE.
 * 2. Follow the entry's migrations: while the block's state is moved, go to its moved_to (acquire
 *    loads; at most SHMSTORE_MAPPED_HOPS hops, each offset checked to be an aligned block inside
 *    the data area and the map, else BAD_RECORD). Accept a live block, or a shadow whose moved_to
 *    points back at a block moved to it (a committed shadow, as the library does); a free,
 *    removed or uncommitted shadow block is GONE (unless its state changed meanwhile: then go
 *    to 1), an unknown state BAD_RECORD.
 * 3. Check the block it ends at: its name must be `name` (a rename gives GONE), and its kind
 *    (object), slot count (2), fingerprint and value size must be the caller's (`fingerprint`,
 *    `size`), else LAYOUT_MISMATCH: after a migration to another layout no stale bytes of the old
 *    block and no bytes of the new layout are returned. Its slots must lie inside the map. A
 *    negative verdict is given only if the blocks read did not change meanwhile; else go to 1.
 * 4. Copy the active slot as a seqlock reader: load seq (acquire); copy the slot at
 *    data_offset + (seq & 1) * slot_stride word by word with relaxed C11 atomic loads (never
 *    memcpy from the mapping: a writer may be storing to these words, and a plain copy would be a
 *    data race); issue an acquire fence (needed on ARM, so that the loads after it are not
 *    satisfied before the copy); load seq, the block's state and serial and the first block's
 *    serial again (relaxed). If the state or a serial changed, the entry was removed, renamed or
 *    migrated during the copy: go to 1. If seq changed, a commit overlapped the copy: copy again
 *    (at most SHMSTORE_MAPPED_TRIES times, then BUSY).
 * What it does not do: look entries up by name through the index (it starts from the block the
 *    header names, so an entry removed and created again under the same name is GONE until the
 *    header is regenerated); validate bool, enum and FixedStr values (the library does); read
 *    objects holding atomics, arrays or byte regions (they are changed in place under the entry's
 *    lock: use the library's shmstore_load / shmstore_read_at); check the file's header or the
 *    checksum of a block's static part; notice a store that grew past `map_len` (map the whole
 *    file, again after it grows); take the shared flock and the shared lock on the open byte that
 *    a process with the store mapped should hold (see docs/format.md); take any lock at all, or
 *    write anything. */
static inline int shmstore_mapped_read(const void *map, uint64_t map_len, uint64_t block, uint64_t serial,
                                       const char *name, size_t name_len, uint64_t fingerprint, size_t size,
                                       void *out, uint64_t *version) {{
    unsigned char *base = (unsigned char *)(uintptr_t)map;
    int status = SHMSTORE_MAPPED_BUSY;
    for (int attempt = 0; attempt < SHMSTORE_MAPPED_TRIES; attempt++) {{
        status = SHMSTORE_MAPPED_BAD_RECORD;
        if (!shmstore_mapped_block_ok(block, map_len)) goto fail;
        /* 1. The block still holds the entry the header was made for. */
        if (shmstore_mapped_load64(base, block + SHMSTORE_BLOCK_SERIAL, memory_order_acquire) != serial) {{
            status = SHMSTORE_MAPPED_GONE;
            goto fail;
        }}
        /* 2. Follow moved_to to the block that holds the entry now. */
        uint64_t at = block;
        uint32_t state = 0;
        for (int hops = 0;; hops++) {{
            if (hops > SHMSTORE_MAPPED_HOPS) goto fail;
            state = shmstore_mapped_load32(base, at + SHMSTORE_BLOCK_STATE, memory_order_acquire);
            if (state == SHMSTORE_STATE_MOVED) {{
                uint64_t next = shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_MOVED_TO, memory_order_acquire);
                if (!shmstore_mapped_block_ok(next, map_len)) {{
                    /* Reused since its state was loaded? Then look again. */
                    if (shmstore_mapped_load32(base, at + SHMSTORE_BLOCK_STATE, memory_order_acquire) != state)
                        goto again;
                    goto fail;
                }}
                at = next;
                continue;
            }}
            if (state == SHMSTORE_STATE_LIVE ||
                (state == SHMSTORE_STATE_SHADOW && shmstore_mapped_shadow_committed(base, map_len, at)))
                break;
            if (state <= SHMSTORE_STATE_REMOVED) {{
                /* A committed shadow is marked live (state, then moved_to cleared) between the two
                 * loads of shmstore_mapped_shadow_committed, or a block is reused: if its state
                 * changed since it was loaded, look again before saying GONE. */
                if (shmstore_mapped_load32(base, at + SHMSTORE_BLOCK_STATE, memory_order_acquire) != state)
                    goto again;
                status = SHMSTORE_MAPPED_GONE;
            }}
            goto fail;
        }}
        uint64_t at_serial = shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_SERIAL, memory_order_acquire);
        /* 3. Its name, kind and layout. */
        int verdict = SHMSTORE_MAPPED_OK;
        unsigned stored_len = shmstore_mapped_byte(base, at + SHMSTORE_BLOCK_NAME_LEN) |
                              (shmstore_mapped_byte(base, at + SHMSTORE_BLOCK_NAME_LEN + 1) << 8);
        if (name_len > SHMSTORE_NAME_MAX || stored_len != name_len) verdict = SHMSTORE_MAPPED_GONE;
        for (size_t i = 0; verdict == SHMSTORE_MAPPED_OK && i < name_len; i += 8) {{
            unsigned char word[8];
            shmstore_mapped_word(base, at + SHMSTORE_BLOCK_NAME + i, word);
            if (memcmp(word, name + i, name_len - i < 8 ? name_len - i : 8) != 0) verdict = SHMSTORE_MAPPED_GONE;
        }}
        if (verdict == SHMSTORE_MAPPED_OK &&
            (shmstore_mapped_byte(base, at + SHMSTORE_BLOCK_KIND) != SHMSTORE_KIND_OBJECT ||
             shmstore_mapped_byte(base, at + SHMSTORE_BLOCK_SLOT_COUNT) != 2 ||
             shmstore_mapped_le64(base, at + SHMSTORE_BLOCK_FINGERPRINT) != fingerprint ||
             shmstore_mapped_le64(base, at + SHMSTORE_BLOCK_ELEM_SIZE) != (uint64_t)size))
            verdict = SHMSTORE_MAPPED_LAYOUT_MISMATCH;
        uint64_t data = shmstore_mapped_le64(base, at + SHMSTORE_BLOCK_DATA_OFFSET);
        uint64_t stride = shmstore_mapped_le64(base, at + SHMSTORE_BLOCK_SLOT_STRIDE);
        uint64_t words = ((uint64_t)size + 7) / 8;
        if (verdict == SHMSTORE_MAPPED_OK &&
            (data % 8 != 0 || stride % 8 != 0 || stride < words * 8 || data > map_len ||
             map_len - data < stride + words * 8))
            verdict = SHMSTORE_MAPPED_BAD_RECORD;
        if (verdict != SHMSTORE_MAPPED_OK) {{
            if (shmstore_mapped_load32(base, at + SHMSTORE_BLOCK_STATE, memory_order_acquire) == state &&
                shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_SERIAL, memory_order_acquire) == at_serial &&
                shmstore_mapped_load64(base, block + SHMSTORE_BLOCK_SERIAL, memory_order_acquire) == serial) {{
                status = verdict;
                goto fail;
            }}
            continue; /* the blocks changed while they were read: look again */
        }}
        /* 4. The seqlock copy. */
        int changed = 0;
        for (int copy = 0; copy < SHMSTORE_MAPPED_TRIES && !changed; copy++) {{
            uint64_t before = shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_SEQ, memory_order_acquire);
            _Atomic uint64_t *slot = (_Atomic uint64_t *)(base + data + (before & 1) * stride);
            unsigned char *dst = (unsigned char *)out;
            for (uint64_t w = 0; w < words; w++) {{
                uint64_t word = atomic_load_explicit(&slot[w], memory_order_relaxed);
                size_t n = (uint64_t)size - w * 8 < 8 ? (size_t)((uint64_t)size - w * 8) : 8;
                memcpy(dst + w * 8, &word, n); /* from a local copy of the word, not the mapping */
            }}
            atomic_thread_fence(memory_order_acquire);
            uint64_t after = shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_SEQ, memory_order_relaxed);
            changed = shmstore_mapped_load32(base, at + SHMSTORE_BLOCK_STATE, memory_order_relaxed) != state ||
                      shmstore_mapped_load64(base, at + SHMSTORE_BLOCK_SERIAL, memory_order_relaxed) != at_serial ||
                      shmstore_mapped_load64(base, block + SHMSTORE_BLOCK_SERIAL, memory_order_relaxed) != serial;
            if (!changed && after == before) {{
                if (version) *version = before;
                return SHMSTORE_MAPPED_OK;
            }}
        }}
        if (!changed) {{
            status = SHMSTORE_MAPPED_BUSY;
            goto fail;
        }}
    again:;
    }}
    status = SHMSTORE_MAPPED_BUSY; /* the entry changed during every attempt */
fail:
    memset(out, 0, size);
    return status;
}}
#endif /* SHMSTORE_MAPPED_READ_V2 */
"#,
        data_area = o.data_area,
        size = o.size,
        align = o.align,
        state = o.state,
        serial = o.serial,
        seq = o.seq,
        moved_to = o.moved_to,
        kind = o.kind,
        slot_count = o.slot_count,
        name_len = o.name_len,
        name = o.name,
        name_max = o.name_max,
        fingerprint = o.fingerprint,
        elem_size = o.elem_size,
        data_offset = o.data_offset,
        slot_stride = o.slot_stride,
        live = block::STATE_LIVE,
        shadow = block::STATE_SHADOW,
        moved = block::STATE_MOVED,
        removed = block::STATE_REMOVED,
        object = o.object_kind,
    )
}

/// `s` as the contents of a C string literal: printable ASCII as itself (but `"`, `\` and `?`,
/// which could start an escape or a trigraph), every other byte as a three-digit octal escape.
fn c_string(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'?') || b == b' ' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(p: Primitive, size: u64) -> Schema {
        Schema {
            type_name: p.name().into(),
            size,
            align: size,
            version: 1,
            fingerprint: size,
            kind: SchemaKind::Primitive(p),
        }
    }

    fn field(name: &str, offset: u64, schema: Schema) -> SchemaField {
        SchemaField { name: name.into(), offset, schema }
    }

    fn strukt(name: &str, fp: u64, size: u64, align: u64, fields: Vec<SchemaField>) -> Schema {
        Schema { type_name: name.into(), size, align, version: 1, fingerprint: fp, kind: SchemaKind::Struct { fields } }
    }

    fn gen(schemas: &[Schema]) -> String {
        let mut g = Generator::default();
        for s in schemas {
            g.declare(s).unwrap();
        }
        g.types
    }

    /// The header-only reader's offsets, found from the format module, are those
    /// docs/format.md gives.
    #[test]
    fn block_offsets_are_those_of_the_format() {
        let o = block_layout();
        assert_eq!((o.data_area, o.size, o.align), (4096, 384, 64));
        assert_eq!((o.state, o.serial, o.seq, o.moved_to), (0, 8, 16, 32));
        assert_eq!((o.kind, o.slot_count, o.name_len, o.name, o.name_max), (192, 193, 194, 200, 64));
        assert_eq!((o.fingerprint, o.elem_size, o.data_offset, o.slot_stride), (264, 272, 296, 304));
        assert_eq!(o.object_kind, 1);
    }

    #[test]
    fn names_become_c_string_literals() {
        assert_eq!(c_string("config"), "config");
        assert_eq!(c_string("a \"b\" c\\d??="), "a \\042b\\042 c\\134d\\077\\077=");
        assert_eq!(c_string("grüße"), "gr\\303\\274\\303\\237e");
    }

    #[test]
    fn identifiers() {
        assert_eq!(c_ident("0"), "_0");
        assert_eq!(c_ident("int"), "int_");
        assert_eq!(c_ident("größe"), "gr__e");
        assert_eq!(c_ident("__x"), "__x_");
        assert_eq!(macro_ident("app.shm"), "APP_SHM");
        assert_eq!(macro_ident("9lives"), "E9LIVES");
    }

    #[test]
    fn gaps_become_padding_and_overlaps_are_left_out() {
        let s = strukt(
            "Gappy",
            1,
            16,
            4,
            vec![
                field("a", 0, prim(Primitive::U8, 1)),
                field("b", 4, prim(Primitive::U32, 4)),
                field("c", 6, prim(Primitive::U16, 2)),
                field("_pad1", 8, prim(Primitive::U16, 2)),
            ],
        );
        let text = gen(&[s]);
        assert!(text.contains("uint8_t _pad1_2[3]; /* padding: no field covers bytes 1..4 */"), "{text}");
        assert!(text.contains("/* field `c` (2 bytes at offset 6) overlaps the field before it: not declared */"));
        assert!(text.contains("uint8_t _pad10[6]; /* padding: no field covers bytes 10..16 */"), "{text}");
        assert!(text.contains("_Static_assert(offsetof(struct Gappy, b) == 4"), "{text}");
        assert!(!text.contains("offsetof(struct Gappy, c)"), "{text}");
    }

    #[test]
    fn clashing_names_are_told_apart_and_repeats_declared_once() {
        let a = strukt("Point", 0x1111_2222_0000_0000, 4, 4, vec![field("x", 0, prim(Primitive::I32, 4))]);
        let b = strukt("Point", 0x3333_4444_0000_0000, 4, 4, vec![field("x", 0, prim(Primitive::F32, 4))]);
        let text = gen(&[a.clone(), b, a]);
        assert_eq!(text.matches("struct Point {").count(), 1, "{text}");
        assert_eq!(text.matches("struct Point_33334444 {").count(), 1, "{text}");
    }

    #[test]
    fn packed_and_over_aligned_structs_get_attributes() {
        let packed = strukt("P", 1, 8, 2, vec![field("a", 0, prim(Primitive::U64, 8))]);
        let aligned = strukt(
            "A",
            2,
            64,
            64,
            vec![
                field("a", 0, prim(Primitive::U64, 8)),
                field("b", 8, {
                    let mut s = prim(Primitive::U8, 1);
                    s.kind = SchemaKind::Array { elem: Box::new(prim(Primitive::U8, 1)), len: 56 };
                    s.size = 56;
                    s
                }),
            ],
        );
        let text = gen(&[packed, aligned]);
        assert!(text.contains("} __attribute__((packed, aligned(2)));"), "{text}");
        assert!(text.contains("} __attribute__((aligned(64)));"), "{text}");
        assert!(text.contains("uint8_t b[56];"), "{text}");
    }

    #[test]
    fn signed_enums_are_sign_extended() {
        let e = Schema {
            type_name: "Sign".into(),
            size: 2,
            align: 2,
            version: 1,
            fingerprint: 9,
            kind: SchemaKind::Enum {
                repr: Primitive::I16,
                variants: vec![
                    SchemaVariant { name: "Neg".into(), value: 0xffff },
                    SchemaVariant { name: "Pos".into(), value: 3 },
                ],
            },
        };
        let text = gen(&[e]);
        assert!(text.contains("typedef int16_t Sign;"), "{text}");
        assert!(text.contains("#define Sign_Neg ((Sign)(-1LL))"), "{text}");
        assert!(text.contains("#define Sign_Pos ((Sign)3LL)"), "{text}");
    }
}
