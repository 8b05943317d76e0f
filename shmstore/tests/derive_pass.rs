//! Runtime checks of the layouts that `#[derive(SharedLayout)]` generates for every accepted shape.

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::{AtomicBool, AtomicU64};

use shmstore::{FixedStr, Layout, Primitive, SharedLayout, TypeKind, Variant};

fn fields(layout: &Layout) -> &'static [shmstore::Field] {
    match layout.kind {
        TypeKind::Struct { fields } => fields,
        other => panic!("expected a struct layout, got {other:?}"),
    }
}

fn variants(layout: &Layout) -> (Primitive, &'static [Variant]) {
    match layout.kind {
        TypeKind::Enum { repr, variants } => (repr, variants),
        other => panic!("expected an enum layout, got {other:?}"),
    }
}

#[derive(SharedLayout, Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Idle,
    Serving,
    Draining = 7,
    Stopped,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Config {
    max_conn: u64,
    timeout_ms: u32,
    port: u16,
    mode: Mode,
    verbose: bool,
    r#type: i32,
    ratio: f32,
}

#[test]
fn named_struct_fields_offsets_and_sizes() {
    let layout = Config::LAYOUT;
    assert_eq!(layout.type_name, "Config");
    assert_eq!(layout.size, size_of::<Config>());
    assert_eq!(layout.align, align_of::<Config>());
    assert_eq!(layout.version, 1, "the default version is 1");

    let fields = fields(&layout);
    let names: Vec<_> = fields.iter().map(|f| f.name).collect();
    assert_eq!(names, ["max_conn", "timeout_ms", "port", "mode", "verbose", "type", "ratio"]);
    let offsets: Vec<_> = fields.iter().map(|f| f.offset).collect();
    assert_eq!(
        offsets,
        [
            offset_of!(Config, max_conn),
            offset_of!(Config, timeout_ms),
            offset_of!(Config, port),
            offset_of!(Config, mode),
            offset_of!(Config, verbose),
            offset_of!(Config, r#type),
            offset_of!(Config, ratio),
        ]
    );
    assert_eq!(*fields[0].layout, u64::LAYOUT);
    assert_eq!(*fields[1].layout, u32::LAYOUT);
    assert_eq!(*fields[2].layout, u16::LAYOUT);
    assert_eq!(*fields[3].layout, Mode::LAYOUT);
    assert_eq!(*fields[4].layout, bool::LAYOUT);
    assert_eq!(*fields[5].layout, i32::LAYOUT);
    assert_eq!(*fields[6].layout, f32::LAYOUT);
    // No padding: the fields tile the struct exactly.
    assert_eq!(fields.iter().map(|f| f.layout.size).sum::<usize>(), layout.size);
    assert!(layout.needs_validation(), "bool and enum fields need validation");
    assert!(!layout.contains_atomics());
}

#[derive(SharedLayout)]
#[repr(C)]
struct Pair(u32, i16, u16);

#[test]
fn tuple_struct_fields_are_named_by_index() {
    let layout = Pair::LAYOUT;
    assert_eq!(layout.type_name, "Pair");
    assert_eq!(layout.size, 8);
    let fields = fields(&layout);
    assert_eq!(fields.iter().map(|f| f.name).collect::<Vec<_>>(), ["0", "1", "2"]);
    assert_eq!(fields[1].offset, offset_of!(Pair, 1));
    assert_eq!(fields[2].offset, offset_of!(Pair, 2));
    assert_eq!(*fields[1].layout, i16::LAYOUT);
    assert!(!layout.needs_validation());
}

#[derive(SharedLayout)]
#[repr(transparent)]
struct Meters(f64);

#[derive(SharedLayout)]
#[repr(transparent)]
struct Flag {
    on: bool,
}

#[test]
fn transparent_structs() {
    assert_eq!((Meters::LAYOUT.size, Meters::LAYOUT.align), (8, 8));
    assert_eq!(fields(&Meters::LAYOUT)[0].name, "0");
    assert_eq!(*fields(&Meters::LAYOUT)[0].layout, f64::LAYOUT);
    let err = Flag::LAYOUT.validate(&[2]).unwrap_err();
    assert_eq!(err.path, "value.on");
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(SharedLayout)]
#[repr(C)]
struct Shape {
    origin: Point,
    corners: [Point; 4],
    modes: [Mode; 3],
    visible: bool,
    _pad: [u8; 4],
}

#[test]
fn nested_structs_and_arrays_of_structs() {
    let layout = Shape::LAYOUT;
    assert_eq!(layout.size, size_of::<Shape>());
    let fields = fields(&layout);
    assert_eq!(*fields[0].layout, Point::LAYOUT);
    assert_eq!(fields[1].offset, offset_of!(Shape, corners));
    match fields[1].layout.kind {
        TypeKind::Array { elem, len } => {
            assert_eq!(len, 4);
            assert_eq!(*elem, Point::LAYOUT);
        }
        other => panic!("expected an array, got {other:?}"),
    }
    assert_eq!(fields[1].layout.display_name(), "[Point; 4]");
    assert_eq!(fields[2].layout.display_name(), "[Mode; 3]");
    assert_eq!(fields[4].name, "_pad", "explicit padding is an ordinary field");
}

#[derive(SharedLayout)]
#[repr(C)]
struct Service {
    name: FixedStr<24>,
    requests: AtomicU64,
    ready: AtomicBool,
    _pad: [u8; 7],
}

#[test]
fn fixed_str_and_atomic_fields() {
    let layout = Service::LAYOUT;
    assert_eq!(layout.size, 40);
    let fields = fields(&layout);
    assert_eq!(fields[0].layout.kind, TypeKind::FixedStr { capacity: 24 });
    assert_eq!(fields[1].layout.kind, TypeKind::Atomic(Primitive::U64));
    assert_eq!(fields[1].offset, 24);
    assert!(layout.contains_atomics());

    let mut bytes = vec![0u8; layout.size];
    bytes[..5].copy_from_slice(b"web-1");
    assert!(layout.validate(&bytes).is_ok());
    bytes[6] = b'x'; // text after the terminating NUL
    assert_eq!(layout.validate(&bytes).unwrap_err().path, "value.name");
    bytes[6] = 0;
    bytes[offset_of!(Service, ready)] = 3;
    assert_eq!(layout.validate(&bytes).unwrap_err().path, "value.ready");
}

#[derive(SharedLayout)]
#[repr(C, packed)]
struct Header {
    len: u32,
    kind: u16,
    tag: u8,
    flag: bool,
}

#[derive(SharedLayout)]
#[repr(C, align(32))]
struct Slot {
    seq: u64,
    _pad: [u8; 24],
}

#[test]
fn packed_and_aligned_structs() {
    let layout = Header::LAYOUT;
    assert_eq!((layout.size, layout.align), (8, 1));
    let offsets: Vec<_> = fields(&layout).iter().map(|f| f.offset).collect();
    assert_eq!(offsets, [0, 4, 6, 7]);

    assert_eq!((Slot::LAYOUT.size, Slot::LAYOUT.align), (32, 32));
}

#[derive(SharedLayout)]
#[repr(C)]
#[shared(version = 42)]
struct Versioned {
    x: u32,
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u16)]
#[shared(version = 3)]
enum Port {
    Http = 80,
    Https = 443,
    Next,
}

#[test]
fn versions() {
    assert_eq!(Versioned::LAYOUT.version, 42);
    assert_eq!(Port::LAYOUT.version, 3);
    assert_eq!(Mode::LAYOUT.version, 1);
    assert_eq!(Point::LAYOUT.version, 1);
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u32)]
enum Code {
    Ok,
    Far = 100_000,
}

#[derive(SharedLayout, Clone, Copy)]
#[repr(u64)]
enum Big {
    Low = 1,
    High = u64::MAX,
}

#[test]
fn enum_layouts() {
    let (repr, vs) = variants(&Mode::LAYOUT);
    assert_eq!(repr, Primitive::U8);
    assert_eq!(Mode::LAYOUT.type_name, "Mode");
    assert_eq!((Mode::LAYOUT.size, Mode::LAYOUT.align), (1, 1));
    let pairs: Vec<_> = vs.iter().map(|v| (v.name, v.value)).collect();
    assert_eq!(pairs, [("Idle", 0), ("Serving", 1), ("Draining", 7), ("Stopped", 8)]);

    let (repr, vs) = variants(&Port::LAYOUT);
    assert_eq!(repr, Primitive::U16);
    assert_eq!(Port::LAYOUT.size, 2);
    assert_eq!(vs.iter().map(|v| v.value).collect::<Vec<_>>(), [80, 443, 444]);

    let (repr, vs) = variants(&Code::LAYOUT);
    assert_eq!(repr, Primitive::U32);
    assert_eq!(vs[1], Variant { name: "Far", value: 100_000 });

    let (repr, vs) = variants(&Big::LAYOUT);
    assert_eq!((repr, Big::LAYOUT.size), (Primitive::U64, 8));
    assert_eq!(vs[1].value, u64::MAX);
}

#[test]
fn enum_validation() {
    assert!(Mode::LAYOUT.validate(&[7]).is_ok());
    let err = Mode::LAYOUT.validate(&[2]).unwrap_err();
    assert_eq!(err.path, "value");
    assert_eq!(err.to_string(), "value holds 2, which is not a variant of enum `Mode`");
    assert!(Port::LAYOUT.validate(&443u16.to_ne_bytes()).is_ok());
    assert!(Port::LAYOUT.validate(&81u16.to_ne_bytes()).is_err());
    assert!(Big::LAYOUT.validate(&u64::MAX.to_ne_bytes()).is_ok());
    assert!(Big::LAYOUT.validate(&0u64.to_ne_bytes()).is_err());
}

#[test]
fn struct_validation_names_the_bad_field() {
    let layout = Config::LAYOUT;
    let mut bytes = vec![0u8; layout.size];
    assert!(layout.validate(&bytes).is_ok(), "all zeros is a valid Config");

    bytes[offset_of!(Config, mode)] = 5;
    let err = layout.validate(&bytes).unwrap_err();
    assert_eq!(err.path, "value.mode");
    assert_eq!(err.to_string(), "value.mode holds 5, which is not a variant of enum `Mode`");

    bytes[offset_of!(Config, mode)] = Mode::Stopped as u8;
    bytes[offset_of!(Config, verbose)] = 2;
    let err = layout.validate(&bytes).unwrap_err();
    assert_eq!(err.path, "value.verbose");
    assert_eq!(err.to_string(), "value.verbose holds 2, which is not a valid bool (0 or 1)");
}

#[test]
fn nested_validation_paths() {
    let layout = Shape::LAYOUT;
    let mut bytes = vec![0u8; layout.size];
    assert!(layout.validate(&bytes).is_ok());
    bytes[offset_of!(Shape, modes) + 2] = 9;
    assert_eq!(layout.validate(&bytes).unwrap_err().path, "value.modes[2]");
    bytes[offset_of!(Shape, modes) + 2] = 1;
    bytes[offset_of!(Shape, visible)] = 0xff;
    assert_eq!(layout.validate(&bytes).unwrap_err().path, "value.visible");
}

mod generic_use {
    use shmstore::SharedLayout;

    /// The derived impl is a real `SharedLayout` impl, usable through generic code.
    pub fn size_of_layout<T: SharedLayout>() -> usize {
        T::LAYOUT.size
    }
}

#[test]
fn derived_types_work_in_generic_code() {
    assert_eq!(generic_use::size_of_layout::<Config>(), size_of::<Config>());
    assert_eq!(generic_use::size_of_layout::<[Point; 3]>(), 24);
    assert_eq!(generic_use::size_of_layout::<Mode>(), 1);
}
