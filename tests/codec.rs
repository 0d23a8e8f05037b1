//! Every format code, the spec's examples, canonical encoding, lossless re-encoding, and a
//! rejection test for each class of malformed input.

use amqpwire::codec::format as fc;
use amqpwire::codec::{
    Array, DecodeOptions, ErrorKind, Fmt, Mode, Symbol, Timestamp, Uuid, Value, ValueRef,
};
use bytes::Bytes;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}

/// Decodes `h` (lossless), checks it equals `expected`, re-encodes to the same bytes, and
/// checks the borrowed view agrees.
fn lossless(h: &str, expected: Value) {
    let bytes = hex(h);
    let v = Value::decode(&bytes).unwrap_or_else(|e| panic!("{h}: {e}"));
    assert_eq!(v, expected, "{h}");
    assert_eq!(v.to_vec(), bytes, "re-encoding {h}");
    assert_eq!(v.encoded_len(), bytes.len(), "encoded_len of {h}");
    let (r, used) = ValueRef::decode(&bytes).unwrap_or_else(|e| panic!("{h} borrowed: {e}"));
    assert_eq!(used, bytes.len());
    assert_eq!(r.to_owned_value().expect("owned"), expected, "borrowed view of {h}");
}

fn canonical(v: Value, h: &str) {
    assert_eq!(v.to_vec(), hex(h), "canonical encoding of {v:?}");
    assert_eq!(v.encoded_len(), hex(h).len());
}

fn strict_err(h: &str) -> ErrorKind {
    match Value::decode(&hex(h)) {
        Ok(v) => panic!("{h} decoded to {v:?}, expected an error"),
        Err(e) => e.into_detail().kind,
    }
}

#[test]
fn decodes_every_fixed_width_format_code() {
    lossless("40", Value::Null);
    lossless("41", Value::from(true));
    lossless("42", Value::from(false));
    lossless("5601", Value::from(true));
    lossless("5600", Value::from(false));
    lossless("50ff", Value::Ubyte(255));
    lossless("60ffff", Value::Ushort(65535));
    lossless("43", Value::from(0u32));
    lossless("5207", Value::from(7u32));
    lossless("7000000007", Value::from(7u32));
    lossless("70ffffffff", Value::from(u32::MAX));
    lossless("44", Value::from(0u64));
    lossless("5310", Value::from(16u64));
    lossless("800000000000000010", Value::from(16u64));
    lossless("51ff", Value::Byte(-1));
    lossless("61fffe", Value::Short(-2));
    lossless("54fd", Value::from(-3i32));
    lossless("71fffffffd", Value::from(-3i32));
    lossless("5580", Value::from(-128i64));
    lossless("81ffffffffffffff80", Value::from(-128i64));
    lossless("723fc00000", Value::Float(1.5));
    lossless("82400c000000000000", Value::Double(3.5));
    lossless("7401020304", Value::Decimal32([1, 2, 3, 4]));
    lossless("840102030405060708", Value::Decimal64([1, 2, 3, 4, 5, 6, 7, 8]));
    lossless(
        "94000102030405060708090a0b0c0d0e0f",
        Value::Decimal128(core::array::from_fn(|i| i as u8)),
    );
    lossless("7300000041", Value::Char('A'));
    lossless("730001f600", Value::Char('😀'));
    lossless("8300000000499602d2", Value::Timestamp(Timestamp(1_234_567_890)));
    lossless(
        "98000102030405060708090a0b0c0d0e0f",
        Value::Uuid(Uuid(core::array::from_fn(|i| i as u8))),
    );
}

#[test]
fn decodes_every_variable_width_format_code() {
    lossless("a003010203", Value::from(Bytes::from_static(&[1, 2, 3])));
    lossless("b000000003010203", Value::from(Bytes::from_static(&[1, 2, 3])));
    lossless("a102c3a9", Value::from("é"));
    lossless("b100000002c3a9", Value::from("é"));
    lossless("a303666f6f", Value::Symbol(Symbol::from("foo"), Fmt::Auto));
    lossless("b300000003666f6f", Value::Symbol(Symbol::from("foo"), Fmt::Auto));
    lossless("a100", Value::from(""));
}

#[test]
fn decodes_every_compound_format_code() {
    lossless("45", Value::List(vec![], Fmt::Auto));
    lossless("c0040241 5201", Value::List(vec![true.into(), 1u32.into()], Fmt::Auto));
    lossless(
        "d0 00000007 00000002 41 5201",
        Value::List(vec![true.into(), 1u32.into()], Fmt::Auto),
    );
    lossless("c1 01 00", Value::Map(vec![], Fmt::Auto));
    lossless(
        "c1 06 02 a30161 5201",
        Value::Map(vec![(Value::Symbol("a".into(), Fmt::Auto), 1u32.into())], Fmt::Auto),
    );
    lossless(
        "d1 00000009 00000002 a30161 5201",
        Value::Map(vec![(Value::Symbol("a".into(), Fmt::Auto), 1u32.into())], Fmt::Auto),
    );
    // array8 of smalluint, array32 of uint.
    lossless(
        "e0 04 02 52 01 02",
        Value::Array(Array::new(vec![1u32.into(), 2u32.into()]).expect("array")),
    );
    lossless(
        "f0 0000000d 00000002 70 00000001 00000002",
        Value::Array(Array::new(vec![1u32.into(), 2u32.into()]).expect("array")),
    );
}

#[test]
fn decodes_arrays_of_described_lists_and_arrays() {
    // An array of two described symbols sharing descriptor 0x...77.
    let v = Value::decode(&hex("e0 09 02 00 53 77 a3 01 61 01 62")).expect("described array");
    let Value::Array(a) = &v else { panic!("{v:?}") };
    assert_eq!(a.descriptor(), Some(&Value::from(0x77u64)));
    assert_eq!(
        a.items(),
        &[Value::Symbol("a".into(), Fmt::Auto), Value::Symbol("b".into(), Fmt::Auto)]
    );
    assert_eq!(v.to_vec(), hex("e0 09 02 00 53 77 a3 01 61 01 62"));
    // An array of two list8s: [[true], []].
    lossless(
        "e0 07 02 c0 02 01 41 01 00",
        Value::Array(
            Array::new(vec![
                Value::List(vec![true.into()], Fmt::Auto),
                Value::List(vec![], Fmt::Auto),
            ])
            .expect("lists"),
        ),
    );
    // An array of two arrays of smalluint: [[1], [2, 3]].
    let inner1 = Value::Array(Array::new(vec![1u32.into()]).expect("inner"));
    let inner2 = Value::Array(Array::new(vec![2u32.into(), 3u32.into()]).expect("inner"));
    lossless(
        "e0 0b 02 e0 03 01 52 01 04 02 52 02 03",
        Value::Array(Array::new(vec![inner1, inner2]).expect("outer")),
    );
}

#[test]
fn decodes_nested_described_types_with_both_descriptor_forms() {
    let by_code = hex("00 53 24 45");
    let by_name = hex("00 a3 12 616d71703a61636365707465643a6c697374 45");
    for b in [by_code, by_name] {
        let v = Value::decode(&b).expect("described");
        assert_eq!(v.to_vec(), b);
        let Value::Described(d) = v else { panic!() };
        assert_eq!(d.value, Value::List(vec![], Fmt::Auto));
    }
    // A described value whose value is itself described.
    lossless(
        "00 53 01 00 53 02 41",
        Value::Described(Box::new(amqpwire::codec::Described {
            descriptor: 1u64.into(),
            value: Value::Described(Box::new(amqpwire::codec::Described {
                descriptor: 2u64.into(),
                value: true.into(),
            })),
        })),
    );
}

#[test]
fn keeps_non_canonical_encodings_byte_for_byte() {
    // uint 5 as a four-octet uint, ulong 0 as a smallulong, a list32 holding one byte,
    // a str32 holding two.
    for h in [
        "7000000005",
        "5300",
        "d0 00000005 00000001 40",
        "b1 00000002 6869",
        "5600",
        "e0 06 01 70 00000001",
    ] {
        let b = hex(h);
        assert_eq!(Value::decode(&b).expect(h).to_vec(), b, "{h}");
    }
}

#[test]
fn encodes_built_values_canonically() {
    canonical(Value::from(0u32), "43");
    canonical(Value::from(255u32), "52ff");
    canonical(Value::from(256u32), "7000000100");
    canonical(Value::from(0u64), "44");
    canonical(Value::from(200u64), "53c8");
    canonical(Value::from(-128i32), "5480");
    canonical(Value::from(128i32), "7100000080");
    canonical(Value::from(true), "41");
    canonical(Value::from("a"), "a10161");
    canonical(Value::from("x".repeat(256).as_str()), &format!("b100000100{}", "78".repeat(256)));
    canonical(Value::List(vec![], Fmt::Auto), "45");
    canonical(Value::Map(vec![], Fmt::Auto), "c10100");
    canonical(Value::Array(Array::symbols([Symbol::from("a")])), "e00401a30161");
    // A remembered code that cannot hold the value falls back to the canonical one.
    canonical(Value::Uint(300, Fmt::Code(fc::SMALLUINT)), "700000012c");
    canonical(Value::Boolean(false, Fmt::Code(fc::TRUE)), "42");
}

#[test]
fn picks_list32_exactly_when_list8_cannot_hold_the_size() {
    // 253 bytes of elements: size = 254 fits list8. 254 bytes: size 255 still fits.
    // 255 bytes: size 256 needs list32 (the edge that rabbitmq-amqp1.0 #21 got wrong).
    for (elems, code) in [(253usize, fc::LIST8), (254, fc::LIST8), (255, fc::LIST32)] {
        let s = "x".repeat(elems - 2);
        let v = Value::List(vec![Value::from(s.as_str())], Fmt::Auto);
        let b = v.to_vec();
        assert_eq!(b[0], code, "{elems} bytes of elements");
        assert_eq!(Value::decode(&b).expect("round trip"), v);
    }
}

#[test]
fn rejects_each_class_of_malformed_input() {
    assert_eq!(strict_err("a1 02 c328"), ErrorKind::InvalidUtf8);
    assert_eq!(strict_err("a3 01 e9"), ErrorKind::InvalidSymbol);
    assert_eq!(strict_err("73 0000d800"), ErrorKind::InvalidChar(0xd800));
    assert_eq!(strict_err("73 00110000"), ErrorKind::InvalidChar(0x11_0000));
    assert_eq!(strict_err("c1 02 01 41"), ErrorKind::OddMapCount(1));
    assert_eq!(strict_err("5602"), ErrorKind::InvalidBoolean(2));
    assert_eq!(strict_err("c0 00"), ErrorKind::SizeTooSmall { size: 0, minimum: 1 });
    assert_eq!(strict_err("d0 00000003 000000"), ErrorKind::SizeTooSmall { size: 3, minimum: 4 });
    assert_eq!(strict_err("c0 02 05 41"), ErrorKind::CountExceedsSize { count: 5, bytes: 1 });
    assert_eq!(strict_err("c0 03 01 41 41"), ErrorKind::TrailingBytes { within: "list8", left: 1 });
    assert_eq!(strict_err("ff"), ErrorKind::UnknownFormatCode(0xff));
    assert_eq!(strict_err("c0 02 01 ee"), ErrorKind::UnknownFormatCode(0xee));
    assert!(matches!(strict_err("a1 05 6869"), ErrorKind::Truncated { needed: 5, available: 2 }));
    assert!(matches!(strict_err("70 0000"), ErrorKind::Truncated { .. }));
    // Bytes after the one value.
    assert!(matches!(strict_err("41 41"), ErrorKind::TrailingBytes { .. }));
    // An array that claims more fixed-width elements than its bytes hold.
    assert!(matches!(strict_err("e0 04 03 70 0000"), ErrorKind::CountExceedsSize { .. }));
    // A list claiming 2^32-1 elements in a few bytes: refused before any allocation.
    assert!(matches!(strict_err("d0 00000004 ffffffff"), ErrorKind::CountExceedsSize { .. }));
    // A zero-width array that claims billions of nulls.
    assert!(matches!(strict_err("f0 00000005 ffffffff 40"), ErrorKind::ArrayTooLong { .. }));
    // A descriptor cannot be an array element constructor twice over.
    assert!(matches!(strict_err("e0 05 01 00 53 01 00"), ErrorKind::InvalidArrayConstructor(0)));
}

#[test]
fn reports_the_exact_offset_of_the_fault() {
    let e = Value::decode(&hex("c0 06 02 41 a1 02 c328")).expect_err("bad utf8 inside a list");
    assert_eq!(e.offset, 4, "{e}");
    let e = Value::decode(&hex("c0 04 02 41 ee 00")).expect_err("unknown code");
    assert_eq!(e.offset, 4, "{e}");
    assert!(e.to_string().contains("offset 4"), "{e}");
}

#[test]
fn enforces_the_depth_limit() {
    // 100 nested list8s.
    let mut b = vec![0x45];
    for _ in 0..100 {
        let mut outer = vec![0xc0, (b.len() + 1) as u8, 1];
        if b.len() + 1 > 255 {
            break;
        }
        outer.extend_from_slice(&b);
        b = outer;
    }
    let depth = b.iter().filter(|&&x| x == 0xc0).count();
    assert!(depth > 64);
    assert!(matches!(Value::decode(&b).expect_err("too deep").kind, ErrorKind::DepthLimit(64)));
    let opts = DecodeOptions { mode: Mode::Strict, max_depth: 200 };
    assert!(Value::decode_with(&b, opts).is_ok());
    let (r, _) = ValueRef::decode(&b).expect("lazy view reads the top level only");
    assert!(r.validate(10).is_err());
    assert!(r.validate(200).is_ok());
}

#[test]
fn lenient_mode_accepts_known_deviations_with_warnings() {
    let lenient = DecodeOptions::LENIENT;
    let mut r = amqpwire::codec::Reader::new(&[0x56, 0x02], lenient);
    assert_eq!(Value::read(&mut r).expect("lenient boolean"), Value::from(true));
    assert_eq!(r.warnings().len(), 1);
    assert_eq!(r.warnings()[0].kind, ErrorKind::InvalidBoolean(2));

    let b = hex("c0 03 01 41 41");
    let mut r = amqpwire::codec::Reader::new(&b, lenient);
    assert_eq!(
        Value::read(&mut r).expect("trailing bytes skipped"),
        Value::List(vec![true.into()], Fmt::Auto)
    );
    assert!(matches!(r.warnings()[0].kind, ErrorKind::TrailingBytes { .. }));

    let b = hex("a1 02 c328");
    let mut r = amqpwire::codec::Reader::new(&b, lenient);
    assert_eq!(Value::read(&mut r).expect("lossy string").as_str(), Some("\u{fffd}("));
    assert_eq!(r.warnings()[0].kind, ErrorKind::InvalidUtf8);
}

#[test]
fn borrowed_view_borrows_and_reads_lazily() {
    let b = hex("c0 0d 03 a1 03 616263 a0 02 0102 c0 01 00");
    let (v, n) = ValueRef::decode(&b).expect("list");
    assert_eq!(n, b.len());
    let ValueRef::List(l) = v else { panic!() };
    let items: Vec<_> = l.iter().collect::<Result<_, _>>().expect("items");
    assert_eq!(items[0], ValueRef::String("abc"));
    let ValueRef::String(s) = items[0] else { panic!() };
    // The string points into the input buffer.
    assert!(std::ptr::eq(s.as_ptr(), b[5..].as_ptr()));
    assert_eq!(items[1], ValueRef::Binary(&[1, 2]));
    // A malformed element is reported when the iterator reaches it, with its offset.
    let bad = hex("c0 04 02 41 ee 40");
    let (v, _) = ValueRef::decode(&bad).expect("outer list is sound");
    let ValueRef::List(l) = v else { panic!() };
    let mut it = l.iter();
    assert_eq!(it.next().expect("first").expect("true"), ValueRef::Boolean(true));
    let e = it.next().expect("second").expect_err("bad code");
    assert_eq!(e.offset, 4);
    assert!(it.next().is_none());
}

#[test]
fn strings_share_the_input_bytes() {
    let src = Bytes::from(hex("a1 05 68656c6c6f"));
    let mut r = amqpwire::codec::Reader::from_bytes(&src, DecodeOptions::STRICT);
    let Value::String(s, _) = Value::read(&mut r).expect("string") else { panic!() };
    assert_eq!(&*s, "hello");
    assert!(std::ptr::eq(s.as_bytes().as_ptr(), src[2..].as_ptr()));
}

#[test]
fn rejects_maps_with_a_key_twice() {
    // {"a": true, "a": false}: invalid (part 1, 1.6.23), even with the key encoded two ways.
    let e = strict_err("c1 0c 04 a10161 41 b10000000161 42");
    assert_eq!(e, ErrorKind::DuplicateKey("\"a\"".into()));
    assert_eq!(e.to_string(), "map has the key \"a\" twice");
    // 40 distinct keys pass; the same 40 plus a repeat of the first fail (the large-map path).
    let mut pairs: Vec<(Value, Value)> =
        (0..40u64).map(|i| (Value::from(i), Value::Null)).collect();
    let ok = Value::Map(pairs.clone(), Fmt::Auto).to_vec();
    assert!(Value::decode(&ok).is_ok());
    pairs.push((Value::Ulong(0, Fmt::Code(fc::ULONG)), Value::Null));
    let dup = Value::Map(pairs, Fmt::Auto).to_vec();
    let e = Value::decode(&dup).expect_err("dup");
    assert_eq!(e.kind, ErrorKind::DuplicateKey("0".into()), "the key as people read it");
    // Lenient keeps both entries and warns.
    let mut r = amqpwire::codec::Reader::new(&dup, DecodeOptions::LENIENT);
    let Value::Map(p, _) = Value::read(&mut r).expect("lenient") else { panic!() };
    assert_eq!(p.len(), 41);
    assert!(matches!(r.warnings()[0].kind, ErrorKind::DuplicateKey(_)));
}

#[test]
fn a_fields_map_with_a_key_twice_is_refused_small_or_large() {
    use amqpwire::types::{Codec, Fields};
    for n in [3usize, 40] {
        let mut fields: Vec<(Symbol, Value)> =
            (0..n).map(|i| (Symbol::from(format!("k{i}").as_str()), Value::Null)).collect();
        let encode = |f: Fields| {
            let mut out = Vec::new();
            f.encode(&mut out);
            out
        };
        let ok = encode(Fields(fields.clone()));
        let mut r = amqpwire::codec::Reader::new(&ok, DecodeOptions::STRICT);
        assert_eq!(Fields::read_opt(&mut r).expect("distinct").map(|f| f.0.len()), Some(n));
        fields.push((Symbol::from("k1"), Value::Boolean(true, Fmt::Auto)));
        let dup = encode(Fields(fields));
        let mut r = amqpwire::codec::Reader::new(&dup, DecodeOptions::STRICT);
        let e = Fields::read_opt(&mut r).expect_err("k1 twice");
        assert_eq!(e.kind, ErrorKind::DuplicateKey("\"k1\"".into()), "{n} keys");
    }
}

#[test]
fn default_termini_are_the_specs_defaults() {
    use amqpwire::types::{Composite, Source, Target, TerminusExpiryPolicy};
    // An empty source or target list means every default; the compact encoding of the
    // defaults is that empty list.
    let s = Source::decode(&hex("00 53 28 45"), DecodeOptions::STRICT).expect("source");
    assert_eq!(s, Source::default());
    assert_eq!(s.expiry_policy, TerminusExpiryPolicy::SESSION_END);
    assert_eq!(Source::default().to_vec(), hex("00 53 28 45"));
    assert_eq!(Target::default().to_vec(), hex("00 53 29 45"));
}

/// Found by fuzzing (`fuzz/corpus/frames/lenient-array-padding-zero-width-*`): the limit on
/// zero-width array elements counted the bytes an array *claimed*, so a lenient decode of
/// `e0 0e 06 41 <12 bytes skipped>` accepted six `true`s that its re-encoding `e0 02 06 41`
/// could no longer carry. The limit now counts only the array's header, in every mode and
/// every decoder.
#[test]
fn a_zero_width_array_is_judged_by_its_header_never_by_bytes_it_skips() {
    let padded = hex("e0 0e 06 41 000000000000000000000000");
    let lenient = Value::decode_with(&padded, DecodeOptions::LENIENT).expect("padding skipped");
    let again = lenient.to_vec();
    assert_eq!(again, hex("e0 02 06 41"));
    assert_eq!(Value::decode(&again).expect("our own encoding decodes strictly"), lenient);
    let (view, _) = ValueRef::decode(&again).expect("the borrowed view agrees");
    assert_eq!(view.to_owned_value().expect("owned"), lenient);
    // The limit: one element per byte of the header (constructor, size, count, element
    // constructor) plus the slack, whatever the claimed size.
    let limit = 4 + amqpwire::codec::ZERO_WIDTH_SLACK;
    let at_limit = format!("e0 02 {limit:02x} 41");
    assert_eq!(Value::decode(&hex(&at_limit)).expect("at the limit").to_vec(), hex(&at_limit));
    let over = format!("e0 02 {:02x} 41", limit + 1);
    assert!(matches!(strict_err(&over), ErrorKind::ArrayTooLong { .. }));
    let over_padded = format!("e0 22 {:02x} 41 {}", limit + 1, "00".repeat(32));
    for mode in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
        let e = Value::decode_with(&hex(&over_padded), mode).expect_err("padding buys nothing");
        assert!(matches!(e.into_detail().kind, ErrorKind::ArrayTooLong { .. }));
    }
    // A descriptor is part of the header.
    let described = format!("e0 05 {:02x} 00 53 24 45", limit + 3);
    assert!(Value::decode(&hex(&described)).is_ok());
}

/// Found by the fuzz campaign of 2026-12-05 (`fuzz/corpus/frames/lenient-skipped-bytes-in-array-descriptor-*`):
/// bytes a lenient decode skipped *inside an array's descriptor* (a map with extra bytes
/// after its entries) still counted as header, so they raised the zero-width limit; the
/// re-encoding, which drops them, was then refused. Skipped bytes never count, wherever
/// in the header they lie.
#[test]
fn bytes_skipped_inside_an_array_descriptor_do_not_raise_the_zero_width_limit() {
    // e0 size count | 00 c1 0a 00 <9 skipped bytes> | 41 ...: the kept header is e0, size,
    // count, 00, c1, size, count and the element constructor: 8 bytes.
    let limit = 8 + amqpwire::codec::ZERO_WIDTH_SLACK;
    let array = |count: usize| hex(&format!("e0 0f {count:02x} 00 c1 0a 00 {} 41", "00".repeat(9)));
    let kept = Value::decode_with(&array(limit), DecodeOptions::LENIENT).expect("at the limit");
    let again = kept.to_vec();
    assert_eq!(again, hex(&format!("e0 06 {limit:02x} 00 c1 01 00 41")));
    assert_eq!(Value::decode(&again).expect("our own encoding decodes strictly"), kept);
    for mode in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
        let e = Value::decode_with(&array(limit + 1), mode).expect_err("one more is too many");
        let kind = e.into_detail().kind;
        if mode.mode == Mode::Lenient {
            assert!(matches!(kind, ErrorKind::ArrayTooLong { .. }), "{kind:?}");
        }
        let over = array(limit + 1);
        let mut r = amqpwire::codec::Reader::new(&over, mode);
        assert!(r.validate_value().is_err(), "the validator agrees");
    }
}

/// Found by the fuzz campaign of 2026-12-05 (`fuzz/corpus/differential/array-descriptor-depth`):
/// the owned decoder counted an array's descriptor one level deeper than the validator,
/// the borrowed view and the inspector did, so near the depth limit they disagreed. The
/// descriptor now sits one level inside its array for every decoder.
#[test]
fn every_decoder_counts_an_array_descriptor_at_the_same_depth() {
    use amqpwire::codec::Reader;
    // An array of one null, described by ulong 1: one level deep.
    let bytes = hex("e0 05 01 00 53 01 40");
    for max_depth in 0..3 {
        let opts = DecodeOptions { max_depth, ..DecodeOptions::STRICT };
        let owned = Value::decode_with(&bytes, opts).is_ok();
        let valid = Reader::new(&bytes, opts).validate_value().is_ok();
        let tree = amqpwire::inspect::annotate(&mut Reader::new(&bytes, opts), String::new(), None)
            .is_ok();
        let borrowed = ValueRef::decode(&bytes).expect("lazy").0.validate(max_depth).is_ok();
        assert_eq!(owned, max_depth >= 1, "the owned decoder at max_depth {max_depth}");
        assert_eq!([valid, tree, borrowed], [owned; 3], "max_depth {max_depth}");
    }
}

/// Found by the fuzz campaign of 2026-12-05 (`fuzz/corpus/differential/lenient-extra-field-*`):
/// a performative read leniently skipped the fields beyond those the spec defines without
/// checking them, so it accepted a close whose extra field no value decoder accepts. And a
/// composite read as itself nested one level shallower than read as a value (its
/// described wrapper took no level), so near the depth limit the two disagreed. Extra
/// fields are now checked as values, and a composite's described wrapper takes its level.
#[test]
fn a_performative_is_accepted_only_where_it_is_a_value() {
    use amqpwire::types::{Close, Error, Fields, Open, Performative};
    // close with a second, undefined field: an array claiming 64 null elements in 2 bytes.
    let extra = hex("00 53 18 c0 06 02 40 e0 02 40 40");
    for mode in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
        assert!(Performative::decode(&extra, mode).is_err(), "{mode:?}");
        assert!(Value::decode_with(&extra, mode).is_err(), "{mode:?}");
    }
    // The same field, valid: ignored leniently, as a value it decodes.
    let fine = hex("00 53 18 c0 06 02 40 e0 02 01 40");
    let (p, used) = Performative::decode(&fine, DecodeOptions::LENIENT).expect("lenient");
    assert_eq!((p, used), (Performative::Close(Close { error: None }), fine.len()));
    // Depth: a close with an error whose info map holds a list; an open with capabilities.
    let mut info = Fields::new();
    info.insert("k", Value::List(vec![Value::Null], Fmt::Auto));
    let close = Performative::Close(Close {
        error: Some(Error { condition: "x:y".into(), description: None, info: Some(info) }),
    });
    let mut open = Open::new("c");
    open.offered_capabilities = vec![Symbol::from("a"), Symbol::from("b")];
    for p in [close, Performative::Open(open)] {
        let mut bytes = Vec::new();
        p.encode(&mut bytes);
        for max_depth in 0..8 {
            for mode in [Mode::Strict, Mode::Lenient] {
                let opts = DecodeOptions { mode, max_depth };
                assert_eq!(
                    Performative::decode(&bytes, opts).is_ok(),
                    Value::decode_with(&bytes, opts).is_ok(),
                    "{} at max_depth {max_depth}",
                    p.name()
                );
            }
        }
    }
}

/// Found by fuzzing (`fuzz/corpus/message/duplicate-map-keys-in-amqp-value-*`): a map with
/// the key `0` twice (`ulong0` and `smallulong 0`) inside an amqp-value body was refused by
/// the owned decoder and accepted by `MessageView` and `ValueRef` validation. Every decoder
/// now refuses it strictly (part 1, 1.6.23: a map's keys are distinct) and keeps it with a
/// warning leniently.
#[test]
fn every_decoder_refuses_a_map_whose_keys_are_equal_in_any_encoding() {
    use amqpwire::message::{Message, MessageView};
    for map in ["c1 06 04 44 41 5300 42", "c1 0c 04 a1 01 61 41 b1 00000001 61 42"] {
        let bytes = hex(map);
        assert!(matches!(strict_err(map), ErrorKind::DuplicateKey(_)), "{map}");
        let (view, _) = ValueRef::decode(&bytes).expect("the borrowed view decodes lazily");
        let e = view.validate(DecodeOptions::DEFAULT_MAX_DEPTH).expect_err("validation refuses");
        assert!(matches!(e.into_detail().kind, ErrorKind::DuplicateKey(_)), "{map}");
        let lenient = Value::decode_with(&bytes, DecodeOptions::LENIENT).expect("kept leniently");
        assert!(matches!(lenient, Value::Map(ref p, _) if p.len() == 2));
        // In an amqp-value body.
        let mut msg = hex("00 53 77");
        msg.extend_from_slice(&bytes);
        assert!(Message::decode(&Bytes::from(msg.clone())).is_err(), "{map}");
        assert!(MessageView::decode(&msg).is_err(), "{map}: the view agrees");
    }
    // Distinct keys that merely look alike are fine.
    let ok = hex("c1 06 04 44 41 53 01 42");
    assert!(Value::decode(&ok).is_ok());
    assert!(ValueRef::decode(&ok).expect("view").0.validate(8).is_ok());
}

/// Found by the `structured` target's typed generator, on its first proptest run (the seed
/// is in `tests/fuzz_corpus.proptest-regressions`): a sasl-mechanisms whose
/// mandatory `sasl-server-mechanisms` was an empty array of symbols decoded, strictly, to
/// an empty list; our encoding writes an empty list as null, which the strict decoder then
/// refused as a missing field. Part 1, 1.3: null and an empty array both mean zero values,
/// so every `multiple` field now reads an empty array as it reads null, and the encoder and
/// the decoder agree.
#[test]
fn an_empty_array_in_a_multiple_field_means_what_null_means() {
    use amqpwire::types::{Layout, Performative, SaslFrameBody, SaslMechanisms};
    let read_sasl =
        |b: &[u8], mode| SaslFrameBody::read(&mut amqpwire::codec::Reader::new(b, mode));
    // sasl-mechanisms with an empty array of sym8, then with null: both lack the field.
    let empty_array = hex("00 53 40 c0 05 01 e0 02 00 a3");
    let null = hex("00 53 40 c0 02 01 40");
    for mode in [DecodeOptions::STRICT, DecodeOptions::LENIENT] {
        for body in [&empty_array, &null] {
            let e = read_sasl(body, mode).expect_err("no mechanism is no sasl-server-mechanisms");
            assert!(matches!(e.into_detail().kind, ErrorKind::MissingField { .. }));
        }
    }
    // Our own encoding of an empty list is refused the same way, never accepted.
    let mut ours = Vec::new();
    SaslFrameBody::Mechanisms(SaslMechanisms { sasl_server_mechanisms: Vec::new() })
        .encode_with(Layout::AllFields, &mut ours);
    assert!(read_sasl(&ours, DecodeOptions::STRICT).is_err());
    // An optional multiple field: an empty array reads as null does.
    let open = |caps: &str| {
        let fields = format!("a1 01 63 {} {caps}", "40 ".repeat(6));
        let n = hex(&fields).len();
        hex(&format!("00 53 10 c0 {:02x} 08 {fields}", n + 1))
    };
    let decoded = |b: &[u8]| Performative::decode(b, DecodeOptions::STRICT).expect("open").0;
    let with_empty = decoded(&open("e0 02 00 a3"));
    assert_eq!(with_empty, decoded(&open("40")));
    let Performative::Open(o) = &with_empty else { panic!("not an open: {with_empty:?}") };
    assert!(o.offered_capabilities.is_empty());
    assert_eq!(decoded(&open("e0 04 01 a3 01 78")), {
        let mut with_x = o.clone();
        with_x.offered_capabilities = vec![Symbol::from("x")];
        Performative::Open(with_x)
    });
}

#[test]
fn a_value_outside_a_closed_type_s_choices_is_named_by_its_value() {
    use amqpwire::types::{Composite, SaslCode, SaslOutcome};
    // sasl-outcome with code 5: sasl-code's choices end at 4 (sys-temp).
    let bytes = [0x00, 0x53, 0x44, 0xc0, 0x03, 0x01, 0x50, 0x05];
    let e = SaslOutcome::decode(&bytes, DecodeOptions::STRICT).expect_err("5 is no sasl-code");
    // The value as it came, not the type's Rust name around it (`SaslCode(5)`).
    assert!(e.to_string().contains("sasl-code: 5 is not one of its choices"), "{e}");
    let kept = SaslOutcome::decode(&bytes, DecodeOptions::LENIENT).expect("kept leniently");
    assert_eq!(kept.code, SaslCode(5));
}

#[test]
fn typed_composites_pick_their_list_header_as_the_generic_encoder_does() {
    use amqpwire::types::{
        Accepted, Attach, AttachSource, Composite, Handle, Layout, Open, Role, Source,
    };
    // The typed encoders write the fields first and the list header after: list8 up to
    // 254 bytes of fields, list32 from 255 (the elements moved along), list0 for none.
    let generic = |code: u64, items: Vec<Value>| {
        Value::Described(Box::new(amqpwire::codec::Described {
            descriptor: Value::from(code),
            value: Value::List(items, Fmt::Auto),
        }))
        .to_vec()
    };
    for (len, list) in [(252usize, fc::LIST8), (253, fc::LIST32), (300, fc::LIST32)] {
        let id = "c".repeat(len);
        let open = Open::new(id.as_str());
        let b = open.to_vec();
        assert_eq!(b[3], list, "a {len}-byte container-id");
        assert_eq!(b, generic(0x10, vec![Value::from(id.as_str())]), "{len}");
        assert_eq!(open.encoded_len_with(Layout::Compact), b.len());
        assert_eq!(Open::decode(&b, DecodeOptions::STRICT).expect("round trip"), open);
    }
    // Every field written: trailing nulls and defaults too (10 fields of an open).
    let mut b = Vec::new();
    Open::new("c").encode_with(Layout::AllFields, &mut b);
    let v = Value::decode(&b).expect("a value");
    let Value::Described(d) = v else { panic!("described: {v:?}") };
    let Value::List(items, _) = d.value else { panic!("a list") };
    assert_eq!(items.len(), 10);
    assert_eq!(Accepted {}.to_vec(), hex("00 53 24 45"), "no fields: list0");
    // A composite inside one: the inner list widens, then the outer one does.
    let mut attach = Attach::new("l", Handle(0), Role::RECEIVER);
    let source = Source { address: Some("a".repeat(400).into()), ..Source::default() };
    attach.source = Some(AttachSource::Source(source));
    let b = attach.to_vec();
    assert_eq!(b[3], fc::LIST32, "the attach");
    let inner = b.windows(3).position(|w| w == [0x00, 0x53, 0x28]).expect("the source");
    assert_eq!(b[inner + 3], fc::LIST32, "the source");
    assert_eq!(attach.encoded_len_with(Layout::Compact), b.len());
    assert_eq!(Attach::decode(&b, DecodeOptions::STRICT).expect("round trip"), attach);
}
