#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! Speed of the fuzz targets per byte of input, on the same inputs: every seed of the
//! `frames`, `inspect` and `connection` corpora (`fuzz/corpus/`), and the real captured
//! streams of `tests/fixtures/iothub/`. Each target's function (`amqpwire::fuzzing::*`, what
//! its libFuzzer wrapper calls) runs over every input of a set; the throughput is the
//! set's bytes. Issue 14 asks for `inspect` and `connection` within 3x of `frames` per
//! byte. Figures go in docs/fuzzing.md.
//!
//! `cargo bench --bench fuzz_targets`

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// Every file of these folders (relative to the crate root) whose name ends in `ext`.
fn inputs(dirs: &[&str], ext: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(root.join(d))
            .expect("input folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| std::fs::read(p).expect("input")));
    }
    out
}

fn bench(c: &mut Criterion) {
    let sets = [
        (
            "seeds",
            inputs(&["fuzz/corpus/frames", "fuzz/corpus/inspect", "fuzz/corpus/connection"], ""),
        ),
        ("iothub_streams", inputs(&["tests/fixtures/iothub"], ".bin")),
    ];
    for (name, set) in &sets {
        let bytes: usize = set.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("fuzz_{name}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        for (target, f) in amqpwire::fuzzing::TARGETS {
            if !matches!(*target, "frames" | "inspect" | "connection") {
                continue;
            }
            g.bench_function(*target, |b| {
                b.iter(|| {
                    for input in set {
                        f(black_box(input));
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
