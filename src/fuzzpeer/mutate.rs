//! Structure-aware mutations of a script: fields set to boundary values and wrong types,
//! size and count claims that lie, frame headers bent, performatives dropped, repeated,
//! reordered or sent where they do not belong, messages broken, writes split at every byte.
//!
//! Every mutation works on the script's JSON (the `encode` form), so a case is a script
//! like any other: it can be saved, read, minimised by removing steps, and played again by
//! `amqpwire script`. A case depends only on the base script, the seed and its number.

// Every mutation has the one signature of `Mutation`, though some only edit in place.
#![allow(clippy::ptr_arg)]

use serde_json::{json, Map, Value as Json};

use crate::script::encode::performative_typed;
use crate::script::player::has_placeholder;

/// A small, fast, seedable generator (SplitMix64): cases must be the same for the same
/// seed on every machine, so no platform randomness is involved.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for case `index` of the campaign with `seed`.
    pub fn for_case(seed: u64, index: u64) -> Self {
        let mut r = Self(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    /// 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items` (`None` when empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// A mutated script and what was done to it, in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutated {
    /// The steps.
    pub steps: Vec<Json>,
    /// One line per mutation applied, e.g. `attach.target = null (step 9)`.
    pub mutations: Vec<String>,
}

/// A mutation: changes the steps (some insert or remove, so every one takes the `Vec`) and
/// says what it did, or `None` when the script has nothing it applies to.
type Mutation = fn(&mut Vec<Json>, &mut Rng) -> Option<String>;

/// The kinds of mutation, each entry chosen with the same chance.
const KINDS: &[Mutation] = &[
    field_value,
    field_value,
    field_value,
    list_claim,
    frame_header,
    protocol_header,
    drop_step,
    repeat_step,
    swap_steps,
    insert_foreign,
    insert_foreign,
    message_body,
    split_writes,
];

/// Case `index` of a campaign: `base` with one to three mutations chosen by `seed` and
/// `index` alone. The script is made lenient first (its expectations only pace it).
pub fn mutate(base: &[Json], seed: u64, index: u64) -> Mutated {
    let mut rng = Rng::for_case(seed, index);
    let mut steps = Vec::with_capacity(base.len() + 2);
    steps.push(json!({"lenient": true}));
    steps.extend(base.iter().cloned());
    let wanted = 1 + usize::from(rng.below(3) == 0) + usize::from(rng.below(6) == 0);
    let mut mutations: Vec<String> = Vec::new();
    let mut tries = 0;
    while mutations.len() < wanted && tries < 32 {
        tries += 1;
        let kind = KINDS[rng.below(KINDS.len())];
        // Only earlier mutations need the steps as they were (a case can hold thousands).
        let before = (!mutations.is_empty()).then(|| steps.clone());
        if let Some(m) = kind(&mut steps, &mut rng) {
            // A step inserted, removed or swapped moves steps: the earlier mutations' step
            // numbers follow their steps, so that each names the step of the case as played.
            if let Some(before) = before.filter(|b| *b != steps) {
                for earlier in &mut mutations {
                    *earlier = renumber(earlier, |n| moved_to(&before, &steps, n));
                }
            }
            mutations.push(m);
        }
    }
    // Counted from 1, as `amqpwire script` and `--print-case` count steps.
    let mutations = mutations.iter().map(|m| renumber(m, |n| n + 1)).collect();
    Mutated { steps, mutations }
}

/// Where step `n` of `before` is in `after` (one mutation later): the place of an equal
/// step nearest to where the change of length alone would put it, or that place when no
/// step is equal (the mutation changed that step itself).
fn moved_to(before: &[Json], after: &[Json], n: usize) -> usize {
    let at = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    if n < at || n >= before.len() {
        return n;
    }
    let expected = (n + after.len()).saturating_sub(before.len()).max(at);
    (0..after.len())
        .filter(|&m| after[m] == before[n])
        .min_by_key(|&m| m.abs_diff(expected))
        .unwrap_or(expected)
}

/// `text` with each step number (after "step " or "steps ", and the numbers listed after
/// "steps ") mapped by `f`.
fn renumber(text: &str, f: impl Fn(usize) -> usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("step") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        let after = tail.strip_prefix("steps ").or_else(|| tail.strip_prefix("step "));
        let Some(mut after) = after else {
            out.push_str("step");
            rest = &tail[4..];
            continue;
        };
        out.push_str(&tail[..tail.len() - after.len()]);
        // A number, or a list of them ("steps 3, 5").
        loop {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            match after[..digits].parse::<usize>() {
                Ok(n) => out.push_str(&f(n).to_string()),
                Err(_) => break,
            }
            after = &after[digits..];
            match after.strip_prefix(", ") {
                Some(more) if more.starts_with(|c: char| c.is_ascii_digit()) => {
                    out.push_str(", ");
                    after = more;
                }
                _ => break,
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Indexes of `send` steps whose frame is written from a performative's fields.
fn performative_sends(steps: &[Json]) -> Vec<usize> {
    (0..steps.len())
        .filter(|&i| {
            steps[i]
                .get("send")
                .and_then(|s| s.get("performative"))
                .and_then(Json::as_str)
                .is_some_and(|p| p != "empty")
        })
        .collect()
}

/// Indexes of every `send` step.
fn sends(steps: &[Json]) -> Vec<usize> {
    (0..steps.len()).filter(|&i| steps[i].get("send").is_some()).collect()
}

/// Indexes of `send` steps whose frame is written typed (as recordings write them) with a
/// performative or SASL body the spec's tables know.
fn typed_sends(steps: &[Json]) -> Vec<usize> {
    (0..steps.len())
        .filter(|&i| {
            typed_code(&steps[i]["send"])
                .is_some_and(|c| crate::types::field_types_for_code(c).is_some())
        })
        .collect()
}

/// The descriptor code of a typed send's body.
fn typed_code(send: &Json) -> Option<u64> {
    send.get("typed")?.get("described")?.get(0)?.get("ulong")?.as_u64()
}

/// The field list of a typed send's body (a plain list or `{"list": […]}`).
fn typed_items(send: &mut Json) -> Option<&mut Vec<Json>> {
    let v = send.get_mut("typed")?.get_mut("described")?.get_mut(1)?;
    if v.is_array() {
        return v.as_array_mut();
    }
    v.get_mut("list")?.as_array_mut()
}

/// Sets one field of one performative to a boundary value of its type or to a value of
/// another type (null included: a mandatory field missing).
fn field_value(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    if rng.below(2) == 0 {
        if let Some(&at) = rng.pick(&typed_sends(steps)) {
            let code = typed_code(&steps[at]["send"])?;
            let (fields, types) = crate::types::field_types_for_code(code)?;
            let i = rng.below(fields.len());
            let value = if rng.below(3) == 0 { wrong_type(rng) } else { boundary(types[i], rng) };
            let shown = short(&value);
            let items = typed_items(steps[at].get_mut("send")?)?;
            if items.len() <= i {
                items.resize(i + 1, Json::Null);
            }
            items[i] = value;
            let name = crate::types::name_for_code(code).unwrap_or("performative");
            return Some(format!("{name}.{} = {shown} (step {at})", fields[i]));
        }
    }
    let at = *rng.pick(&performative_sends(steps))?;
    let send = steps[at].get_mut("send")?.as_object_mut()?;
    let name = send.get("performative")?.as_str()?.to_owned();
    let code = crate::types::code_for_symbol(&format!("amqp:{name}:list"))?;
    let (fields, types) = crate::types::field_types_for_code(code)?;
    let i = rng.below(fields.len());
    let value = if rng.below(3) == 0 { wrong_type(rng) } else { boundary(types[i], rng) };
    let shown = short(&value);
    send.entry("fields")
        .or_insert_with(|| Json::Object(Map::new()))
        .as_object_mut()?
        .insert(fields[i].to_owned(), value);
    Some(format!("{name}.{} = {shown} (step {at})", fields[i]))
}

/// A value at the edge of what `ty` (a field's wire type) allows, or just past it.
fn boundary(ty: &str, rng: &mut Rng) -> Json {
    let pool: Vec<Json> = match ty {
        "uint" => vec![
            json!({"uint": 0}),
            json!({"uint": 1}),
            json!({"uint": 0x7fff_ffffu32}),
            json!({"uint": 0x8000_0000u32}),
            json!({"uint": 0xffff_fffeu32}),
            json!({"uint": u32::MAX}),
            json!({"uint": 0, "code": "0x70"}),
            json!({"raw": "52"}),
            json!({"raw": "70ffff"}),
        ],
        "ulong" => vec![
            json!({"ulong": 0}),
            json!({"ulong": u64::MAX}),
            json!({"ulong": 1u64 << 63}),
            json!({"ulong": 0, "code": "0x80"}),
        ],
        "ushort" => vec![json!({"ushort": 0}), json!({"ushort": u16::MAX}), json!({"raw": "60ff"})],
        "ubyte" => vec![json!({"ubyte": 0}), json!({"ubyte": 5}), json!({"ubyte": u8::MAX})],
        "boolean" => vec![
            json!({"boolean": true}),
            json!({"boolean": false}),
            json!({"boolean": true, "code": "0x56"}),
            json!({"raw": "5602"}),
            json!({"raw": "56ff"}),
        ],
        "string" => vec![
            json!({"string": ""}),
            json!({"string": "x".repeat(70_000)}),
            json!({"string": "s", "code": "0xb1"}),
            json!({"raw": "a103ffc0c1"}),
            json!({"raw": "a1ff61"}),
            json!({"raw": "b1ffffffff"}),
            json!({"raw": "b17fffffff61"}),
        ],
        "symbol" => vec![
            json!({"symbol": ""}),
            json!({"symbol": "a".repeat(300)}),
            json!({"raw": "a3028080"}),
            json!({"raw": "b3ffffffff"}),
            json!({"raw": "a3ff"}),
        ],
        "binary" => vec![
            json!({"binary": ""}),
            json!({"binary": "00".repeat(300)}),
            json!({"raw": "a0ff00"}),
            json!({"raw": "b0ffffffff"}),
        ],
        "timestamp" => vec![json!({"timestamp": i64::MIN}), json!({"timestamp": -1})],
        "symbol (multiple)" => vec![
            json!({"array": [], "element": "0xa3"}),
            json!({"array": vec![json!({"symbol": "s"}); 1000], "element": "0xa3"}),
            json!({"raw": "e00301a3"}),
            json!({"raw": "f0ffffffff00000001a3"}),
            json!({"raw": "e005020061016101"}),
            json!({"raw": "e0040100a300"}),
        ],
        "fields" => vec![
            json!({"map": []}),
            json!({"map": [[{"symbol": "k"}, {"uint": 1}], [{"symbol": "k"}, {"uint": 2}]]}),
            json!({"map": [[{"uint": 1}, null]]}),
            json!({"map": [[{"symbol": "k"}, null]], "count": 3}),
            json!({"map": [[{"symbol": "k"}, null]], "count": 1000}),
            json!({"raw": "c1ffff"}),
            json!({"raw": "d1ffffffff00000002"}),
        ],
        // Composites and unions (source, target, error, delivery-state): the wrong
        // descriptor, the right descriptor with wrong contents, no descriptor at all.
        _ => vec![
            json!({"described": [{"ulong": 0xdead_beefu32}, []]}),
            json!({"described": [{"ulong": 0x28}, [{"uint": 5}]]}),
            json!({"described": [{"ulong": 0x29}, {"map": []}]}),
            json!({"described": [{"ulong": 0x1d}, [null]]}),
            json!({"described": [{"symbol": "amqp:source:list"}, []]}),
            json!({"described": [{"ulong": 0x10}, []]}),
            json!({"described": [{"ulong": 0x24}, {"list": [], "count": 20}]}),
            json!([]),
            json!({"raw": "00"}),
            json!({"raw": deep_described(1000)}),
        ],
    };
    rng.pick(&pool).cloned().unwrap_or(Json::Null)
}

/// A value of some type no field has, or of a type the field does not have.
fn wrong_type(rng: &mut Rng) -> Json {
    let pool = [
        Json::Null,
        json!({"ulong": u64::MAX}),
        json!({"int": -1}),
        json!({"string": "a string"}),
        json!({"symbol": "sym"}),
        json!({"binary": "0001"}),
        json!({"boolean": true}),
        json!({"list": []}),
        json!({"list": [null], "count": 1000}),
        json!({"map": []}),
        json!({"double": 1.5}),
        json!({"uuid": "00000000-0000-0000-0000-000000000000"}),
        json!({"described": [{"ulong": 0x23}, []]}),
        json!({"raw": deep_list(300)}),
        json!({"raw": "ff"}),
        json!({"raw": "40"}),
    ];
    rng.pick(&pool).cloned().unwrap_or(Json::Null)
}

/// `n` nested described constructors ending in null: nesting a decoder must bound.
fn deep_described(n: usize) -> String {
    let mut s = "00".repeat(n);
    s.push_str("40");
    s
}

/// `n` nested list8s ending in an empty list, each claiming the rest (at most 255 bytes).
fn deep_list(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let size = ((n - i - 1) * 3 + 1 + 1).min(255);
        s.push_str(&format!("c0{size:02x}01"));
    }
    s.push_str("45");
    s
}

/// A performative whose list lies about its size or count, carries more fields than the
/// spec defines, or has another descriptor.
fn list_claim(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let candidates: Vec<usize> =
        performative_sends(steps).into_iter().filter(|&i| !has_placeholder(&steps[i])).collect();
    let mut candidates = candidates;
    candidates.extend(typed_sends(steps));
    let at = *rng.pick(&candidates)?;
    let send = steps[at].get_mut("send")?.as_object_mut()?;
    let (name, mut typed) = match send.remove("performative") {
        Some(p) => {
            let name = p.as_str()?.to_owned();
            let fields = match send.remove("fields") {
                Some(Json::Object(f)) => f,
                _ => Map::new(),
            };
            let typed = performative_typed(&name, &fields).ok()?;
            (name, typed)
        }
        None => {
            let typed = send.remove("typed")?;
            let code = typed_code(&json!({ "typed": typed }))?;
            let mut typed = typed;
            // The field list in its plain form, whatever form the recording kept.
            let items = typed_items(&mut json!({ "typed": typed.clone() }))?.clone();
            typed["described"][1] = json!({ "list": items });
            (crate::types::name_for_code(code).unwrap_or("performative").to_owned(), typed)
        }
    };
    let pair = typed.get_mut("described")?.as_array_mut()?;
    let items = pair.get(1)?.get("list")?.as_array()?.clone();
    let n = items.len() as u64;
    let what = match rng.below(7) {
        0 => {
            let count = *rng.pick(&[0, n + 1, n + 50, 255, 0xffff_ffff])?;
            pair[1] = json!({"list": items, "count": count});
            format!("{name} list claims {count} fields, holds {n}")
        }
        1 => {
            let size = *rng.pick(&[0u64, 1, 2, 0xff, 0x7fff_ffff, 0xffff_ffff])?;
            let code = if size > 0xff { "0xd0" } else { "0xc0" };
            pair[1] = json!({"list": items, "size": size, "code": code});
            format!("{name} list claims {size} bytes")
        }
        2 => {
            let extra = 1 + rng.below(40);
            let mut more = items;
            more.extend(std::iter::repeat_n(json!({"uint": 7}), extra));
            pair[1] = json!(more);
            format!("{name} with {extra} fields beyond the spec's")
        }
        3 => {
            let d =
                *rng.pick(&[0x10u64, 0x11, 0x13, 0x14, 0x17, 0x18, 0x40, 0x44, 0x77, 0xffff])?;
            pair[0] = json!({"ulong": d});
            format!("{name} fields under descriptor 0x{d:x}")
        }
        4 => {
            pair[0] = json!({"symbol": format!("amqp:{name}:list")});
            format!("{name} with its symbolic descriptor")
        }
        5 => {
            pair[1] = json!({"map": []});
            format!("{name} as a map")
        }
        _ => {
            let keep = rng.below(items.len().max(1));
            pair[1] = json!(items.get(..keep).unwrap_or_default());
            format!("{name} cut to its first {keep} fields")
        }
    };
    send.insert("typed".into(), typed);
    Some(format!("{what} (step {at})"))
}

/// A frame header that lies: its size, its data offset, its type or its channel; or the
/// frame cut short.
fn frame_header(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let candidates: Vec<usize> = sends(steps)
        .into_iter()
        .filter(|&i| {
            steps[i]["send"].is_object()
                && steps[i]["send"].get("kind").is_none_or(|k| k == "frame")
        })
        .collect();
    let at = *rng.pick(&candidates)?;
    let real = if has_placeholder(&steps[at]) {
        None
    } else {
        let mut b = Vec::new();
        crate::script::encode::encode_line(&steps[at]["send"], &mut b).ok()?;
        Some(b.len() as u64)
    };
    let send = steps[at].get_mut("send")?.as_object_mut()?;
    let (key, value) = match (rng.below(6), real) {
        (0, Some(r)) => {
            ("size", *rng.pick(&[0, 1, 7, 8, r - 1, r + 1, 0x7fff_ffff, u32::MAX.into()])?)
        }
        (0, None) => ("size", *rng.pick(&[0, 7, u32::MAX.into()])?),
        (1, _) => ("doff", *rng.pick(&[0, 1, 3, 255])?),
        (2, _) => ("type", *rng.pick(&[1, 2, 255])?),
        (3, _) => ("channel", *rng.pick(&[1, 7, 0xffff])?),
        (4, Some(r)) if r > 1 => ("truncate", 1 + rng.below(r as usize - 1) as u64),
        _ => ("doff", 2 + 1 + rng.below(10) as u64),
    };
    send.insert(key.into(), json!(value));
    Some(format!("frame {key} = {value} (step {at})"))
}

/// A protocol header with another id or version, or not a protocol header at all.
fn protocol_header(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let candidates: Vec<usize> = sends(steps)
        .into_iter()
        .filter(|&i| steps[i]["send"].get("kind").and_then(Json::as_str) == Some("header"))
        .collect();
    let at = *rng.pick(&candidates)?;
    let (new, what) = match rng.below(5) {
        0 => {
            let id = *rng.pick(&[1u8, 2, 4, 255])?;
            (json!({"kind": "header", "protocol_id": id}), format!("protocol id {id}"))
        }
        1 => {
            let v = *rng.pick(&["0.9.1", "1.1.0", "2.0.0", "0.0.0", "255.255.255"])?;
            (json!({"kind": "header", "protocol_id": 0, "version": v}), format!("version {v}"))
        }
        2 => (
            json!({"kind": "raw", "hex": crate::inspect::hex(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")}),
            "an HTTP request".to_owned(),
        ),
        3 => (json!({"kind": "raw", "hex": "414d5150"}), "half a header".to_owned()),
        _ => {
            (json!({"kind": "raw", "hex": "414d515000010000"}), "the AMQP 0-9-1 header".to_owned())
        }
    };
    steps[at]["send"] = new;
    Some(format!("{what} instead of the protocol header (step {at})"))
}

/// One step removed: a performative never sent, an answer never awaited.
fn drop_step(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let candidates = sends(steps);
    let at = *rng.pick(&candidates)?;
    let what = describe_step(&steps[at]);
    steps.remove(at);
    Some(format!("{what} left out (step {at})"))
}

/// One send repeated: twice, or many times (resources a peer must bound).
fn repeat_step(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let at = *rng.pick(&sends(steps))?;
    let times = *rng.pick(&[1usize, 1, 2, 100, 2000])?;
    let step = steps[at].clone();
    let what = describe_step(&step);
    for _ in 0..times {
        steps.insert(at + 1, step.clone());
    }
    Some(format!("{what} sent {} times (step {at})", times + 1))
}

/// Two sends swapped: performatives out of order.
fn swap_steps(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let s = sends(steps);
    if s.len() < 2 {
        return None;
    }
    let a = rng.below(s.len() - 1);
    let b = a + 1 + rng.below((s.len() - a - 1).min(3));
    let (i, j) = (s[a], s[b]);
    steps.swap(i, j);
    Some(format!(
        "{} and {} swapped (steps {i}, {j})",
        describe_step(&steps[j]),
        describe_step(&steps[i])
    ))
}

/// A performative where it does not belong: on a channel never begun, for a handle never
/// attached, before the open, after the close, for deliveries never sent.
fn insert_foreign(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let pool = [
        json!({"performative": "transfer", "fields": {"handle": 7, "delivery-id": 0, "delivery-tag": "01"}, "data": "stray"}),
        json!({"performative": "transfer", "fields": {"handle": 0, "delivery-id": u32::MAX, "delivery-tag": "02", "more": true}, "data": "x"}),
        json!({"performative": "transfer", "fields": {"handle": 0, "aborted": true}}),
        json!({"performative": "flow", "fields": {"handle": 99, "delivery-count": 0, "link-credit": u32::MAX, "incoming-window": u32::MAX, "next-outgoing-id": 0, "outgoing-window": u32::MAX}}),
        json!({"performative": "flow", "fields": {"next-incoming-id": u32::MAX, "incoming-window": 0, "next-outgoing-id": 0, "outgoing-window": 0, "echo": true}}),
        json!({"performative": "flow", "fields": {"handle": 0, "link-credit": 1000, "drain": true, "echo": true}}),
        json!({"performative": "disposition", "fields": {"role": "receiver", "first": 0, "last": u32::MAX, "settled": true}}),
        json!({"performative": "disposition", "fields": {"role": "sender", "first": 5, "last": 2, "state": {"described": [{"ulong": 0x25}, []]}}}),
        json!({"performative": "detach", "fields": {"handle": 5, "closed": true}}),
        json!({"performative": "detach", "fields": {"handle": 0, "error": {"described": [{"ulong": 0x1d}, [{"symbol": "amqp:internal-error"}, "fuzz"]]}}}),
        json!({"performative": "end", "channel": 3}),
        json!({"performative": "begin", "channel": 0, "fields": {"remote-channel": 9}}),
        json!({"performative": "begin", "channel": 0xffff}),
        json!({"performative": "attach", "fields": {"name": "dup", "handle": 0, "role": "sender", "initial-delivery-count": 0}}),
        json!({"performative": "attach", "fields": {"name": "big", "handle": u32::MAX, "role": "receiver"}}),
        json!({"performative": "open", "fields": {"container-id": "again"}}),
        json!({"performative": "close"}),
        json!({"type": "sasl", "performative": "sasl-init", "fields": {"mechanism": "PLAIN"}}),
        json!({"type": "sasl", "performative": "sasl-outcome", "fields": {"code": 0}}),
        json!({"type": "sasl", "performative": "sasl-response", "fields": {"response": "00"}}),
        json!({"type": "sasl", "performative": "sasl-challenge", "fields": {"challenge": ""}}),
        json!({"type": "sasl", "performative": "sasl-mechanisms"}),
        json!({"performative": "open", "fields": {"container-id": "tiny", "max-frame-size": 0}}),
        json!({"kind": "header", "protocol_id": 0}),
    ];
    let frame = rng.pick(&pool)?.clone();
    let at = 1 + rng.below(steps.len());
    let what = describe_step(&json!({"send": frame}));
    steps.insert(at.min(steps.len()), json!({"send": frame}));
    Some(format!("{what} inserted (step {at})"))
}

/// A transfer whose message is malformed: random bytes, sections out of order, lying sizes,
/// deep nesting, or nothing at all.
fn message_body(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    let candidates: Vec<usize> = performative_sends(steps)
        .into_iter()
        .filter(|&i| steps[i]["send"]["performative"] == "transfer")
        .collect();
    let at = *rng.pick(&candidates)?;
    let mut random = String::new();
    for _ in 0..1 + rng.below(64) {
        random.push_str(&format!("{:02x}", rng.next_u64() as u8));
    }
    let pool = [
        (random, "random bytes"),
        (String::new(), "no message at all"),
        ("005375a0".to_owned(), "a data section cut short"),
        ("005375b0ffffffff".to_owned(), "a data section claiming 4 GiB"),
        ("005377a10161005370c00101".to_owned(), "a header after the body"),
        ("005373c00a0a".to_owned() + &"40".repeat(10), "properties claiming ten fields"),
        ("005374c1030161".to_owned(), "application-properties with an odd count"),
        ("005374c10aa30161a30162a30163".to_owned(), "application-properties with a symbol key"),
        ("005377".to_owned() + &deep_list(250), "a body of 250 nested lists"),
        ("005376e0ffffffff".to_owned(), "an amqp-sequence claiming much"),
        ("0053780053780053784040".to_owned(), "a footer first"),
        ("00a30f616d71703a646174613a62696e617279a00161".to_owned(), "a symbolic data descriptor"),
        ("0080ffffffffffffffff40".to_owned(), "an unknown section descriptor"),
    ];
    let (hex, what) = rng.pick(&pool)?.clone();
    let send = steps[at].get_mut("send")?.as_object_mut()?;
    send.remove("data");
    send.insert("payload".into(), json!(hex));
    Some(format!("transfer carrying {what} (step {at})"))
}

/// Writes split into single bytes or small pieces, sometimes slowly.
fn split_writes(steps: &mut Vec<Json>, rng: &mut Rng) -> Option<String> {
    if steps.iter().any(|s| s.get("write").is_some()) {
        return None;
    }
    let chunk = *rng.pick(&[1u64, 1, 2, 3, 7, 13])?;
    let delay = if chunk >= 7 { *rng.pick(&[0u64, 0, 1, 5])? } else { 0 };
    let at = 1 + rng.below(steps.len().saturating_sub(1).max(1));
    steps.insert(at.min(steps.len()), json!({"write": {"chunk": chunk, "delay": delay}}));
    Some(format!("writes of {chunk} bytes, {delay} ms apart, from step {at}"))
}

/// A step in a few words: `attach`, `header`, `raw bytes`.
fn describe_step(step: &Json) -> String {
    let s = step.get("send").unwrap_or(step);
    if let Some(p) = s.get("performative").and_then(Json::as_str) {
        return p.to_owned();
    }
    match s.get("kind").and_then(Json::as_str) {
        Some("header") => "a protocol header".to_owned(),
        Some("raw") => "raw bytes".to_owned(),
        _ if s.get("typed").is_some() => "a typed frame".to_owned(),
        _ => "a step".to_owned(),
    }
}

/// A JSON value shortened for a one-line description.
fn short(j: &Json) -> String {
    let s = j.to_string();
    if s.len() > 60 {
        let cut = (0..=57).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzpeer::scenarios::{names, scenario, Role, Sasl};

    #[test]
    fn the_same_seed_and_number_give_the_same_case() {
        let base = scenario("sender", &Sasl::Anonymous, "q").expect("scenario");
        for i in 0..50 {
            assert_eq!(mutate(&base, 7, i), mutate(&base, 7, i));
        }
        let differ = (0..50).filter(|&i| mutate(&base, 7, i) != mutate(&base, 8, i)).count();
        assert!(differ > 40, "{differ}");
    }

    #[test]
    fn every_case_of_every_scenario_encodes() {
        // A mutation must never produce a script the encoder refuses: such a case would
        // test nothing. Placeholders are bound at play time, so sends with them are
        // checked with a stand-in value.
        for role in [Role::Client, Role::Server] {
            for name in names(role) {
                for sasl in [Sasl::None, Sasl::Anonymous] {
                    let base = scenario(name, &sasl, "q").expect("scenario");
                    for i in 0..150 {
                        let case = mutate(&base, 1, i);
                        assert!(!case.mutations.is_empty(), "{name} case {i}");
                        let text: String = case.steps.iter().map(|s| format!("{s}\n")).collect();
                        let steps = crate::script::player::parse(
                            &text,
                            std::time::Duration::from_millis(1),
                        )
                        .unwrap_or_else(|e| panic!("{name} case {i}: {e}"));
                        for s in &case.steps {
                            if let Some(send) = s.get("send") {
                                let send = bind_stand_ins(send);
                                let mut out = Vec::new();
                                let r = match &send {
                                    Json::String(h) => crate::inspect::typed::unhex(h)
                                        .map(|_| ())
                                        .ok_or("hex".to_owned()),
                                    _ => crate::script::encode::encode_line(&send, &mut out),
                                };
                                r.unwrap_or_else(|e| {
                                    panic!("{name} case {i} {:?}: {e}: {send}", case.mutations)
                                });
                            }
                        }
                        assert!(steps.len() >= base.len() - 1);
                    }
                }
            }
        }
    }

    /// `j` with placeholders replaced by values of the types they stand for.
    fn bind_stand_ins(j: &Json) -> Json {
        match j {
            Json::String(s) if s == "$name" => json!("n"),
            Json::String(s) if s.starts_with('$') && s.len() > 1 => json!(0),
            Json::Array(a) => Json::Array(a.iter().map(bind_stand_ins).collect()),
            Json::Object(o) => {
                Json::Object(o.iter().map(|(k, v)| (k.clone(), bind_stand_ins(v))).collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn a_mutation_names_the_step_of_the_case_as_played() {
        // "attach.name = … (step N)": step N of the case as `script` counts (from 1, the
        // lenient line first), after every mutation that inserted or removed steps.
        let base = scenario("sender", &Sasl::Anonymous, "q").expect("scenario");
        let mut checked = 0;
        let mut moved = 0;
        for seed in 0..40 {
            for i in 0..40 {
                let m = mutate(&base, seed, i);
                for line in &m.mutations {
                    // A field mutation: `performative.field = value (step N)`.
                    let Some((name, _)) = line.split_once('.') else { continue };
                    let Some(n) = line
                        .strip_suffix(')')
                        .and_then(|l| l.rsplit_once("(step "))
                        .and_then(|(_, n)| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    if name.contains(' ') {
                        continue;
                    }
                    let step = &m.steps[n - 1];
                    // (A mutation that cannot write the value by field names writes the
                    // step typed: its descriptor, by symbol or code, is the performative's.)
                    let typed = &step["send"]["typed"]["described"][0];
                    let performative = step["send"]["performative"].as_str().or_else(|| {
                        let code = typed["ulong"].as_u64();
                        let symbol = typed["symbol"].as_str();
                        code.and_then(crate::types::name_for_code).or_else(|| {
                            symbol.and_then(|d| d.strip_prefix("amqp:")?.strip_suffix(":list"))
                        })
                    });
                    assert_eq!(performative, Some(name), "seed {seed} case {i}: {line}: {step}");
                    checked += 1;
                    moved += usize::from(m.steps.len() != base.len() + 1);
                }
            }
        }
        assert!(checked > 100 && moved > 10, "{checked} checked, {moved} with steps moved");
    }

    #[test]
    fn step_numbers_are_found_in_each_form() {
        let plus = |t: &str| renumber(t, |n| n + 10);
        assert_eq!(plus("open.x = 1 (step 3)"), "open.x = 1 (step 13)");
        assert_eq!(plus("a and b swapped (steps 2, 5)"), "a and b swapped (steps 12, 15)");
        assert_eq!(
            plus("writes of 7 bytes, 1 ms apart, from step 4"),
            "writes of 7 bytes, 1 ms apart, from step 14"
        );
        assert_eq!(plus("steps, no number; stepped"), "steps, no number; stepped");
    }

    #[test]
    fn deep_lists_nest_as_many_times_as_asked() {
        let bytes = crate::inspect::typed::unhex(&deep_list(5)).expect("hex");
        let depth = bytes.iter().filter(|&&b| b == 0xc0).count();
        assert_eq!(depth, 5);
        let r = crate::codec::Value::decode_with(&bytes, crate::codec::DecodeOptions::STRICT);
        assert!(r.is_ok(), "{r:?}");
    }
}
