//! `shmstore`: look inside shmstore files without the Rust types that wrote them, and maintain
//! them.
//!
//! The inspection commands open the store read-only and work from the layout descriptors
//! (schemas) the store keeps next to each entry: `inspect` lists what a store holds, `dump`
//! decodes values, `verify` checks every byte of every entry against its type's rules, and
//! `header` exports the layouts as a C header for readers in other languages. The maintenance
//! commands change the store: `upgrade` and `compact` rewrite a store that no process has open,
//! `rm` and `mv` remove and rename entries through the library, taking its locks.

mod cheader;
mod dump;
mod escape;
mod failure;
mod inspect;
mod json;
mod maintain;
mod progress;
mod region;
mod render;
mod verify;

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::failure::Failure;

/// The exit status section of every `--help`, as a literal for `concat!`.
macro_rules! exit_status {
    () => {
        "\
Exit status:
  0  success
  1  usage error, missing file or entry, a store that another process has open (upgrade,
     compact), or a file that cannot be read or changed here (an I/O error, a newer format version,
     the other byte order, a format-1 store for rm and mv)
  2  invalid data: the file is not a shmstore file, is truncated or corrupt (a checksum or a
     structure that does not add up), or holds a value that breaks its type's rules

Errors are one line on stderr, starting with `shmstore: `. Text from the file (names, strings) is \
printed with control characters and bidirectional controls escaped, as \\u{1b}."
    };
}

/// Inspect, dump, verify and export C headers for shmstore files.
#[derive(Debug, Parser)]
#[command(
    name = "shmstore",
    version,
    about = "Inspect, dump, verify, export C headers for, upgrade, compact and edit shmstore files",
    long_about = "Inspect, dump, verify, export C headers for, upgrade, compact and edit shmstore files.\n\n\
        A shmstore file keeps a layout descriptor (schema) next to every entry, so these commands \
        need no Rust types: they decode everything from the file itself. The inspection commands \
        (inspect, dump, verify, header) open the store read-only and take each entry's shared lock \
        while they copy its bytes, so they are safe to run on a store that other processes are \
        using. upgrade and compact rewrite a store, and run only while no process has it open. rm \
        and mv remove and rename entries, taking the locks the library takes.",
    after_help = "Run `shmstore help <COMMAND>` for a command's details and examples.",
    after_long_help = exit_status!()
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Show a store's header facts and a table of its entries.
    #[command(long_about = "Show a store's header facts and a table of its entries.\n\n\
        The header facts are the format version, capacity, used space, growth generation, maximum \
        and current number of entries, and creation time. Each entry gets one row: name, kind \
        (object, array, or bytes for a byte region: an array of u8), type, declared version, \
        fingerprint (16 hex digits), length in elements, bytes occupied (all slots), and commit \
        mode: `atomic` for double-buffered objects (crash-atomic commits, lock-free loads), \
        `in-place` for arrays, byte regions and objects holding atomics.\n\n\
        The entry count and the growth generation are words other processes update while the \
        store is in use, so nothing checksums them; a value no store could hold is printed with a \
        note, e.g. `entries: 4000000000 of at most 64 (impossible: more than the catalog holds; \
        the catalog lists 4)`.\n\n\
        With --json the same facts come as one JSON object, with for each entry also the file \
        offsets a reader in another language needs (data_offset, slot_stride, record_offset, \
        seq_offset, elem_size, align) and its full schema, and a list `suspicious` of the header \
        words that fail those checks (empty when all is well). Its 64-bit numbers (capacity, used, \
        generation, created_unix_nanos, offsets, sizes, lengths) are JSON numbers, or decimal \
        strings with --u64-as-string.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore inspect app.shm\n  \
            shmstore inspect app.shm --json | jq '.entries[] | {name, data_offset, slot_stride}'\n  \
            shmstore inspect app.shm --json --u64-as-string   # for JavaScript readers\n\n",
            exit_status!()
        ))]
    Inspect(InspectArgs),

    /// Decode and print values, from the store's schemas alone.
    #[command(long_about = "Decode and print values, from the store's schemas alone.\n\n\
        Without NAME, every entry is printed. Objects are printed whole; arrays are printed as the \
        elements OFFSET..OFFSET+LIMIT. Human-readable output looks like Rust's Debug output:\n\n  \
        config = Config { port: 8080, verbose: true, name: \"edge-1\", mode: Fast }\n  \
        samples[0..4] = [1.0, 2.0, 3.0, 4.0, ...]\n\n\
        A byte region is printed as its bytes OFFSET..OFFSET+LIMIT: a UTF-8-lossy preview (escaped \
        like a Rust string, trailing zero bytes counted rather than shown, at most 256 bytes), then \
        a hex dump of them all, 16 bytes a line, like `hexdump -C`: a run of lines equal to the \
        line before is shown as one `*` line, followed by the offset where the run ends.\n\n  \
        greeting[0..64] = \"hello\" + 59 zero bytes\n      \
        00000000  68 65 6c 6c 6f 00 00 00  00 00 00 00 00 00 00 00  |hello...........|\n      \
        00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n      \
        *\n      \
        00000040\n\n\
        An OFFSET at or past the end of an array or byte region is an error (exit status 1), as is \
        an OFFSET for an object named as NAME; a LIMIT reaching past the end shows what there is.\n\n\
        With --json the output is one compact JSON document (pipe it through `jq .` to read it): \
        with NAME the entry's value (an array's selected elements as a JSON array), without NAME \
        an object mapping each entry name to that. A byte region's selected bytes are a JSON string \
        if they are valid UTF-8 (zero bytes included, as \\u0000), and otherwise an array of \
        numbers 0..=255, so check the JSON type. Structs are JSON objects keyed by field name \
        (in declaration order), FixedStr text is a string, enums are their variant's name, arrays \
        are arrays, bools and atomics are their plain value.\n\n\
        An integer's JSON type follows from its Rust type, never from its value. Integers of up \
        to 32 bits are numbers. 64-bit integers (u64, i64 and their atomics) are numbers holding \
        their exact value (u64::MAX is 18446744073709551615), which typed readers (serde_json, \
        Python, Go into a uint64, Java into a long) read exactly; readers that parse every number as a double (JavaScript's \
        JSON.parse, jq before 1.7) round them beyond 2^53, so for those, --u64-as-string writes \
        every 64-bit integer as a decimal string, whatever its value. 128-bit integers are always \
        decimal strings, since few JSON readers hold more than 64 bits. Floats are numbers, \
        except NaN, Infinity and -Infinity, which JSON cannot hold: they are the strings \"NaN\", \
        \"Infinity\" and \"-Infinity\". An f32 is written with the shortest decimal that reads \
        back as the same f32.\n\n\
        A value that breaks its type's rules (a bool that is not 0 or 1, an enum value with no \
        variant, a FixedStr that is not UTF-8) is shown as <invalid: ...>, in JSON as \
        {\"$invalid\": \"...\"}; the dump then completes and exits with status 2.\n\n\
        Nothing is read whole, so any size can be dumped in little memory: arrays and byte regions \
        are copied in chunks of 1 MiB under the entry's shared lock, and values are printed as they \
        are decoded. Each chunk is a consistent snapshot, but a writer may change the entry between \
        chunks. An object is copied in one piece, one consistent snapshot. When stderr is a \
        terminal and stdout is not, a dump that runs longer than a second shows a progress bar on \
        stderr.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore dump app.shm                                  # every entry, arrays up to 100 elements\n  \
            shmstore dump app.shm config                           # one entry\n  \
            shmstore dump app.shm samples --offset 500 --limit 20  # elements 500..520\n  \
            shmstore dump app.shm samples --json > samples.json    # the whole array\n  \
            shmstore dump app.shm --json --u64-as-string           # for JavaScript readers\n\n",
            exit_status!()
        ))]
    Dump(DumpArgs),

    /// Check a store completely: structure, schemas and every value.
    #[command(long_about = "Check a store completely: structure, schemas and every value.\n\n\
        Opening the store checks the header (magic, format version, checksum, geometry) and every \
        catalog record (checksum, bounds). Then for each entry the stored schema is decoded and \
        checked against the record, and all of the entry's bytes are read in chunks and every \
        bool, enum and FixedStr value is checked against its type's rules: a bool is 0 or 1, an \
        enum holds one of its variants, a FixedStr is UTF-8 up to its first NUL byte and only NULs \
        follow. Each invalid value is reported with its path, e.g.\n\n  \
        shmstore: invalid value: rows[3].enabled: holds 7, which is not a valid bool (0 or 1)\n\n\
        On success it prints a summary such as `ok: 3 entries, 1.2 MB checked` and exits 0; \
        otherwise it exits 2 after the report. A progress bar over the bytes checked is shown on \
        stderr when stdout is a terminal.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore verify app.shm\n  \
            shmstore verify app.shm || echo \"app.shm is damaged (status $?)\"\n\n",
            exit_status!()
        ))]
    Verify(VerifyArgs),

    /// Print a C header declaring the store's types and entry locations.
    #[command(long_about = "Print a C header declaring the store's types and entry locations.\n\n\
        The header (C11, for GCC and Clang) has one struct per distinct struct type, nested types \
        first, each followed by _Static_asserts of its size, alignment and every field offset, so \
        that a compiler whose layout disagrees refuses to compile it. Types map as follows:\n\n  \
        u8..u64, i8..i64    uint8_t..uint64_t, int8_t..int64_t (<stdint.h>)\n  \
        u128, i128          unsigned __int128, __int128 (GCC and Clang on 64-bit targets)\n  \
        f32, f64            float, double\n  \
        bool                uint8_t (0 or 1), with a comment\n  \
        AtomicU32 etc.      the plain integer type, with a comment: access it with atomic operations\n  \
        enums               typedef of their integer type, plus #define Enum_Variant for each value\n  \
        FixedStr<N>         char name[N]: UTF-8, NUL-padded, not NUL-terminated when full\n  \
        [T; N]              C arrays\n\n\
        Bytes no field covers (shmstore layouts have none) become explicit uint8_t padding arrays; \
        packed and over-aligned structs get __attribute__((packed, aligned(N))). Identifiers that \
        are not valid C (tuple fields `0`, C keywords) get an underscore; two different types with \
        the same name are told apart by a fingerprint suffix.\n\n\
        For each entry (NAME being its name in upper case, other characters as _) it defines NAME_FINGERPRINT, NAME_VERSION, NAME_LEN, NAME_ELEM_SIZE, \
        NAME_SLOTS, and this file's NAME_DATA_OFFSET, NAME_SLOT_STRIDE, NAME_RECORD_OFFSET and \
        NAME_SEQ_OFFSET, and a typedef shmstore_name_t of the entry's value (an array's element), \
        and typed functions named after the entry (name as a C identifier):\n\n  \
        objects             name_load, name_load_versioned, name_store, name_store_if, name_update, name_wait_for_change\n  \
        arrays, byte regions  name_read_at, name_write_at, name_len, name_wait_for_change\n\n\
        These wrap the C ABI of the shmstore-ffi library (shmstore.h, -lshmstore_ffi), which takes \
        the same locks, commits, validation and migrations as Rust; they are declared when \
        shmstore.h can be included (define SHMSTORE_NO_ABI to leave them out). For a reader that \
        cannot link the library, a double-buffered object also gets name_read_mapped, a \
        header-only reader of a mapping of the file (shmstore_mapped_read): it follows the \
        entry's migrations, checks the record's state and fingerprint, and copies the active slot \
        with C11 atomic loads between two loads of its sequence word, with an acquire fence before \
        the second; see docs/format.md.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore header app.shm > app_store.h\n  \
            shmstore header app.shm config -o config.h\n\n",
            exit_status!()
        ))]
    Header(HeaderArgs),

    /// Remove leftover temporary stores that no process has open.
    #[command(long_about = "Remove leftover temporary stores that no process has open.\n\n\
        A temporary store (Store::create_temp, open_temp, open_or_create_temp) is removed when the \
        last process using it closes it; a store whose processes all died, e.g. killed with \
        SIGKILL, stays behind until its name is opened again, or until this command removes it. \
        It looks in $SHMSTORE_TEMP_DIR, or /dev/shm, and removes every temporary store of this \
        user that no process holds, printing the name of each one it removed on stdout, one per \
        line; when there is none, it says so on stderr. Stores in use are left alone.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore clean-temp\n  \
            SHMSTORE_TEMP_DIR=/run/user/1000 shmstore clean-temp\n\n",
            exit_status!()
        ))]
    CleanTemp,

    /// Convert a store of format version 1 to version 2, in place (the store must be closed).
    #[command(long_about = "Convert a store of format version 1 to version 2, in place.\n\n\
        A store written by an older shmstore (format version 1) can be read by this version, but \
        not changed: programs that open it read-write are told to run this command. It keeps \
        every entry (name, kind, type, version, value; a migrated entry keeps its current layout \
        and value) and also compacts the store, like `shmstore compact`. A store that already has \
        format version 2 is left alone.\n\n\
        It runs only while no process has the store open: it checks through the file's lock, \
        without waiting, and otherwise names the processes that hold it (exit status 1). While it \
        runs, programs that open the store are refused (or wait, with a lock timeout). It writes \
        the new store to a hidden temporary file beside the original (.NAME.PID.NANOS.upgrading), \
        makes it durable and renames it over the original, so that a crash or a power loss at any \
        moment leaves either the old store or the new one, whole. The next run removes the \
        temporary files of runs that died.",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore upgrade app.shm\n  \
            shmstore inspect app.shm   # `format: 2`\n\n",
            exit_status!()
        ))]
    Upgrade(FileArgs),

    /// Rewrite a store without holes or free space, shrinking the file (the store must be closed).
    #[command(long_about = "Rewrite a store without holes or free space, shrinking the file.\n\n\
        A store reuses the space of removed, resized and migrated entries for new ones, but never \
        gives it back to the file system while it is open. This command rewrites the store with \
        its entries packed one after another, and the file shrinks to what they need; it grows \
        again as entries are added. Every entry keeps its name, kind, type, version and value, \
        and parts of arrays and byte regions that were never written stay holes (they take no \
        disk space). A store of format version 1 also comes out as version 2, as from `shmstore \
        upgrade`. It prints the file's size and disk use before and after.\n\n\
        It runs only while no process has the store open, and replaces the file crash-atomically \
        through a temporary file, exactly like `shmstore upgrade` (see `shmstore help upgrade`).",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore compact app.shm\n  \
            systemctl stop app && shmstore compact /var/lib/app/state.shm && systemctl start app\n\n",
            exit_status!()
        ))]
    Compact(FileArgs),

    /// Remove an entry from a store.
    #[command(long_about = "Remove an entry from a store.\n\n\
        The entry's name no longer resolves, and its space is reused by entries created later \
        (`shmstore compact` gives it back to the file system). Programs that have the entry open \
        get an error on their next access to it, saying it was removed. The removal is \
        crash-atomic and made durable before the command returns.\n\n\
        Unlike upgrade and compact, it works on a store in use: it takes the locks the library \
        takes, so it waits while another process holds a guard on the entry. A store of format \
        version 1 must be upgraded first (`shmstore upgrade`).",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore rm app.shm worker-17\n\n",
            exit_status!()
        ))]
    Rm(RmArgs),

    /// Rename an entry of a store.
    #[command(long_about = "Rename an entry of a store.\n\n\
        Atomically, and after a crash at any instant, exactly one of the two names finds the \
        entry; its data is not copied. TO must not name another entry. Programs that have the \
        entry open get an error on their next access to it, naming TO, by which they can open it \
        again. The change is made durable before the command returns.\n\n\
        Like rm, it works on a store in use and takes the locks the library takes. A store of \
        format version 1 must be upgraded first (`shmstore upgrade`).",
        after_long_help = concat!(
            "Examples:\n  \
            shmstore mv app.shm config config-old\n\n",
            exit_status!()
        ))]
    Mv(MvArgs),
}

/// Arguments of `shmstore rm`.
#[derive(Debug, Args)]
struct RmArgs {
    /// The store file.
    file: PathBuf,
    /// The entry to remove.
    name: String,
}

/// Arguments of `shmstore mv`.
#[derive(Debug, Args)]
struct MvArgs {
    /// The store file.
    file: PathBuf,
    /// The entry's current name.
    from: String,
    /// Its new name.
    to: String,
}

/// Arguments of the commands that take just a store file.
#[derive(Debug, Args)]
struct FileArgs {
    /// The store file.
    file: PathBuf,
}

/// Arguments of `shmstore inspect`.
#[derive(Debug, Args)]
struct InspectArgs {
    /// The store file.
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// With --json, write 64-bit numbers as decimal strings (for JavaScript readers).
    #[arg(long, requires = "json")]
    u64_as_string: bool,
}

/// Arguments of `shmstore dump`.
#[derive(Debug, Args)]
struct DumpArgs {
    /// The store file.
    file: PathBuf,
    /// The entry to dump (default: every entry).
    name: Option<String>,
    /// Print one compact JSON document instead of Rust-like text.
    #[arg(long)]
    json: bool,
    /// With --json, write every 64-bit integer as a decimal string (for JavaScript readers); by
    /// default they are exact JSON numbers.
    #[arg(long, requires = "json")]
    u64_as_string: bool,
    /// The first array element (or byte of a byte region) to print; past the end is an error.
    #[arg(long, value_name = "N", default_value_t = 0)]
    offset: u64,
    /// How many array elements to print at most [default: 100 for text, all for --json].
    #[arg(long, value_name = "N", conflicts_with = "all")]
    limit: Option<u64>,
    /// Print every array element, even as text.
    #[arg(long)]
    all: bool,
}

/// Arguments of `shmstore verify`.
#[derive(Debug, Args)]
struct VerifyArgs {
    /// The store file.
    file: PathBuf,
    /// How many invalid values to report at most (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    max_reports: u64,
}

/// Arguments of `shmstore header`.
#[derive(Debug, Args)]
struct HeaderArgs {
    /// The store file.
    file: PathBuf,
    /// The entry to export (default: every entry).
    name: Option<String>,
    /// Write the header to this file instead of stdout.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and --version are successes; everything else is a usage error.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match cli.command {
        Command::Inspect(a) => inspect::run(&a.file, a.json.then_some(ints(a.u64_as_string)), &mut out)?,
        Command::Dump(a) => {
            let limit = match (a.all, a.limit, a.json) {
                (true, _, _) => None,
                (false, Some(n), _) => Some(n),
                (false, None, true) => None,
                (false, None, false) => Some(dump::DEFAULT_TEXT_LIMIT),
            };
            let opts = dump::Options { json: a.json, ints: ints(a.u64_as_string), offset: a.offset, limit };
            dump::run(&a.file, a.name.as_deref(), &opts, &mut out)?;
        }
        Command::Verify(a) => verify::run(&a.file, a.max_reports, &mut out)?,
        Command::CleanTemp => {
            let removed = shmstore::Store::clean_temp()?;
            for name in &removed {
                writeln!(out, "{}", escape::text(name))?;
            }
            if removed.is_empty() {
                let dir = std::env::var_os(shmstore::TEMP_DIR_VAR)
                    .filter(|d| !d.is_empty())
                    .map_or_else(|| PathBuf::from(shmstore::DEFAULT_TEMP_DIR), PathBuf::from);
                eprintln!("shmstore: nothing to clean: no leftover temporary stores in `{}`", escape::path(&dir));
            }
        }
        Command::Upgrade(a) => maintain::upgrade(&a.file, &mut out)?,
        Command::Compact(a) => maintain::compact(&a.file, &mut out)?,
        Command::Rm(a) => maintain::rm(&a.file, &a.name, &mut out)?,
        Command::Mv(a) => maintain::mv(&a.file, &a.from, &a.to, &mut out)?,
        Command::Header(a) => {
            let text = cheader::run(&a.file, a.name.as_deref())?;
            match a.output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", escape::path(&path))))?,
                None => out.write_all(text.as_bytes())?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// How JSON writes wide integers, from the `--u64-as-string` flag.
fn ints(as_string: bool) -> json::Ints {
    if as_string {
        json::Ints::U64AsString
    } else {
        json::Ints::Numbers
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
